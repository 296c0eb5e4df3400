/**
 * Tasks outlive unum: `kill -9` of the whole `unum up` process (server and agent), then a restart on
 * the same data dir. Running tasks are re-attached, not restarted (same pids, no restart counted);
 * a task that exited while unum was down is reported with its real exit code.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UnumClient } from '../src/api/client.ts';
import type { Allocation } from '../src/core/types.ts';
import { freePort } from '../src/testing/net.ts';
import { requireExecDriverTools } from '../src/testing/tools.ts';
import { waitFor } from '../src/testing/wait.ts';
import { upToken } from '../src/testing/acl.ts';
import { startUp } from '../src/testing/unum-up.ts';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A dead orphan stays a zombie where nothing reaps it: that is not running.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('tasks outlive a crash of unum up', { timeout: 180_000 }, () => {
  before(requireExecDriverTools);
  let dir: string;
  let addr: string;
  let port: number;
  let up: ChildProcess | undefined;
  let client: UnumClient;

  const start = async () => {
    up = await startUp({ port, dataDir: dir, client });
  };
  const crash = async () => {
    const p = up!;
    p.kill('SIGKILL');
    if (p.exitCode === null && p.signalCode === null) await new Promise((r) => p.once('exit', r));
  };
  const allocOf = async (job: string): Promise<Allocation> => {
    const l = await client.jobAllocations(job);
    const a = l.items.find((x) => x.desiredStatus === 'run');
    assert.ok(a, `an allocation of ${job}`);
    return a;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'unum-durable-'));
    port = await freePort();
    addr = `http://127.0.0.1:${port}`;
    client = new UnumClient({ addr, token: upToken(dir) });
    await start();
  });

  after(async () => {
    if (up && up.exitCode === null && up.signalCode === null) {
      up.kill('SIGINT');
      await new Promise((r) => up!.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('a running service is re-attached after kill -9 and restart: same pid, no restart', async () => {
    await client.submitJob({
      job: 'keeper',
      groups: [
        {
          name: 'g',
          tasks: [
            {
              name: 't',
              command: 'sh',
              args: ['-c', 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.2; done'],
              resources: { cpu: 50, memory: 32 },
            },
          ],
        },
      ],
    });
    const before = await waitFor(async () => {
      const a = await allocOf('keeper');
      return a.clientStatus === 'running' && a.taskStates['t']?.pid ? a : undefined;
    });
    const pid = before.taskStates['t']!.pid!;

    // A batch task that will exit with 42 while unum is down.
    await client.submitJob({
      job: 'leaver',
      type: 'batch',
      groups: [
        {
          name: 'g',
          restart: { attempts: 0 },
          reschedule: { attempts: 0 },
          tasks: [
            {
              name: 't',
              command: 'sh',
              args: ['-c', 'sleep 3; exit 42'],
              resources: { cpu: 50, memory: 32 },
            },
          ],
        },
      ],
    });
    const leaver = await waitFor(async () => {
      const a = await allocOf('leaver');
      return a.clientStatus === 'running' && a.taskStates['t']?.pid ? a : undefined;
    });
    const leaverPid = leaver.taskStates['t']!.pid!;

    await crash();
    assert.ok(alive(pid), 'the service kept running while unum was down');
    await waitFor(() => !alive(leaverPid), {
      timeoutMs: 20_000,
      description: 'the batch task exits while unum is down',
    });

    await start();
    const after = await waitFor(async () => {
      const a = await client.getAllocation(before.id);
      return a.taskStates['t']?.pid ? a : undefined;
    });
    assert.equal(after.clientStatus, 'running');
    assert.equal(after.taskStates['t']?.pid, pid, 're-attached, not restarted');
    assert.equal(after.taskStates['t']?.restarts, 0);
    assert.ok(alive(pid));

    const reported = await waitFor(
      async () => {
        const a = await client.getAllocation(leaver.id);
        return a.clientStatus === 'failed' ? a : undefined;
      },
      { timeoutMs: 30_000, description: 'the exit during the downtime is reported' },
    );
    assert.equal(reported.taskStates['t']?.exitCode, 42);

    // Its logs went on across the crash: ticks from before and after are in one file.
    let text = '';
    for await (const chunk of client.allocLogs(before.id, { task: 't' })) text += chunk;
    const ticks = [...text.matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
    assert.ok(ticks.length > 5);
    assert.deepEqual(
      ticks,
      ticks.map((_, i) => ticks[0]! + i),
      'no gap and no restart from 0 in the log',
    );

    await client.stopJob('keeper');
    await waitFor(() => !alive(pid), { timeoutMs: 20_000, description: 'stopped after re-attach' });
  });
});
