/**
 * A laptop user who is not root: `unum up` still works. It says once, in its banner, which limits it
 * cannot enforce and why, and runs tasks as the user, without them.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { UnumClient } from '../src/api/client.ts';
import { freePort } from '../src/testing/net.ts';
import { waitFor } from '../src/testing/wait.ts';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');
const bin = join(root, 'bin', 'unum.js');
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

/** Whether uid 65534 can run this checkout at all (a checkout under a private home cannot). */
async function readableByNobody(): Promise<boolean> {
  try {
    await run('setpriv', [
      '--reuid',
      String(NOBODY),
      '--regid',
      String(NOBODY),
      '--clear-groups',
      process.execPath,
      '-e',
      `require('fs').accessSync(${JSON.stringify(bin)})`,
    ]);
    return true;
  } catch {
    return false;
  }
}
const skip = !isRoot
  ? 'runs only as root (it drops to uid 65534 to be a non-root user)'
  : !(await readableByNobody())
    ? `uid ${NOBODY} cannot read this checkout (${root}), so it cannot run unum from it`
    : false;
const work = mkdtempSync(join(tmpdir(), 'unum-nonroot-'));
after(() => rmSync(work, { recursive: true, force: true }));

test(
  'unum up as a non-root user degrades with one clear warning and still runs tasks',
  // Becoming another user needs root; as a non-root user, every test here already runs that way.
  {
    skip,
    timeout: 120_000,
  },
  async () => {
    chownSync(work, NOBODY, NOBODY);
    const port = await freePort();
    const addr = `http://127.0.0.1:${port}`;
    const env = {
      ...process.env,
      HOME: work,
      NO_COLOR: '1',
      PATH: `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
    };
    const up = spawn(
      'setpriv',
      [
        '--reuid',
        String(NOBODY),
        '--regid',
        String(NOBODY),
        '--clear-groups',
        process.execPath,
        bin,
        'up',
        '--addr',
        `127.0.0.1:${port}`,
        '--data-dir',
        join(work, 'data'),
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    up.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    try {
      const client = new UnumClient({ addr });
      await waitFor(async () => (await client.listNodes()).items.some((n) => n.status === 'ready'), {
        timeoutMs: 30_000,
        description: `unum up as uid ${NOBODY} ready (it said: ${stdout})`,
      });
      assert.match(stdout, /Not enforced on this machine/);
      assert.match(stdout, /not running as root/);
      assert.match(stdout, /memory\/CPU\/process limits/);
      assert.equal(stdout.match(/not running as root/g)?.length, 1, 'said once');

      const r = await run(process.execPath, [bin, 'run', '--', 'sh', '-c', 'id -u'], {
        env: { ...env, UNUM_ADDR: addr },
      });
      const id = /run-[0-9a-f]{8}/.exec(r.stdout)?.[0];
      assert.ok(id, r.stdout);
      const logs = await run(process.execPath, [bin, 'logs', id], { env: { ...env, UNUM_ADDR: addr } });
      assert.equal(
        logs.stdout.trim().split(/\s+/).pop(),
        String(NOBODY),
        'the task ran as the user who ran unum',
      );
    } finally {
      up.kill('SIGINT');
      await new Promise((r) => up.once('exit', r));
    }
  },
);
