/**
 * The soak's invariants (./soak.ts), checked against what the workload had acknowledged
 * (./soak-workload.ts) and against the hosts themselves: a service's instances are counted as the
 * `sleep` processes on the hosts whose environment names the job, not as the API reports them.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { UnumClient } from '../../src/api/client.ts';
import type { UnumCluster } from './cluster.ts';
import type { SoakJob } from './soak-workload.ts';

/** A service changed this recently may run old and new instances side by side for a moment. */
const CHANGE_SETTLE_MS = 15_000;
const SAMPLE_MS = 1_000;

export interface Instance {
  host: string;
  allocId: string;
  gen: number;
}

export class Checks {
  readonly violations: string[] = [];
  /** How many times each invariant was checked. */
  readonly counts: Record<string, number> = {};
  private readonly c: UnumCluster;
  private readonly say: (line: string) => void;
  private readonly client: UnumClient;
  private cut = false;
  private sampler: NodeJS.Timeout | undefined;
  /** Batch instances seen complete: name → [alloc id, when first seen]. */
  private readonly succeeded = new Map<string, { allocId: string; at: number }>();
  /** Allocation runs files read that show a success: the file check saw something. */
  private readonly runsFilesDone = new Set<string>();
  /** Violations already reported, to report each once. */
  private readonly reported = new Set<string>();

  constructor(c: UnumCluster, say: (line: string) => void) {
    this.c = c;
    this.say = say;
    this.client = new UnumClient({ addr: c.addr, ca: c.ca, token: c.token, timeoutMs: 10_000 });
  }

  violation(what: string, key = what): void {
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.violations.push(what);
    this.say(`VIOLATION: ${what}`);
  }

  private checked(invariant: string): void {
    this.counts[invariant] = (this.counts[invariant] ?? 0) + 1;
  }

  /** A host is cut off: more than `count` may run until the heal has settled. */
  cutOff(): void {
    this.cut = true;
  }

  /** The heal has settled: more than `count` is a violation again. */
  reconnected(): void {
    this.cut = false;
  }

  /** The service processes on every host, by job. */
  instances(): Map<string, Instance[]> {
    const out = new Map<string, Instance[]>();
    for (const h of this.c.hosts.hosts) {
      for (const pid of this.c.hosts.pids(h.name)) {
        let env: Map<string, string>;
        try {
          if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'sleep') continue;
          env = new Map(
            readFileSync(`/proc/${pid}/environ`, 'utf8')
              .split('\0')
              .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as [string, string]),
          );
        } catch {
          continue; // gone meanwhile
        }
        const job = env.get('UNUM_JOB');
        if (!job?.startsWith('soak-svc-')) continue;
        const list = out.get(job) ?? [];
        list.push({
          host: h.name,
          allocId: env.get('UNUM_ALLOC_ID') ?? '?',
          gen: Number(env.get('SOAK_GEN')),
        });
        out.set(job, list);
      }
    }
    return out;
  }

  /** Every second: no service that did not just change runs more than `count`, unless a host is cut off. */
  startSampling(jobs: () => SoakJob[]): void {
    this.sampler = setInterval(() => {
      if (this.cut) return;
      const now = Date.now();
      const seen = this.instances();
      this.checked('never more than count');
      for (const j of jobs()) {
        if (j.type !== 'service' || now - j.changedAt < CHANGE_SETTLE_MS) continue;
        const want = j.stopped ? 0 : j.count;
        const got = seen.get(j.id) ?? [];
        if (got.length > want)
          this.violation(
            `${j.id} ran ${got.length} instances, more than its ${want}: ${describe(got)}`,
            `excess ${j.id} ${j.version}`,
          );
      }
    }, SAMPLE_MS);
  }

  stopSampling(): void {
    clearInterval(this.sampler);
  }

  /**
   * Waits until the cluster matches the acknowledged jobs: every node ready, every service running
   * exactly `count` processes of its generation, a stopped one none. The time it took, or undefined
   * (a violation) after `timeoutMs`.
   */
  async converge(jobs: SoakJob[], timeoutMs: number, label: string): Promise<number | undefined> {
    const t0 = Date.now();
    let problems: string[] = [];
    this.checked('convergence');
    while (Date.now() - t0 < timeoutMs) {
      problems = await this.mismatches(jobs).catch((err: Error) => [`the API: ${err.message}`]);
      if (problems.length === 0) {
        const ms = Date.now() - t0;
        this.say(`  converged in ${(ms / 1000).toFixed(1)} s`);
        await this.jobsKept(jobs);
        await this.batchesOnce();
        return ms;
      }
      await new Promise((r) => setTimeout(r, 1_000));
    }
    this.violation(`after ${label}: not converged in ${timeoutMs / 1000} s: ${problems.join('; ')}`);
    return undefined;
  }

  /**
   * The last checks: nothing acknowledged lost, no batch instance run again — and the batch checks
   * saw successes to check (a check that saw nothing proves nothing).
   */
  async final(jobs: SoakJob[]): Promise<void> {
    await this.jobsKept(jobs);
    await this.batchesOnce();
    this.client.close();
    if (jobs.some((j) => j.type === 'batch') && (this.succeeded.size === 0 || this.runsFilesDone.size === 0))
      this.violation(
        `batch jobs ran but the checks saw ${this.succeeded.size} instances succeed in the API and ${this.runsFilesDone.size} runs files with a success on the hosts`,
      );
  }

  /** What the batch checks looked at: instances seen succeeded (API), allocations' runs files with a success. */
  get batchesSeen(): { succeededInstances: number; runsFiles: number } {
    return { succeededInstances: this.succeeded.size, runsFiles: this.runsFilesDone.size };
  }

  private async mismatches(jobs: SoakJob[]): Promise<string[]> {
    const problems: string[] = [];
    const nodes = (await this.client.listNodes()).items;
    const ready = nodes.filter((n) => n.status === 'ready').length;
    if (ready !== this.c.hosts.hosts.length)
      problems.push(`${ready}/${this.c.hosts.hosts.length} nodes ready`);
    const seen = this.instances();
    for (const j of jobs) {
      if (j.type !== 'service') continue;
      const got = seen.get(j.id) ?? [];
      const want = j.stopped ? 0 : j.count;
      const stale = got.filter((i) => i.gen !== j.gen);
      if (got.length !== want || stale.length > 0)
        problems.push(
          `${j.id}: ${got.length} running of ${want}${stale.length ? `, ${stale.length} of an older generation` : ''}`,
        );
    }
    return problems;
  }

  /** Every acknowledged job is there, at its acknowledged version or later, stopped if stopped. */
  private async jobsKept(jobs: SoakJob[]): Promise<void> {
    this.checked('no acknowledged job lost');
    const listed = new Map((await this.client.listJobs()).items.map((i) => [i.job.id, i.job]));
    for (const j of jobs) {
      const got = listed.get(j.id);
      if (got === undefined) this.violation(`acknowledged job ${j.id} is lost`);
      else if (got.version < j.version)
        this.violation(`${j.id} is at version ${got.version}, before the acknowledged ${j.version}`);
      else if (got.stop !== j.stopped)
        this.violation(
          `${j.id} is ${got.stop ? 'stopped' : 'not stopped'}, acknowledged ${j.stopped ? 'stopped' : 'running'}`,
        );
      else if (j.type === 'service' && !j.stopped && got.spec.groups[0]?.count !== j.count)
        this.violation(`${j.id} has count ${got.spec.groups[0]?.count}, acknowledged ${j.count}`);
    }
  }

  /**
   * No batch instance that succeeded runs again: not in a new allocation (the API), not in the
   * same one (the runs file a task appends to on its host: "start" after "done").
   */
  private async batchesOnce(): Promise<void> {
    this.checked('no succeeded batch allocation run again');
    const allocs = (await this.client.listAllocations({ all: true })).items.filter((a) =>
      a.jobId.startsWith('soak-batch-'),
    );
    // When the server knew an instance had succeeded: the first complete allocation's last change
    // (a success is its last transition), or when this check first saw it, whichever is earlier.
    // A replacement made before that is no violation: an allocation lost with its node (a
    // partition, a pause) that finished out of sight and reported it on its return ran at least
    // once by design; its replacement was placed while its end was unknown.
    const now = Date.now();
    for (const a of allocs)
      if (a.clientStatus === 'complete' && !this.succeeded.has(a.name))
        this.succeeded.set(a.name, { allocId: a.id, at: Math.min(now, a.modifiedAt) });
    for (const a of allocs) {
      const done = this.succeeded.get(a.name);
      if (done === undefined || done.allocId === a.id) continue;
      if (a.createdAt > done.at)
        this.violation(
          `batch instance ${a.name} succeeded in ${done.allocId} and ran again in ${a.id} (${a.clientStatus})`,
          `rerun ${a.id}`,
        );
    }
    for (const h of this.c.hosts.hosts) {
      const root = join(this.c.dir, h.name, 'agent', 'agent', 'allocs');
      let ids: string[] = [];
      try {
        ids = readdirSync(root);
      } catch {
        continue;
      }
      for (const id of ids) {
        let lines: string[];
        try {
          lines = readFileSync(join(root, id, 'alloc', 'runs'), 'utf8').split('\n');
        } catch {
          continue;
        }
        const done = lines.indexOf('done');
        if (done >= 0) this.runsFilesDone.add(id);
        if (done >= 0 && lines.indexOf('start', done) > done)
          this.violation(
            `batch allocation ${id} on ${h.name} started again after it succeeded`,
            `again ${id}`,
          );
      }
    }
  }
}

function describe(instances: Instance[]): string {
  return instances.map((i) => `${i.allocId.slice(0, 8)} on ${i.host} (gen ${i.gen})`).join(', ');
}
