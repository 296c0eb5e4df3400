/**
 * The soak's jobs (./soak.ts): services submitted, scaled, rolled to a new generation (a restart of
 * every instance) and stopped, and batch jobs, one call every second or two. Every call is retried
 * until the cluster acknowledges it (a submission is idempotent: the same spec again changes
 * nothing), so that what was acknowledged is known exactly: `jobs()`.
 */
import { UnumClient } from '../../src/api/client.ts';
import { UnavailableError } from '../../src/core/errors.ts';
import type { UnumCluster } from './cluster.ts';
import type { Random } from './soak-random.ts';

export interface SoakJob {
  id: string;
  type: 'service' | 'batch';
  count: number;
  /** Bumped by a rolling change: every instance's process has SOAK_GEN=gen in its environment. */
  gen: number;
  /** The version the last acknowledged change answered with. */
  version: number;
  stopped: boolean;
  /** When the last change was acknowledged (ms since the epoch). */
  changedAt: number;
}

/** What the batch task does: marks each run's start and end in the allocation's directory. */
export const BATCH_SCRIPT =
  'echo start >> "$UNUM_ALLOC_DIR/runs"; sleep 2; echo done >> "$UNUM_ALLOC_DIR/runs"';
const MAX_SERVICES = 6;
const RETRY_FOR_MS = 120_000;

export function serviceSpec(j: SoakJob): unknown {
  return {
    job: j.id,
    groups: [
      {
        name: 'g',
        count: j.count,
        tasks: [
          {
            name: 't',
            command: 'sleep',
            args: ['86400'],
            env: { SOAK_GEN: String(j.gen) },
            resources: { cpu: 20, memory: 16 },
          },
        ],
      },
    ],
  };
}

function batchSpec(j: SoakJob): unknown {
  return {
    job: j.id,
    type: 'batch',
    groups: [
      {
        name: 'b',
        count: j.count,
        tasks: [{ name: 'b', command: 'sh', args: ['-c', BATCH_SCRIPT], resources: { cpu: 20, memory: 16 } }],
      },
    ],
  };
}

export class Workload {
  /** Acknowledged calls by kind. */
  readonly acknowledged: Record<string, number> = {};
  private readonly c: UnumCluster;
  private readonly rng: Random;
  private readonly say: (line: string) => void;
  private readonly onRefused: (what: string) => void;
  private readonly state = new Map<string, SoakJob>();
  private readonly client: UnumClient;
  private running = false;
  private loop: Promise<void> | undefined;
  private current: Promise<void> = Promise.resolve();
  private paused: { resume: () => void; resumed: Promise<void> } | undefined;
  private serial = 0;

  constructor(
    c: UnumCluster,
    rng: Random,
    checks: { violation(what: string): void },
    say: (line: string) => void,
  ) {
    this.c = c;
    this.rng = rng;
    this.say = say;
    this.onRefused = (what) => checks.violation(what);
    this.client = new UnumClient({ addr: c.addr, ca: c.ca, token: c.token, timeoutMs: 10_000 });
  }

  jobs(): SoakJob[] {
    return [...this.state.values()].map((j) => ({ ...j }));
  }

  start(): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        if (this.paused) await this.paused.resumed;
        if (!this.running) break;
        this.current = this.step();
        await this.current;
        await new Promise((r) => setTimeout(r, this.rng.between(500, 2_000)));
      }
    })();
  }

  /** Holds still: resolves once the call under way (if any) is acknowledged. */
  async pause(): Promise<void> {
    if (!this.paused) {
      let resume!: () => void;
      const resumed = new Promise<void>((r) => (resume = r));
      this.paused = { resume, resumed };
    }
    await this.current;
  }

  resume(): void {
    const p = this.paused;
    this.paused = undefined;
    p?.resume();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.resume();
    await this.loop;
    this.client.close();
  }

  private async step(): Promise<void> {
    const live = [...this.state.values()].filter((j) => j.type === 'service' && !j.stopped);
    const choices: string[] = [];
    if (live.length < MAX_SERVICES) choices.push('submit service');
    if (live.length >= 2) choices.push('scale', 'roll', 'stop', 'submit batch');
    const what = live.length < 2 ? 'submit service' : this.rng.pick(choices);
    const job = this.rng.pick(live.length > 0 ? live : [undefined]);
    switch (what) {
      case 'submit service': {
        const j: SoakJob = {
          id: `soak-svc-${++this.serial}`,
          type: 'service',
          count: this.rng.between(1, 3),
          gen: 0,
          version: 0,
          stopped: false,
          changedAt: 0,
        };
        return this.submit(what, j, serviceSpec(j));
      }
      case 'submit batch': {
        const j: SoakJob = {
          id: `soak-batch-${++this.serial}`,
          type: 'batch',
          count: 2,
          gen: 0,
          version: 0,
          stopped: false,
          changedAt: 0,
        };
        return this.submit(what, j, batchSpec(j));
      }
      case 'scale': {
        const counts = [1, 2, 3, 4].filter((n) => n !== job!.count);
        const j = { ...job!, count: this.rng.pick(counts) };
        return this.submit(what, j, serviceSpec(j));
      }
      case 'roll': {
        const j = { ...job!, gen: job!.gen + 1 };
        return this.submit(what, j, serviceSpec(j));
      }
      case 'stop': {
        const j = { ...job!, stopped: true };
        const r = await this.acknowledge(what, j.id, () => this.client.stopJob(j.id));
        if (r !== undefined) this.record(what, { ...j, changedAt: Date.now() });
        return;
      }
    }
  }

  private async submit(what: string, j: SoakJob, spec: unknown): Promise<void> {
    const r = await this.acknowledge(what, j.id, () => this.client.submitJob(spec));
    if (r !== undefined) this.record(what, { ...j, version: r.job.version, changedAt: Date.now() });
  }

  private record(what: string, j: SoakJob): void {
    this.state.set(j.id, j);
    this.acknowledged[what] = (this.acknowledged[what] ?? 0) + 1;
    this.say(
      `  ${what} ${j.id}${j.type === 'service' && !j.stopped ? ` count ${j.count} gen ${j.gen}` : ''}`,
    );
  }

  /** The call's answer once acknowledged; undefined if the cluster refused it (a violation). */
  private async acknowledge<T>(what: string, id: string, call: () => Promise<T>): Promise<T | undefined> {
    const deadline = Date.now() + RETRY_FOR_MS;
    for (;;) {
      try {
        return await call();
      } catch (err) {
        const retry =
          err instanceof UnavailableError || /timed out|ECONN|socket|fetch failed/i.test(String(err));
        if (!retry || Date.now() > deadline) {
          this.onRefused(`${what} ${id} not acknowledged: ${(err as Error).message}`);
          return undefined;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }
}
