/**
 * Controllers: the leader's level-based reconcilers (controller-runtime). Each names the keys that
 * may need work — all of them when a term starts, and those a cache change touches — and
 * `reconcile(key, term)` reads the current state, converges it, and says when to look again. A
 * thrown error retries the key with backoff; NotLeaderError ends the controller with its term.
 *
 *   cache change ─► keysFor ─► WorkQueue (dedup, delay, backoff) ─► reconcile(key, term) ─► term.txn
 */
import type { Clock } from '../../core/clock.ts';
import { NotLeaderError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { CacheChange, CacheListener } from '../cache.ts';
import type { Term } from '../leadership/term.ts';
import { WorkQueue, type BackoffOptions } from './queue.ts';

export interface ReconcileResult {
  /** Look at the key again after this long (even if nothing changes). */
  requeueAfterMs?: number;
}

export interface Controller {
  readonly name: string;
  /** The keys to look at when a term starts: the level, not the edges a new leader missed. */
  initialKeys(): Iterable<string>;
  /** The keys a change of the cache makes worth looking at. */
  keysFor(change: CacheChange): Iterable<string>;
  /** Converges `key`; throws to retry with backoff. Writes go through `term`. */
  reconcile(key: string, term: Term): Promise<ReconcileResult | void>;
}

export interface ChangeSource {
  subscribe(listener: CacheListener): () => void;
}

export interface ControllerManagerOptions {
  controllers: readonly Controller[];
  changes: ChangeSource;
  clock: Clock;
  log: Logger;
  backoff?: BackoffOptions;
}

/** Runs every controller for one term, each on its own queue with one worker. */
export class ControllerManager {
  private readonly o: ControllerManagerOptions;

  constructor(o: ControllerManagerOptions) {
    this.o = o;
  }

  get controllers(): readonly Controller[] {
    return this.o.controllers;
  }

  /** Runs until the term ends. */
  async run(term: Term): Promise<void> {
    const queues = this.o.controllers.map((c) => ({ c, q: new WorkQueue(this.o.clock, this.o.backoff) }));
    const unsubscribe = this.o.changes.subscribe((changes) => {
      for (const { c, q } of queues)
        for (const change of changes) for (const key of c.keysFor(change)) q.add(key);
    });
    const stop = () => {
      for (const { q } of queues) q.shutDown();
    };
    term.signal.addEventListener('abort', stop, { once: true });
    try {
      for (const { c, q } of queues) for (const key of c.initialKeys()) q.add(key);
      await Promise.all(queues.map(({ c, q }) => this.work(c, q, term)));
    } finally {
      unsubscribe();
      term.signal.removeEventListener('abort', stop);
      stop();
    }
  }

  private async work(c: Controller, q: WorkQueue, term: Term): Promise<void> {
    for (;;) {
      const key = await q.get(term.signal);
      if (key === undefined) return;
      try {
        const result = await c.reconcile(key, term);
        q.forget(key);
        if (result?.requeueAfterMs !== undefined) q.addAfter(key, result.requeueAfterMs);
      } catch (err) {
        if (err instanceof NotLeaderError || !term.active) return;
        this.o.log.warn({ err, controller: c.name, key }, 'reconcile failed; retrying with backoff');
        q.addRateLimited(key);
      } finally {
        q.done(key);
      }
    }
  }
}
