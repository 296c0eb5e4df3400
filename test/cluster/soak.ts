/**
 * `npm run soak -- --minutes N`: the cluster under the failures of a datacenter's every day, on test
 * hosts (./cluster.ts), while jobs are submitted, updated and stopped; invariants are checked all
 * along and reported at the end. Not part of `npm test` (it runs for minutes); as root.
 *
 *   npm run soak -- --minutes 10 [--hosts 4] [--seed 7] [--json]
 *
 * A server on h1 and an agent on every host. Rounds follow each other: a quiet spell, then one
 * fault (./soak-faults.ts) — a host killed (every process, the server's too on h1) and started
 * again, a host paused shorter than half the grace (nothing must happen) or longer than the grace
 * (its allocations are replaced), a host partitioned and healed, the server killed with `kill -9`
 * or paused, and restarted or resumed. Jobs keep changing meanwhile (./soak-workload.ts), and every
 * call is retried until it is acknowledged.
 *
 * Invariants (./soak-checks.ts):
 *  - convergence: after each heal, within --settle seconds, every node is ready, every service runs
 *    exactly `count` instances of its latest version (real processes, counted on the hosts) and a
 *    stopped job none;
 *  - never more than `count`: at no time outside a fault that cuts a host off (a partition, a pause
 *    past the grace, before its heal has settled) does a service that did not just change run more
 *    than `count` processes;
 *  - no acknowledged job lost: every acknowledged submission, update and stop is in the job list;
 *  - no succeeded batch allocation run again: no second allocation of an instance that completed,
 *    and no task started again in an allocation after it succeeded (its runs file on the host).
 *
 * Exit code 1 when an invariant was broken. Writes bench/results/soak.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { missingNetworkTools } from '../../src/testing/network.ts';
import { missingCgroups, missingTools } from '../../src/testing/tools.ts';
import { UnumCluster } from './cluster.ts';
import { Checks } from './soak-checks.ts';
import { FAULTS, type Fault } from './soak-faults.ts';
import { random } from './soak-random.ts';
import { Workload } from './soak-workload.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    hosts: { type: 'string', default: '4' },
    seed: { type: 'string' },
    settle: { type: 'string', default: '90' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(`Usage: npm run soak -- [--minutes N] [--hosts N] [--seed S] [--settle SECONDS] [--json]

Random kills, pauses and partitions of hosts and of the server on test hosts while jobs are
submitted, updated and stopped; the invariants are checked all along and reported at the end.
As root. Exit code 1 when an invariant was broken; figures in bench/results/soak.json.`);
  process.exit(0);
}
const minutes = Number(values.minutes);
const hostCount = Number(values.hosts);
const settleMs = Number(values.settle) * 1000;
if (!(minutes > 0) || !Number.isInteger(hostCount) || hostCount < 3 || !(settleMs > 0)) {
  console.error('--minutes must be positive, --hosts a whole number of 3 or more, --settle positive');
  process.exit(2);
}
const missing =
  (process.getuid?.() === 0 ? undefined : 'root (test hosts are network namespaces and cgroups)') ??
  missingNetworkTools() ??
  missingCgroups() ??
  missingTools(['unshare', 'bwrap']);
if (missing !== undefined) {
  console.error(`the soak needs ${missing}`);
  process.exit(1);
}

const seed = values.seed === undefined ? Date.now() % 1_000_000 : Number(values.seed);
const rng = random(seed);
const say = (line: string) => {
  if (!values.json) console.log(`${new Date().toISOString().slice(11, 19)} ${line}`);
};
say(`soak: ${minutes} min on ${hostCount} test hosts, seed ${seed}`);

const cluster = await UnumCluster.start({ hosts: hostCount });
const checks = new Checks(cluster, say);
const workload = new Workload(cluster, rng, checks, say);
const faults: Record<string, number> = {};
const converged: number[] = [];
const endAt = Date.now() + minutes * 60_000;
let rounds = 0;
const harnessErrors: string[] = [];
try {
  workload.start();
  checks.startSampling(() => workload.jobs());
  while (Date.now() < endAt) {
    rounds++;
    await sleep(rng.between(5_000, 10_000));
    const fault: Fault = rng.pick(FAULTS);
    faults[fault.name] = (faults[fault.name] ?? 0) + 1;
    const cut = fault.cutsOff;
    let applied: ReturnType<Fault['apply']>;
    try {
      applied = fault.apply(cluster, rng);
    } catch (err) {
      // The harness could not break the host (not the cluster's doing): say so, and go on.
      harnessErrors.push(`round ${rounds} (${fault.name}): ${(err as Error).message}`);
      say(`round ${rounds}: ${fault.name} could not be applied: ${(err as Error).message}`);
      continue;
    }
    const { host, heal } = applied;
    say(`round ${rounds}: ${fault.name} ${host}`);
    if (cut) checks.cutOff();
    await sleep(fault.durationMs(rng));
    await heal();
    say(`round ${rounds}: healed ${host}`);
    // The check compares against the jobs as acknowledged: the workload holds still meanwhile.
    await workload.pause();
    const ms = await checks.converge(workload.jobs(), settleMs, `round ${rounds} (${fault.name} ${host})`);
    if (ms !== undefined) converged.push(ms);
    checks.reconnected();
    workload.resume();
  }
} finally {
  await workload.stop();
  checks.stopSampling();
}
let report;
try {
  await checks.converge(workload.jobs(), settleMs, 'the end');
  await checks.final(workload.jobs());
} finally {
  const sorted = [...converged].sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
  report = {
    bench: 'soak',
    date: new Date().toISOString(),
    seed,
    minutes,
    hosts: hostCount,
    rounds,
    faults,
    operations: workload.acknowledged,
    convergedMs: { p50: pct(50), p99: pct(99), max: sorted.at(-1) },
    checks: checks.counts,
    batchesSeen: checks.batchesSeen,
    violations: checks.violations,
    harnessErrors,
  };
  cluster.down();
}
const root = resolve(import.meta.dirname, '..', '..');
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
writeFileSync(join(root, 'bench', 'results', 'soak.json'), `${JSON.stringify(report, null, 2)}\n`);
if (values.json) console.log(JSON.stringify(report, null, 2));
else {
  console.log(`\nsoak: ${rounds} rounds in ${minutes} min, seed ${seed}`);
  console.log(
    `faults: ${Object.entries(faults)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
  console.log(
    `acknowledged: ${Object.entries(workload.acknowledged)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
  console.log(
    `converged after heal: p50 ${fmt(report.convergedMs.p50)}, p99 ${fmt(report.convergedMs.p99)}, max ${fmt(report.convergedMs.max)}`,
  );
  if (harnessErrors.length > 0)
    console.log(`faults the harness could not apply: ${harnessErrors.join('; ')}`);
  console.log(
    `checks: ${Object.entries(checks.counts)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
  console.log(
    checks.violations.length === 0
      ? 'invariants: all held'
      : `invariants broken (${checks.violations.length}):\n${checks.violations.map((v) => `  - ${v}`).join('\n')}`,
  );
  console.log('wrote bench/results/soak.json');
}
process.exitCode = checks.violations.length === 0 ? 0 : 1;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function fmt(ms: number | undefined): string {
  return ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`;
}
