/**
 * An agent cut off from every server keeps its tasks running by default (./cluster.test.ts); with
 * `--max-disconnect` it stops them itself once no server has answered for that long.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { missingNetworkTools } from '../../src/testing/network.ts';
import { missingCgroups, missingTools } from '../../src/testing/tools.ts';
import { waitFor } from '../../src/testing/wait.ts';
import { UnumCluster } from './cluster.ts';

const skip = missingNetworkTools() ?? missingCgroups() ?? missingTools(['unshare', 'bwrap']) ?? false;

describe('--max-disconnect', { skip, timeout: 180_000 }, () => {
  let c: UnumCluster;
  before(async () => {
    c = await UnumCluster.start({
      hosts: 2,
      agents: ['h2'],
      agentArgsFor: { h2: ['--max-disconnect', '3s'] },
    });
  });
  after(() => c?.down());

  const sleeps = () =>
    c.hosts.pids('h2').filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep';
      } catch {
        return false;
      }
    }).length;

  test('a cut-off agent stops its tasks once no server has answered for the limit', async () => {
    await c.client().submitJob({
      job: 'single',
      groups: [
        {
          name: 'g',
          tasks: [{ name: 't', command: 'sleep', args: ['3600'], resources: { cpu: 50, memory: 16 } }],
        },
      ],
    });
    await waitFor(() => sleeps() === 1, { timeoutMs: 60_000, description: 'the task running on h2' });
    c.hosts.partition('h2');
    await waitFor(() => sleeps() === 0, {
      timeoutMs: 60_000,
      description: 'the task stopped by its cut-off agent',
    });
    c.hosts.heal('h2');
    await waitFor(async () => (await c.client().listNodes()).items.every((n) => n.status === 'ready'), {
      timeoutMs: 60_000,
      description: 'h2 back',
    });
    // Once back, the server learns why the task ended.
    const why = await waitFor(
      async () =>
        (await c.client().jobAllocations('single')).items.find((a) =>
          /max-disconnect/.test(a.clientDescription ?? ''),
        ),
      { timeoutMs: 60_000, description: 'the reason reported' },
    );
    assert.match(why.clientDescription ?? '', /no server reachable for 3s/);
  });
});
