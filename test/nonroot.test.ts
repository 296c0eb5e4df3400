/**
 * A laptop user who is not root: `unum up` still works. It says once, in its banner, which limits it
 * cannot enforce and why, and runs tasks as the user, without them.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { UnumClient } from '../src/api/client.ts';
import { freePort } from '../src/testing/net.ts';
import { missingRoot, requireTool } from '../src/testing/tools.ts';
import { NOBODY, reachableCheckout } from '../src/testing/unprivileged.ts';
import { waitFor } from '../src/testing/wait.ts';
import { upToken } from '../src/testing/acl.ts';

const run = promisify(execFile);
const work = mkdtempSync(join(tmpdir(), 'unum-nonroot-'));
after(() => rmSync(work, { recursive: true, force: true }));

// Becoming another user needs root; as a non-root user, every test here already runs that way.
const skip = missingRoot('becoming uid 65534 to be a non-root user') ?? false;

test(
  'unum up as a non-root user degrades with one clear warning and still runs tasks',
  { skip, timeout: 120_000 },
  async () => {
    const setpriv = requireTool('setpriv');
    // The user can not reach a checkout in a private directory: run a copy it can reach.
    const copy = reachableCheckout();
    const bin = join(copy.root, 'bin', 'unum.js');
    chownSync(work, NOBODY, NOBODY);
    const port = await freePort();
    const addr = `http://127.0.0.1:${port}`;
    const env = {
      ...process.env,
      HOME: work,
      NO_COLOR: '1',
      PATH: `${dirname(copy.node)}:/usr/local/bin:/usr/bin:/bin`,
    };
    const up = spawn(
      setpriv,
      [
        '--reuid',
        String(NOBODY),
        '--regid',
        String(NOBODY),
        '--clear-groups',
        copy.node,
        bin,
        'up',
        '--addr',
        `127.0.0.1:${port}`,
        '--data-dir',
        join(work, 'data'),
      ],
      { env, cwd: work, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    up.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    try {
      const client = new UnumClient({ addr, token: upToken(join(work, 'data')) });
      await waitFor(async () => (await client.listNodes()).items.some((n) => n.status === 'ready'), {
        timeoutMs: 30_000,
        description: `unum up as uid ${NOBODY} ready (it said: ${stdout})`,
      });
      // The node registers while `unum up` starts; its banner and warnings are printed just after.
      await waitFor(() => stdout.includes('Ctrl-C stops unum.'), {
        description: `the start-up banner with its warnings (it said: ${stdout})`,
      });
      assert.match(stdout, /Not enforced on this machine/);
      assert.match(stdout, /not running as root/);
      assert.match(stdout, /memory\/CPU\/process limits/);
      assert.equal(stdout.match(/not running as root/g)?.length, 1, 'said once');

      const r = await run(process.execPath, [bin, 'run', '--', 'sh', '-c', 'id -u'], {
        env: { ...env, UNUM_ADDR: addr, UNUM_DATA_DIR: join(work, 'data') },
      });
      const id = /run-[0-9a-f]{8}/.exec(r.stdout)?.[0];
      assert.ok(id, r.stdout);
      const logs = await run(process.execPath, [bin, 'logs', id], {
        env: { ...env, UNUM_ADDR: addr, UNUM_DATA_DIR: join(work, 'data') },
      });
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
