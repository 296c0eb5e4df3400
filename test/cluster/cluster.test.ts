/**
 * Many machines, on test hosts (./hosts.ts: network namespaces with their own addresses, mount
 * namespaces, cgroups): a server and four agents. A service of 6 instances spreads over them; a
 * task's port is reachable from another host; a host killed (every process, as a power cut) has its
 * instances replaced elsewhere; a partitioned host too, and once healed the count is exact again;
 * and nothing of the cluster is left on the machine afterwards.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Allocation } from '../../src/core/types.ts';
import { missingNetworkTools } from '../../src/testing/network.ts';
import { missingCgroups, missingTools } from '../../src/testing/tools.ts';
import { waitFor } from '../../src/testing/wait.ts';
import { UnumCluster } from './cluster.ts';

const skip =
  missingNetworkTools() ?? missingCgroups() ?? missingTools(['unshare', 'bwrap', 'python3']) ?? false;

/** A TCP server that says which host it runs on (no DNS lookups: the test hosts have no resolver). */
const ECHO = `import socket, os
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(os.environ['UNUM_PORT_ECHO']))); s.listen(16)
while True:
    c, _ = s.accept(); c.sendall(('from ' + os.environ['UNUM_NODE_ID']).encode()); c.close()
`;

describe('a cluster of four hosts', { skip, timeout: 300_000 }, () => {
  let c: UnumCluster;

  before(async () => {
    c = await UnumCluster.start({ hosts: 4 });
  });
  after(() => {
    c?.down();
  });

  const running = async (job: string): Promise<Allocation[]> =>
    (await c.client().jobAllocations(job)).items.filter(
      (a) => a.desiredStatus === 'run' && a.clientStatus === 'running',
    );
  /** The task processes (`sleep`) of a host: one pid namespace for all hosts, so by its cgroup. */
  const sleepsOn = (host: string) =>
    c.hosts.pids(host).filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep';
      } catch {
        return false;
      }
    }).length;
  const nodeName = async (id: string) =>
    (await c.client().listNodes()).items.find((n) => n.id === id)?.name ?? id;
  /** The host (not h1, which runs the server) with the most instances of `job`. */
  const busiestAgentHost = async (job: string): Promise<string> => {
    const count = new Map<string, number>();
    for (const a of await running(job)) {
      const name = await nodeName(a.nodeId);
      if (name !== 'h1') count.set(name, (count.get(name) ?? 0) + 1);
    }
    const best = [...count].sort((x, y) => y[1] - x[1])[0];
    assert.ok(best, `no instance of ${job} outside h1`);
    return best[0];
  };

  test('a service spreads over the hosts and a task port is reachable from another host', async () => {
    await c.client().submitJob({
      job: 'web',
      groups: [
        {
          name: 'web',
          count: 6,
          // 600 millicores: at most 3 instances on a 2-core host.
          tasks: [{ name: 'web', command: 'sleep', args: ['3600'], resources: { cpu: 600, memory: 32 } }],
        },
      ],
    });
    await c.client().submitJob({
      job: 'echo',
      groups: [
        {
          name: 'echo',
          network: { ports: ['echo'] },
          tasks: [
            { name: 'echo', command: 'python3', args: ['-c', ECHO], resources: { cpu: 100, memory: 64 } },
          ],
        },
      ],
    });
    const web = await waitFor(
      async () => ((await running('web')).length === 6 ? running('web') : undefined),
      {
        timeoutMs: 60_000,
        description: '6 instances of web running',
      },
    );
    assert.ok(new Set(web.map((a) => a.nodeId)).size >= 2, 'spread over at least two hosts');

    const [echo] = await waitFor(
      async () => ((await running('echo')).length === 1 ? running('echo') : undefined),
      {
        timeoutMs: 60_000,
        description: 'echo running',
      },
    );
    const on = await nodeName(echo!.nodeId);
    const ip = c.hosts.host(on).ip;
    const port = echo!.resources.ports[0]!.value;
    const other = c.hosts.hosts.find((h) => h.name !== on)!.name;
    const probe = `import socket\ntry:\n  print(socket.create_connection(('${ip}', ${port}), timeout=3).recv(100).decode())\nexcept OSError as e:\n  print('error', e)`;
    const answer = await waitFor(
      () => {
        const out = c.hosts.run(other, ['python3', '-c', probe]).out.trim();
        return out.startsWith('from ') ? out : undefined;
      },
      { timeoutMs: 30_000, description: `echo reachable at ${ip}:${port} from ${other}` },
    );
    assert.equal(answer, `from ${echo!.nodeId}`);
  });

  test('a host killed outright: its instances are replaced on the others', async () => {
    const victim = await busiestAgentHost('web');
    const victimId = await c.nodeId(victim);
    c.hosts.kill(victim);
    assert.deepEqual(c.hosts.pids(victim), [], 'every process of the host is gone');
    await waitFor(
      async () => {
        const r = await running('web');
        return r.length === 6 && r.every((a) => a.nodeId !== victimId);
      },
      { timeoutMs: 120_000, intervalMs: 500, description: `web's instances on ${victim} replaced elsewhere` },
    );
    const node = (await c.client().listNodes()).items.find((n) => n.id === victimId);
    assert.equal(node?.status, 'down');
  });

  test('a host cut off: replaced; once healed, its old instances stop and the count is exact', async () => {
    const victim = await busiestAgentHost('web');
    const victimId = await c.nodeId(victim);
    c.hosts.partition(victim);
    await waitFor(
      async () => {
        const r = await running('web');
        return r.length === 6 && r.every((a) => a.nodeId !== victimId);
      },
      { timeoutMs: 120_000, intervalMs: 500, description: `web's instances on ${victim} replaced elsewhere` },
    );
    // Cut off, its agent kept the tasks running.
    assert.ok(sleepsOn(victim) > 0, 'the cut-off host kept its tasks');

    c.hosts.heal(victim);
    await waitFor(
      async () => (await c.client().listNodes()).items.find((n) => n.id === victimId)?.status === 'ready',
      {
        timeoutMs: 60_000,
        description: `${victim} back`,
      },
    );
    // Its replaced instances are stopped: no task process is left on it, and the count is exact.
    await waitFor(() => sleepsOn(victim) === 0, {
      timeoutMs: 60_000,
      description: `the replaced instances on ${victim} stopped`,
    });
    assert.equal((await running('web')).length, 6);
  });

  test('a drained host: its instances move to the others, and it takes nothing new', async () => {
    const victim = await busiestAgentHost('web');
    const victimId = await c.nodeId(victim);
    await c.client().drainNode(victimId, { deadline: '2m' });
    await waitFor(
      async () => {
        const r = await running('web');
        return r.length === 6 && r.every((a) => a.nodeId !== victimId);
      },
      { timeoutMs: 120_000, intervalMs: 500, description: `web moved off ${victim}` },
    );
    const node = await waitFor(
      async () => {
        const n = (await c.client().listNodes()).items.find((x) => x.id === victimId);
        return n !== undefined && !n.drain ? n : undefined;
      },
      { timeoutMs: 60_000, description: 'the drain finished' },
    );
    assert.equal(node.eligibility, 'ineligible');
    await waitFor(() => sleepsOn(victim) === 0, {
      timeoutMs: 60_000,
      description: `no task left on ${victim}`,
    });
  });

  test('down leaves nothing of the cluster on the machine', () => {
    const id = c.hosts.id;
    c.down();
    const netns = existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith(id)) : [];
    assert.deepEqual(netns, []);
    assert.equal(existsSync(`/proc/sys/net/ipv4/conf/${id}`), false, 'the bridge');
    assert.equal(existsSync(`/sys/fs/cgroup/pids/unum-hosts/${id}`), false, 'the cgroups');
  });
});
