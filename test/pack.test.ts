/**
 * The published package: `npm pack` builds JavaScript with tsc, a fresh project installs the
 * tarball, and the installed `unum` starts a cluster and runs a command (Node does not strip types
 * under node_modules, so this is the only path users of the package take).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { UnumClient } from '../src/api/client.ts';
import { requireExecDriverTools, requireTool } from '../src/testing/tools.ts';
import { waitFor } from '../src/testing/wait.ts';
import { upToken } from '../src/testing/acl.ts';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'unum-pack-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('npm pack, install, and the installed unum runs a job', { timeout: 240_000 }, async () => {
  requireTool('npm');
  requireExecDriverTools();
  await run('npm', ['pack', '--pack-destination', work], { cwd: root, env: process.env });
  const tgz = readdirSync(work).find((f) => f.endsWith('.tgz'));
  assert.ok(tgz, 'npm pack made a tarball');
  const app = join(work, 'app');
  await run('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(work, tgz)], { cwd: app });
  const bin = join(app, 'node_modules', 'unum', 'bin', 'unum.js');
  const installed = readdirSync(join(app, 'node_modules', 'unum'));
  assert.ok(installed.includes('dist'), 'the package ships the built JavaScript');
  assert.ok(!installed.includes('src'), 'and not the TypeScript sources');

  const dataDir = join(work, 'data');
  const up = spawn(
    process.execPath,
    [bin, 'up', '--addr', '127.0.0.1:0', '--data-dir', dataDir, '--network', 'host'],
    {
      cwd: app,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    },
  );
  let out = '';
  up.stdout.on('data', (d: Buffer) => (out += d.toString()));
  up.stderr.on('data', (d: Buffer) => (out += d.toString()));
  try {
    const addr = await waitFor(() => /http:\/\/127\.0\.0\.1:\d+/.exec(out)?.[0], {
      timeoutMs: 30_000,
      description: `the address in the banner of the installed unum up: ${out}`,
    });
    const client = new UnumClient({ addr, token: upToken(dataDir) });
    await waitFor(async () => (await client.listNodes()).items.some((n) => n.status === 'ready'), {
      timeoutMs: 30_000,
    });
    const r = await run(process.execPath, [bin, 'run', '--', 'echo', 'from-the-package'], {
      cwd: app,
      env: { ...process.env, UNUM_ADDR: addr, UNUM_DATA_DIR: dataDir },
    });
    const id = /run-[0-9a-f]{8}/.exec(r.stdout)?.[0];
    assert.ok(id, r.stdout);
    const logs = await run(process.execPath, [bin, 'logs', id], {
      cwd: app,
      env: { ...process.env, UNUM_ADDR: addr, UNUM_DATA_DIR: dataDir },
    });
    assert.match(logs.stdout, /from-the-package/);
  } finally {
    up.kill('SIGINT');
    await new Promise((r) => up.once('exit', r));
  }
});
