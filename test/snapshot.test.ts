/**
 * `unum operator snapshot save` of a running cluster, `restore` into a fresh data dir, and a new
 * `unum up` on it: every job is there and runs again (on the new machine, once the old node is
 * found gone), and the old cluster's tokens still work. A snapshot cut short is refused. Real
 * processes, the CLI as a user runs it.
 */
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UnumClient } from '../src/api/client.ts';
import { upToken } from '../src/testing/acl.ts';
import { freePort } from '../src/testing/net.ts';
import { UNUM_BIN, startUp } from '../src/testing/unum-up.ts';
import { waitFor } from '../src/testing/wait.ts';

const unum = (
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      [UNUM_BIN, ...args],
      { env: { ...process.env, NO_COLOR: '1', ...env } },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });

const stop = async (p: ChildProcess | undefined) => {
  if (!p || p.exitCode !== null) return;
  p.kill('SIGTERM');
  await new Promise((r) => p.once('exit', r));
};

describe('snapshots', { timeout: 180_000 }, () => {
  const root = mkdtempSync(join(tmpdir(), 'unum-snapshot-'));
  const oldDir = join(root, 'old');
  const newDir = join(root, 'new');
  const file = join(root, 'backup.jsonl');
  let oldUp: ChildProcess | undefined;
  let newUp: ChildProcess | undefined;
  let token = '';

  before(async () => {
    const port = await freePort();
    const probe = new UnumClient({ addr: `http://127.0.0.1:${port}`, token: upToken(oldDir) });
    oldUp = await startUp({ port, dataDir: oldDir, client: probe });
    token = upToken(oldDir)() ?? '';
    assert.ok(token, 'unum up wrote its management token');
    const client = new UnumClient({ addr: `http://127.0.0.1:${port}`, token });
    for (const id of ['web', 'api', 'worker'])
      await client.submitJob({
        job: id,
        groups: [
          {
            name: 'g',
            count: 2,
            tasks: [{ name: 't', command: 'sleep', args: ['3600'], resources: { cpu: 20, memory: 16 } }],
          },
        ],
      });
    await waitFor(
      async () =>
        (await client.listAllocations()).items.filter((a) => a.clientStatus === 'running').length === 6,
      {
        timeoutMs: 60_000,
        description: 'six instances running',
      },
    );
    const saved = await unum(['operator', 'snapshot', 'save', file], {
      UNUM_ADDR: `http://127.0.0.1:${port}`,
      UNUM_TOKEN: token,
    });
    assert.equal(saved.code, 0, saved.stderr);
    assert.match(saved.stdout, /^saved \d+ keys to /);
    await stop(oldUp);
  });
  after(async () => {
    await stop(oldUp);
    await stop(newUp);
    rmSync(root, { recursive: true, force: true });
  });

  test('the file is private and ends with its count', () => {
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    assert.equal((JSON.parse(lines.at(-1)!) as { keys: number }).keys, lines.length - 2);
  });

  test('a snapshot cut short restores nothing', async () => {
    const cut = join(root, 'cut.jsonl');
    const text = readFileSync(file, 'utf8');
    writeFileSync(cut, text.slice(0, Math.floor(text.length / 2)));
    const r = await unum(['operator', 'snapshot', 'restore', cut, '--data-dir', join(root, 'elsewhere')], {});
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cut short|not JSON/);
  });

  test('restored into a fresh data dir, a new cluster has every job, runs them again, and knows the old tokens', async () => {
    const r = await unum(['operator', 'snapshot', 'restore', file, '--data-dir', newDir], {});
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^restored \d+ keys/);
    // Restoring twice into the same store is refused.
    const again = await unum(['operator', 'snapshot', 'restore', file, '--data-dir', newDir], {});
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already has \d+ keys/);

    const port = await freePort();
    const client = new UnumClient({ addr: `http://127.0.0.1:${port}`, token });
    newUp = await startUp({ port, dataDir: newDir, client });
    const jobs = (await client.listJobs()).items.map((j) => j.job.id).sort();
    assert.deepEqual(jobs, ['api', 'web', 'worker']);
    // The old machine's node is found gone; its instances are placed on the new one.
    // (The restored store still says the old node is ready: startUp returned before the new agent registered.)
    const newNode = await waitFor(() => {
      try {
        return readFileSync(join(newDir, 'agent', 'node-id'), 'utf8').trim() || undefined;
      } catch {
        return undefined;
      }
    });
    const oldNode = readFileSync(join(oldDir, 'agent', 'node-id'), 'utf8').trim();
    assert.notEqual(newNode, oldNode);
    await waitFor(
      async () => {
        const old = (await client.listNodes()).items.find((n) => n.id === oldNode);
        const running = (await client.listAllocations()).items.filter(
          (a) => a.clientStatus === 'running' && a.nodeId === newNode,
        );
        return old?.status === 'down' && running.length === 6;
      },
      { timeoutMs: 90_000, description: 'the old node down, six instances running on the new one' },
    );
  });
});
