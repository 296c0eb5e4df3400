/**
 * The evaluation broker (leader only): a priority queue of evaluations waiting for a scheduler
 * worker. At most one evaluation per job is in flight, so two workers never race on one job;
 * evaluations with `waitUntil` sleep until then; blocked ones wait for capacity to change.
 */
import { systemClock, type Clock, type ClockTimer } from '../core/clock.ts';
import type { Evaluation } from '../core/types.ts';
import { jobKey } from './cache.ts';

export class EvalBroker {
  private ready: Evaluation[] = [];
  private inflight = new Set<string>();
  /** Evaluations of a job whose earlier evaluation is in flight. */
  private waitingOnJob = new Map<string, Evaluation[]>();
  private delayed = new Map<string, { evaluation: Evaluation; timer: ClockTimer }>();
  private blocked = new Map<string, Evaluation>();
  private known = new Set<string>();
  private takers: ((e: Evaluation | undefined) => void)[] = [];
  private enabled = false;
  private readonly clock: Clock;

  constructor(clock: Clock = systemClock) {
    this.clock = clock;
  }

  /** Turned on when this server becomes leader; off drops everything (the next leader reloads from the Store). */
  setEnabled(on: boolean): void {
    this.enabled = on;
    if (!on) {
      for (const d of this.delayed.values()) this.clock.clearTimeout(d.timer);
      this.delayed.clear();
      this.ready = [];
      this.inflight.clear();
      this.waitingOnJob.clear();
      this.blocked.clear();
      this.known.clear();
      for (const t of this.takers.splice(0)) t(undefined);
    }
  }

  get isEnabled(): boolean {
    return this.enabled;
  }

  /** Adds an evaluation once; later calls with the same id are ignored until it is acked. */
  enqueue(evaluation: Evaluation): void {
    if (!this.enabled || this.known.has(evaluation.id)) return;
    this.known.add(evaluation.id);
    const wait = (evaluation.waitUntil ?? 0) - this.clock.now();
    if (wait > 0) {
      const timer = this.clock.setTimeout(() => {
        this.delayed.delete(evaluation.id);
        this.makeReady(evaluation);
      }, wait);
      this.delayed.set(evaluation.id, { evaluation, timer });
      return;
    }
    this.makeReady(evaluation);
  }

  /**
   * Parks an evaluation that could not place everything until `unblock()` (capacity changed). One
   * blocked evaluation per job: a newer one supersedes the older (the plan applier cancels it).
   */
  block(evaluation: Evaluation): void {
    if (!this.enabled) return;
    this.blocked.set(jobKey(evaluation.namespace, evaluation.jobId), evaluation);
  }

  /** The job's parked evaluation, if any. */
  blockedFor(namespace: string, jobId: string): Evaluation | undefined {
    return this.blocked.get(jobKey(namespace, jobId));
  }

  /** Capacity changed: every blocked evaluation gets another try. */
  unblock(): void {
    const all = [...this.blocked.values()];
    this.blocked.clear();
    for (const e of all) this.makeReady(e);
  }

  private makeReady(evaluation: Evaluation): void {
    const k = jobKey(evaluation.namespace, evaluation.jobId);
    if (this.inflight.has(k)) {
      const list = this.waitingOnJob.get(k) ?? [];
      list.push(evaluation);
      this.waitingOnJob.set(k, list);
      return;
    }
    const taker = this.takers.shift();
    if (taker) {
      this.inflight.add(k);
      taker(evaluation);
      return;
    }
    this.ready.push(evaluation);
    // Highest priority first, then oldest.
    this.ready.sort((a, b) => b.priority - a.priority || a.createdAt - b.createdAt);
  }

  /** The next evaluation to schedule; undefined when the broker is disabled or `signal` aborts. */
  dequeue(signal?: AbortSignal): Promise<Evaluation | undefined> {
    if (!this.enabled || signal?.aborted) return Promise.resolve(undefined);
    for (let i = 0; i < this.ready.length; i++) {
      const e = this.ready[i]!;
      const k = jobKey(e.namespace, e.jobId);
      if (this.inflight.has(k)) continue;
      this.ready.splice(i, 1);
      this.inflight.add(k);
      return Promise.resolve(e);
    }
    return new Promise((resolve) => {
      const onAbort = () => {
        const i = this.takers.indexOf(take);
        if (i >= 0) this.takers.splice(i, 1);
        resolve(undefined);
      };
      const take = (e: Evaluation | undefined) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(e);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.takers.push(take);
    });
  }

  /** The worker is done with `evaluation`: the job's next waiting evaluation becomes ready. */
  ack(evaluation: Evaluation): void {
    const k = jobKey(evaluation.namespace, evaluation.jobId);
    this.inflight.delete(k);
    this.known.delete(evaluation.id);
    const next = this.waitingOnJob.get(k);
    if (next?.length) {
      const e = next.shift()!;
      if (next.length === 0) this.waitingOnJob.delete(k);
      this.makeReady(e);
    }
  }

  stats(): { ready: number; inflight: number; delayed: number; blocked: number } {
    let waiting = 0;
    for (const l of this.waitingOnJob.values()) waiting += l.length;
    return {
      ready: this.ready.length + waiting,
      inflight: this.inflight.size,
      delayed: this.delayed.size,
      blocked: this.blocked.size,
    };
  }
}
