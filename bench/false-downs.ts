/**
 * No false node-downs under stress, on test hosts (test/cluster): a server on h1, an agent on every
 * host, a service of 6 instances. For `--minutes`: one host's CPU saturated (a busy loop per core of
 * the machine, in that host: here the hosts share one kernel, so every host feels it), and once a
 * minute one agent (each host's in turn) paused with SIGSTOP for half the heartbeat grace.
 *
 *   node bench/false-downs.ts [--minutes 10]     (as root, with iproute2, nftables, util-linux)
 *
 * Counted: node-down events (every one is false: no host dies) and allocations lost; measured: the
 * silence of each node as the leader sees it (now − lastHeartbeat, sampled every 250 ms), its
 * maximum against the grace. Writes bench/results/false-downs.json. Target: 0 node-downs.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { UnumCluster, nodeDownsSince } from '../test/cluster/cluster.ts';
import { pct, sleep } from './lib.ts';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '10' } } });
const MINUTES = Number(values.minutes);
const GRACE_MS = 4_000;
const root = resolve(import.meta.dirname, '..');

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('skipped: test hosts need root');
    return;
  }
  const c = await UnumCluster.start({ hosts: 4 });
  const silences: number[] = [];
  let maxSilence = { ms: 0, node: '' };
  let pauses = 0;
  let downs: string[] = [];
  let lost = 0;
  const busyHost = 'h3';
  try {
    const client = c.client();
    await client.submitJob({
      job: 'steady',
      groups: [
        {
          name: 'g',
          count: 6,
          tasks: [{ name: 't', command: 'sleep', args: ['86400'], resources: { cpu: 20, memory: 16 } }],
        },
      ],
    });
    const start = (await client.events({ limit: 1 })).index;
    // A busy loop per core, at the agents' own priority, in one host.
    for (let i = 0; i < cpus().length; i++) c.hosts.spawn(busyHost, ['sh', '-c', 'while :; do :; done']);
    console.log(
      `false-downs bench: ${MINUTES} min, ${cpus().length} busy loops on ${busyHost}, an agent paused ${GRACE_MS / 2000} s every minute`,
    );
    const endAt = Date.now() + MINUTES * 60_000;
    const sampler = setInterval(() => {
      void client
        .listNodes()
        .then(({ items }) => {
          const now = Date.now();
          for (const n of items) {
            const ms = Math.round(now - n.lastHeartbeat);
            silences.push(ms);
            if (ms > maxSilence.ms) maxSilence = { ms, node: n.name };
          }
        })
        .catch(() => undefined);
    }, 250);
    let minute = 0;
    while (Date.now() < endAt) {
      const host = c.hosts.hosts[minute % c.hosts.hosts.length]!.name;
      c.signalAgent(host, 'SIGSTOP');
      await sleep(GRACE_MS / 2);
      c.signalAgent(host, 'SIGCONT');
      pauses++;
      minute++;
      console.log(
        `minute ${minute}: paused ${host}'s agent ${GRACE_MS / 2000} s; longest silence so far ${maxSilence.ms} ms (${maxSilence.node})`,
      );
      await sleep(Math.max(0, Math.min(60_000 - GRACE_MS / 2, endAt - Date.now())));
    }
    clearInterval(sampler);
    downs = await nodeDownsSince(client, start);
    lost = (await client.listAllocations({ all: true })).items.filter(
      (a) => a.clientStatus === 'lost',
    ).length;
  } finally {
    spawnSync('pkill', ['-f', 'while :; do :; done']);
    c.down();
  }
  const s = [...silences].sort((a, b) => a - b);
  const r = {
    bench: 'false-downs',
    date: new Date().toISOString(),
    minutes: MINUTES,
    graceMs: GRACE_MS,
    agentPauses: pauses,
    pauseMs: GRACE_MS / 2,
    busyLoops: cpus().length,
    nodeDowns: downs.length,
    allocationsLost: lost,
    silenceMs: { p50: pct(s, 50), p99: pct(s, 99), max: maxSilence.ms, maxNode: maxSilence.node },
    downs,
  };
  console.log(
    `\n${MINUTES} min, CPU saturated, ${pauses} agent pauses of ${GRACE_MS / 2000} s: ${r.nodeDowns} node-downs, ${lost} allocations lost (target 0); silence as the leader sees it p50 ${r.silenceMs.p50} ms, p99 ${r.silenceMs.p99} ms, max ${r.silenceMs.max} ms of a ${GRACE_MS} ms grace`,
  );
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(join(root, 'bench', 'results', 'false-downs.json'), `${JSON.stringify(r, null, 2)}\n`);
  if (r.nodeDowns > 0) process.exitCode = 1;
}

await main();
