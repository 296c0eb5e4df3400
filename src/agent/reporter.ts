/**
 * Sends allocation status to the servers: promptly (the first change goes out at once) but coalesced
 * (at most one request in flight; changes that arrive meanwhile wait for it and go out together, the
 * latest state per allocation winning). A failed request is retried with backoff; its updates go back
 * into the queue unless a newer state of the same allocation is already there, so nothing is lost
 * and nothing goes backwards.
 */
import { NotFoundError, UnavailableError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { AllocStatusUpdate } from '../api/types.ts';

export interface StatusReporterOptions {
  send: (updates: AllocStatusUpdate[]) => Promise<unknown>;
  logger: Logger;
  /** Called when the server does not know the node (or an allocation): the agent re-registers. */
  onNotFound?: (err: NotFoundError) => void;
  /** Whether an allocation is still worth reporting (the server still lists it). Default: always. */
  isWanted?: (allocId: string) => boolean;
  /** Retry backoff: first delay and cap (ms). */
  retryMinMs?: number;
  retryMaxMs?: number;
}

export class StatusReporter {
  private readonly opts: StatusReporterOptions;
  private readonly pending = new Map<string, AllocStatusUpdate>();
  private inFlight: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(opts: StatusReporterOptions) {
    this.opts = opts;
  }

  /** Queues the latest status of an allocation; it is sent as soon as no other request is in flight. */
  enqueue(update: AllocStatusUpdate): void {
    if (this.closed) return;
    this.pending.set(update.allocId, update);
    this.kick();
  }

  /** Number of allocations whose latest status is not yet acknowledged by a server. */
  get backlog(): number {
    return this.pending.size;
  }

  /** Resolves when everything queued has been sent (or `timeoutMs` passes). */
  async flush(timeoutMs: number): Promise<void> {
    if (this.pending.size === 0 && this.inFlight === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Stops sending; what is still queued is dropped. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.pending.clear();
    this.notifyIdle();
  }

  private kick(): void {
    if (this.closed || this.inFlight !== undefined || this.retryTimer !== undefined) return;
    if (this.pending.size === 0) {
      this.notifyIdle();
      return;
    }
    const batch = [...this.pending.values()];
    this.pending.clear();
    this.inFlight = this.sendBatch(batch).finally(() => {
      this.inFlight = undefined;
      this.kick();
    });
  }

  private async sendBatch(batch: AllocStatusUpdate[]): Promise<void> {
    try {
      await this.opts.send(batch);
      this.failures = 0;
    } catch (err) {
      if (this.closed) return;
      this.failures += 1;
      const isWanted = this.opts.isWanted ?? (() => true);
      for (const u of batch)
        if (!this.pending.has(u.allocId) && isWanted(u.allocId)) this.pending.set(u.allocId, u);
      const level = err instanceof UnavailableError ? 'warn' : 'error';
      this.opts.logger[level](
        { err, updates: batch.length },
        'could not report allocation status; will retry',
      );
      if (err instanceof NotFoundError) this.opts.onNotFound?.(err);
      const min = this.opts.retryMinMs ?? 200;
      const max = this.opts.retryMaxMs ?? 5_000;
      const delay = Math.min(min * 2 ** (this.failures - 1), max);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.kick();
      }, delay);
    }
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
