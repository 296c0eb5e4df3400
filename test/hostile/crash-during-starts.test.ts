/**
 * A crash while tasks start leaves nothing behind: `kill -9` of a real `unum up` in the middle of a
 * burst of starts, then a restart on the same data dir. Every allocation then runs exactly one task
 * process, each in its own task cgroup; after `unum stop` of the job and a clean shutdown, no
 * process of the job is left anywhere (before, a sandbox whose start pipe closed with the agent went
 * on outside its cgroup, unlimited, and the restarted agent started the allocation a second time).
 * With allocation networks (as root with iproute2 and nftables): each allocation runs in a network
 * namespace of its own, and after the stop only the agent's pool of ready namespaces is left.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UnumClient } from '../../src/api/client.ts';
import { upToken } from '../../src/testing/acl.ts';
import { missingCgroups, missingRoot, missingTools } from '../../src/testing/tools.ts';
import { waitFor } from '../../src/testing/wait.ts';
import { freePort } from '../../src/testing/net.ts';
import { startUp } from '../../src/testing/unum-up.ts';
import { missingNetworkTools, removeTestNetwork, testNetwork } from '../../src/testing/network.ts';

const COUNT = 50;

const skip =
  missingRoot('kill -9 during starts needs isolated tasks') ??
  missingCgroups() ??
  missingTools(['bwrap', 'setpriv']) ??
  false;

interface TaskProcess {
  pid: number;
  comm: string;
  allocId: string;
  cgroups: string[];
}

/** Live processes (not zombies) whose environment names the job. */
function processesOf(job: string): TaskProcess[] {
  const out: TaskProcess[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const env = readFileSync(`/proc/${e}/environ`, 'utf8').split('\0');
      if (!env.includes(`UNUM_JOB=${job}`)) continue;
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') continue;
      const allocId = env.find((v) => v.startsWith('UNUM_ALLOC_ID='))?.slice('UNUM_ALLOC_ID='.length) ?? '';
      out.push({
        pid: Number(e),
        comm: readFileSync(`/proc/${e}/comm`, 'utf8').trim(),
        allocId,
        cgroups: readFileSync(`/proc/${e}/cgroup`, 'utf8').trim().split('\n'),
      });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

describe('a crash while tasks start leaves nothing behind', { skip, timeout: 300_000 }, () => {
  const job = `burst-${randomBytes(3).toString('hex')}`;
  let dir: string;
  let port: number;
  let up: ChildProcess | undefined;
  let client: UnumClient;
  const network = missingNetworkTools() === undefined ? testNetwork() : undefined;
  /** The namespaces of the test's bridge (allocations' and the pool's). */
  const namespaces = () => {
    if (network === undefined) return [];
    try {
      return readdirSync('/run/netns').filter((n) => n.startsWith(`${network.bridge}-`));
    } catch {
      return [];
    }
  };

  const start = async () => {
    up = await startUp({ port, dataDir: dir, client, ...(network ? { network } : {}) });
  };
  const exited = (p: ChildProcess) =>
    p.exitCode !== null || p.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((r) => p.once('exit', () => r()));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'unum-burst-'));
    port = await freePort();
    client = new UnumClient({ addr: `http://127.0.0.1:${port}`, token: upToken(dir) });
    await start();
  });

  after(async () => {
    if (up && up.exitCode === null && up.signalCode === null) {
      up.kill('SIGINT');
      await exited(up);
    }
    // Whatever a failed run left: never on a shared machine.
    for (const p of processesOf(job)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
    if (network !== undefined) removeTestNetwork(network);
  });

  test('kill -9 during a burst of starts: one process per allocation, in its cgroup, none after stop', async () => {
    await client.submitJob({
      job,
      groups: [
        {
          name: 'g',
          count: COUNT,
          tasks: [
            {
              name: 't',
              command: 'sleep',
              args: ['3600'],
              resources: { cpu: 10, memory: 16 },
            },
          ],
        },
      ],
    });
    // In the middle of the burst: some tasks run, most are still to start.
    await waitFor(() => processesOf(job).some((p) => p.comm === 'sleep'), {
      timeoutMs: 60_000,
      intervalMs: 2,
      description: 'the first task of the burst running',
    });
    up!.kill('SIGKILL');
    await exited(up!);

    await start();
    const running = await waitFor(
      async () => {
        const allocs = (await client.jobAllocations(job)).items.filter(
          (a) => a.desiredStatus === 'run' && a.clientStatus === 'running',
        );
        return allocs.length === COUNT ? allocs : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 200, description: `${COUNT} allocations running again` },
    );
    const wanted = new Set(running.map((a) => a.id));

    // Settled: exactly one task process per running allocation, nothing for any other.
    const tasks = await waitFor(
      () => {
        const sleeps = processesOf(job).filter((p) => p.comm === 'sleep');
        return sleeps.length === COUNT ? sleeps : undefined;
      },
      { timeoutMs: 30_000, description: `${COUNT} task processes` },
    ).catch(() => processesOf(job).filter((p) => p.comm === 'sleep'));
    const perAlloc = new Map<string, number>();
    for (const p of tasks) perAlloc.set(p.allocId, (perAlloc.get(p.allocId) ?? 0) + 1);
    const twice = [...perAlloc].filter(([, n]) => n > 1).map(([id]) => id);
    assert.deepEqual(twice, [], 'allocations with more than one task process');
    assert.deepEqual(
      [...perAlloc.keys()].filter((id) => !wanted.has(id)),
      [],
      'task processes of allocations that are not running',
    );
    assert.equal(tasks.length, COUNT);

    // Every process of the job that is not bwrap's outer monitor is in its task's cgroup.
    for (const p of processesOf(job)) {
      if (p.comm === 'bwrap' && !p.cgroups.some((l) => l.includes('/unum/'))) continue;
      const pidsLine =
        p.cgroups.find((l) => /^\d+:pids:/.test(l)) ?? p.cgroups.find((l) => l.startsWith('0::'));
      assert.ok(
        pidsLine?.endsWith(`/${p.allocId}.t`),
        `process ${p.pid} (${p.comm}) of ${p.allocId} is outside its cgroup: ${pidsLine}`,
      );
    }

    if (network !== undefined) {
      // Each allocation in a network of its own, none shared, none the host's.
      const nets = new Map<string, string>();
      for (const p of tasks) nets.set(p.allocId, readlinkSync(`/proc/${p.pid}/ns/net`));
      assert.equal(new Set(nets.values()).size, COUNT, 'one network namespace per allocation');
      assert.ok(
        ![...nets.values()].includes(readlinkSync('/proc/self/ns/net')),
        "a task on the host's network",
      );
      assert.ok(namespaces().length >= COUNT, `namespaces of the bridge: ${namespaces().length}`);
    }

    await client.stopJob(job);
    await waitFor(() => processesOf(job).length === 0, {
      timeoutMs: 60_000,
      intervalMs: 100,
      description: 'no process of the job left after unum stop',
    });
    // Their networks are given back: what is left is the pool of ready ones (2).
    await waitFor(() => namespaces().length <= 2, {
      timeoutMs: 60_000,
      intervalMs: 100,
      description: "the allocations' network namespaces removed",
    });
    up!.kill('SIGINT');
    await exited(up!);
    assert.deepEqual(processesOf(job), [], 'nothing left after shutdown');
  });
});
