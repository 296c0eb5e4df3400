/**
 * `kill -9` of the server while jobs are being submitted, on test hosts: no job whose submission was
 * acknowledged is lost, no running task is restarted, and the agents come back on their own.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { missingNetworkTools } from '../../src/testing/network.ts';
import { missingCgroups, missingTools } from '../../src/testing/tools.ts';
import { waitFor } from '../../src/testing/wait.ts';
import { UnumCluster } from './cluster.ts';

const skip = missingNetworkTools() ?? missingCgroups() ?? missingTools(['unshare', 'bwrap']) ?? false;

describe('the server killed during job churn', { skip, timeout: 240_000 }, () => {
  let c: UnumCluster;
  before(async () => {
    c = await UnumCluster.start({ hosts: 2 });
  });
  after(() => c?.down());

  const job = (id: string) => ({
    job: id,
    groups: [
      {
        name: 'g',
        tasks: [{ name: 't', command: 'sleep', args: ['3600'], resources: { cpu: 50, memory: 16 } }],
      },
    ],
  });

  test('no acknowledged job is lost, no task restarted, agents reconnect', async () => {
    // Running before the crash: their tasks must not be restarted by it.
    for (const id of ['steady-1', 'steady-2']) await c.client().submitJob(job(id));
    const before = await waitFor(
      async () => {
        const allocs = (await c.client().listAllocations()).items.filter((a) => a.clientStatus === 'running');
        return allocs.length === 2 ? allocs : undefined;
      },
      { timeoutMs: 60_000, description: 'the steady jobs running' },
    );

    // Churn: submissions one after the other; the server is killed in the middle of them.
    const acknowledged: string[] = [];
    let stop = false;
    const churn = (async () => {
      for (let i = 0; !stop; i++) {
        try {
          await c.client().submitJob(job(`churn-${i}`));
          acknowledged.push(`churn-${i}`);
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    })();
    await waitFor(() => acknowledged.length >= 5, { timeoutMs: 30_000, description: 'churn under way' });
    c.killServer('h1');
    const atCrash = acknowledged.length;
    await new Promise((r) => setTimeout(r, 500));
    c.startServer('h1');
    await waitFor(() => acknowledged.length > atCrash + 3, {
      timeoutMs: 60_000,
      description: 'churn after the restart',
    });
    stop = true;
    await churn;

    const jobs = new Set((await c.client().listJobs()).items.map((j) => j.job.id));
    assert.deepEqual(
      acknowledged.filter((id) => !jobs.has(id)),
      [],
      'acknowledged jobs missing after the crash',
    );
    // The agents reconnect by themselves, and the tasks that ran before run on, never restarted.
    await waitFor(async () => (await c.client().listNodes()).items.every((n) => n.status === 'ready'), {
      timeoutMs: 60_000,
      description: 'every node ready again',
    });
    for (const a of before) {
      const now = await c.client().getAllocation(a.id);
      assert.equal(now.clientStatus, 'running', `${a.name}: ${now.clientStatus}`);
      assert.equal(now.taskStates['t']?.restarts ?? 0, 0, `${a.name} restarted`);
      assert.equal(now.taskStates['t']?.pid, a.taskStates['t']?.pid, `${a.name} has a new process`);
    }
  });
});
