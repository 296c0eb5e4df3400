/**
 * The work queue controllers run on (controller-runtime's workqueue): a key is queued at most once
 * however often it is added; a key added again while it is being reconciled runs once more after;
 * a failed key comes back after a per-key exponential backoff; a key can be added after a delay.
 * So a burst of changes to one node is one reconcile, never a pile of stale ones.
 */
import type { Clock, ClockTimer } from '../../core/clock.ts';

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 50, maxMs: 30_000 };

export class WorkQueue {
  private readonly queue: string[] = [];
  /** Queued and not yet handed out. */
  private readonly dirty = new Set<string>();
  /** Handed out and not yet done. */
  private readonly processing = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Map<string, { due: number; timer: ClockTimer }>();
  private readonly waiters: (() => void)[] = [];
  private readonly clock: Clock;
  private readonly backoff: BackoffOptions;
  private closed = false;

  constructor(clock: Clock, backoff: BackoffOptions = DEFAULT_BACKOFF) {
    this.clock = clock;
    this.backoff = backoff;
  }

  /** Keys queued (not counting those being processed or waiting for a delay). */
  get length(): number {
    return this.queue.length;
  }

  add(key: string): void {
    if (this.closed || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    this.queue.push(key);
    // Woken, not handed the key: the worker takes it a microtask later, so that adds in the same
    // turn (one cache batch) still fold into this one.
    this.waiters.shift()?.();
  }

  /** Adds `key` after `ms`; an earlier pending delay for the same key wins. */
  addAfter(key: string, ms: number): void {
    if (this.closed) return;
    if (ms <= 0) return this.add(key);
    const due = this.clock.now() + ms;
    const existing = this.delayed.get(key);
    if (existing && existing.due <= due) return;
    if (existing) this.clock.clearTimeout(existing.timer);
    const timer = this.clock.setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { due, timer });
  }

  /** Adds `key` after its backoff, which doubles with each failure until `forget`. */
  addRateLimited(key: string): void {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    this.addAfter(key, Math.min(this.backoff.baseMs * 2 ** n, this.backoff.maxMs));
  }

  /** The key succeeded: its backoff starts over. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** The next key to reconcile; undefined once the queue is shut down or `signal` aborts. */
  async get(signal: AbortSignal): Promise<string | undefined> {
    for (;;) {
      if (this.closed || signal.aborted) return undefined;
      const key = this.queue.shift();
      if (key !== undefined) {
        this.dirty.delete(key);
        this.processing.add(key);
        return key;
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = () => {
          const i = this.waiters.indexOf(wake);
          if (i >= 0) this.waiters.splice(i, 1);
          resolve();
        };
        signal.addEventListener('abort', onAbort, { once: true });
        this.waiters.push(wake);
      });
    }
  }

  /** The reconcile of `key` finished; if it was added meanwhile, it is queued again. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) {
      this.dirty.delete(key);
      this.add(key);
    }
  }

  shutDown(): void {
    this.closed = true;
    for (const { timer } of this.delayed.values()) this.clock.clearTimeout(timer);
    this.delayed.clear();
    for (const w of this.waiters.splice(0)) w();
  }
}
