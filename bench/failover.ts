/**
 * Leader failover, on test hosts (test/cluster): three servers on one etcd (a member on the hosts'
 * bridge), an agent on each of the four hosts. Each trial kills the leading server with `kill -9`,
 * submits a one-instance job to a surviving server at once, and measures the time from the kill to
 * that job's instance placed — the first plan the new leader commits. The killed server is then
 * started again (it rejoins the line) before the next trial.
 *
 *   node bench/failover.ts [--trials 20]     (as root, with iproute2, nftables, util-linux, etcd)
 *
 * Prints p50/p99/max (and the kill → new leader answering time) and writes
 * bench/results/failover.json. Target: ≤ 3 s at p99.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { UnumClient } from '../src/api/client.ts';
import { findTool } from '../src/testing/tools.ts';
import { UnumCluster } from '../test/cluster/cluster.ts';
import { pct, until } from './lib.ts';

const { values } = parseArgs({ options: { trials: { type: 'string', default: '20' } } });
const TRIALS = Number(values.trials);
const SERVERS = ['h1', 'h2', 'h3'];
const root = resolve(import.meta.dirname, '..');

async function main(): Promise<void> {
  if (process.getuid?.() !== 0 || findTool('etcd') === undefined) {
    console.log('skipped: needs root and etcd (apt-get install etcd-server)');
    return;
  }
  const c = await UnumCluster.start({ hosts: 4, servers: SERVERS, etcd: true });
  const placed: number[] = [];
  const elected: number[] = [];
  const clients = new Map(
    SERVERS.map((h) => [
      h,
      new UnumClient({ addr: c.serverUrl(h), ca: c.ca, token: c.token, timeoutMs: 2_000 }),
    ]),
  );
  const leader = async () => {
    for (const [h, client] of clients) if ((await client.status().catch(() => undefined))?.leader) return h;
    return undefined;
  };
  try {
    for (let i = 0; i < TRIALS; i++) {
      const was = await until(leader, 60_000, 'a leader');
      const survivor = SERVERS.find((h) => h !== was)!;
      const client = clients.get(survivor)!;
      const job = `probe-${i}`;
      const t0 = performance.now();
      c.killServer(was);
      const electedAt = until(
        async () => {
          const now = await leader();
          return now !== undefined && now !== was ? performance.now() : undefined;
        },
        30_000,
        'a new leader',
      );
      // The job goes in at once (any server takes writes); the new leader schedules it.
      await until(
        () =>
          client.submitJob({
            job,
            groups: [
              {
                name: 'g',
                tasks: [{ name: 't', command: 'sleep', args: ['3600'], resources: { cpu: 10, memory: 8 } }],
              },
            ],
          }),
        30_000,
        'the submission',
      );
      await until(
        async () => ((await client.jobAllocations(job)).items.length > 0 ? true : undefined),
        30_000,
        'the probe placed',
      );
      const ms = performance.now() - t0;
      placed.push(ms);
      elected.push((await electedAt) - t0);
      console.log(
        `trial ${i + 1}/${TRIALS}: ${was} killed → new leader ${(elected.at(-1)! / 1000).toFixed(2)} s, its first plan ${(ms / 1000).toFixed(2)} s`,
      );
      await client.stopJob(job, { purge: true }).catch(() => undefined);
      c.startServer(was);
      await until(
        async () => ((await clients.get(was)!.status()).addr !== undefined ? true : undefined),
        60_000,
        `${was} back`,
      );
    }
  } finally {
    for (const client of clients.values()) client.close();
    c.down();
  }
  const s = [...placed].sort((a, b) => a - b);
  const e = [...elected].sort((a, b) => a - b);
  const r = {
    p50Ms: pct(s, 50),
    p99Ms: pct(s, 99),
    maxMs: s.at(-1)!,
    leaderP50Ms: pct(e, 50),
    leaderP99Ms: pct(e, 99),
  };
  console.log(
    `\nleader killed → first plan committed by the new leader, ${TRIALS} trials: p50 ${(r.p50Ms / 1000).toFixed(2)} s, p99 ${(r.p99Ms / 1000).toFixed(2)} s, max ${(r.maxMs / 1000).toFixed(2)} s (target p99 ≤ 3 s); a leader answering: p50 ${(r.leaderP50Ms / 1000).toFixed(2)} s, p99 ${(r.leaderP99Ms / 1000).toFixed(2)} s`,
  );
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(
    join(root, 'bench', 'results', 'failover.json'),
    `${JSON.stringify({ bench: 'failover', trials: TRIALS, date: new Date().toISOString(), targetP99Ms: 3000, ...r, placedMs: placed, electedMs: elected }, null, 2)}\n`,
  );
}

await main();
