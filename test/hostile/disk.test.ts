/**
 * A task cannot fill the node's disk: on a real `unum up`, a job whose task writes into its task
 * directory without end, with `ephemeral: { sizeMiB: 20 }`, is killed once it goes over, fails with
 * a task event and a description that say so (in `unum status` and the event stream), is not
 * restarted in place, and what it wrote is removed (its logs stay). Its use stayed within a few
 * times the limit, and a job within its limit on the same node runs on. (Before, the task directory
 * and the shared `alloc/` had no limit at all.)
 */
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UnumClient } from '../../src/api/client.ts';
import { upToken } from '../../src/testing/acl.ts';
import { freePort } from '../../src/testing/net.ts';
import { UNUM_BIN, startUp } from '../../src/testing/unum-up.ts';
import { waitFor } from '../../src/testing/wait.ts';

const MiB = 1024 * 1024;

function job(name: string, script: string): Record<string, unknown> {
  return {
    job: name,
    groups: [
      {
        name,
        ephemeral: { sizeMiB: 20 },
        // One allocation to look at: a failure is not replaced.
        reschedule: { attempts: 0, unlimited: false },
        tasks: [{ name: 'main', command: 'sh', args: ['-c', script], resources: { cpu: 100, memory: 64 } }],
      },
    ],
  };
}

describe('a task cannot fill the disk', { timeout: 180_000 }, () => {
  let dir: string;
  let port: number;
  let up: ChildProcess | undefined;
  let client: UnumClient;

  const unum = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        [UNUM_BIN, ...args],
        { env: { ...process.env, UNUM_ADDR: `http://127.0.0.1:${port}`, UNUM_DATA_DIR: dir, NO_COLOR: '1' } },
        (err, stdout, stderr) =>
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      );
    });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'unum-disk-'));
    port = await freePort();
    client = new UnumClient({ addr: `http://127.0.0.1:${port}`, token: upToken(dir) });
    // Measured often, so the test waits little; the default is every 10 s, sooner while it grows.
    up = await startUp({ port, dataDir: dir, client, args: ['--alloc-disk-interval', '50ms'] });
  });
  after(async () => {
    if (up && up.exitCode === null) {
      up.kill('SIGTERM');
      await new Promise((r) => up!.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('the writer is killed and fails with the reason; its files go; a job within its limit runs on', async () => {
    await client.submitJob(job('steady', 'head -c 2097152 /dev/zero > data && exec sleep 600'));
    const steady = await waitFor(
      async () => {
        const a = (await client.jobAllocations('steady')).items[0];
        if (a?.clientStatus !== 'running') return undefined;
        const disk = (await client.nodeStats(a.nodeId)).allocations[a.id]?.disk;
        return disk !== undefined && disk.usedBytes >= 2 * MiB ? a : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100, description: 'steady running, its disk measured' },
    );

    await client.submitJob(
      job(
        'filler',
        'echo filling; i=0; while :; do dd if=/dev/zero of=fill.$i bs=1M count=1 2>/dev/null; i=$((i+1)); done',
      ),
    );
    const filler = await waitFor(
      async () => {
        const a = (await client.jobAllocations('filler')).items[0];
        return a?.clientStatus === 'failed' ? a : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100, description: 'the filler to fail' },
    );

    const m =
      /^disk limit exceeded: used ([\d.]+) (MiB|GiB)(?: \+ ([\d.]+) KiB)? of 20 MiB \(ephemeral\.sizeMiB\)$/.exec(
        filler.clientDescription ?? '',
      );
    assert.ok(m, filler.clientDescription);
    // "used 20 MiB + 12 KiB": just past the limit.
    const usedMiB = Number(m[1]) * (m[2] === 'GiB' ? 1024 : 1) + Number(m[3] ?? 0) / 1024;
    assert.ok(usedMiB > 20, `${usedMiB}`);
    assert.ok(
      usedMiB < 100,
      `its use went to ${usedMiB} MiB before it was stopped: more than 5 times its limit`,
    );
    const main = filler.taskStates['main'];
    assert.equal(main?.failed, true);
    assert.equal(main.restarts, 0, 'not restarted in place');
    assert.equal(main.events.find((e) => e.type === 'limit-exceeded')?.message, filler.clientDescription);

    // What people see.
    const status = await unum(['status', 'filler']);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /limit-exceeded +disk limit exceeded: used [\d.]+ MiB/);
    const events = await client.events({ job: 'filler' });
    assert.ok(
      events.events.some(
        (e) => e.type === 'task-limit-exceeded' && e.message.includes('disk limit exceeded: used'),
      ),
      JSON.stringify(events.events.map((e) => e.type)),
    );

    // Its files are gone, its logs stay.
    const taskDir = join(dir, 'agent', 'allocs', filler.id, 'main');
    await waitFor(() => readdirSync(taskDir).join(',') === 'logs', {
      description: "the filler's files to be removed",
    });
    const logs = await unum(['logs', 'filler']);
    assert.match(logs.stdout, /filling/);

    // The job within its limit was measured all along and runs on, untouched.
    const now = (await client.jobAllocations('steady')).items[0];
    assert.equal(now?.id, steady.id);
    assert.equal(now.clientStatus, 'running');
    assert.equal(now.taskStates['main']?.restarts, 0);
    const ps = await unum(['ps', '--job', 'steady']);
    assert.match(ps.stdout, / 2\.\dMiB\/20MiB /);
  });
});
