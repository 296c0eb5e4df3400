/**
 * A lease kept alive for as long as its holder lives: what the lock and the election bind their
 * places to (./mutex.ts, ./election.ts). Renewed every third of its TTL; `lost` aborts when a renewal
 * finds the lease gone or none succeeded for a whole TTL (the keys bound to it are gone, or about
 * to be: whatever the holder guarded with them must stop). `close` revokes it.
 */
import { NotFoundError } from '../../core/errors.ts';
import type { Store } from '../types.ts';

export class Session {
  readonly leaseId: number;
  readonly ttlSeconds: number;
  private readonly store: Store;
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private lastRenewal = Date.now();

  private constructor(store: Store, leaseId: number, ttlSeconds: number) {
    this.store = store;
    this.leaseId = leaseId;
    this.ttlSeconds = ttlSeconds;
  }

  static async open(store: Store, ttlSeconds: number): Promise<Session> {
    const lease = await store.grantLease(ttlSeconds);
    const s = new Session(store, lease.id, lease.ttlSeconds);
    s.schedule();
    return s;
  }

  /** Aborted when the lease is lost (its reason says why). */
  get lost(): AbortSignal {
    return this.controller.signal;
  }

  private schedule(): void {
    if (this.lost.aborted) return;
    this.timer = setTimeout(() => void this.renew(), (this.ttlSeconds * 1000) / 3);
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    try {
      await this.store.keepAlive(this.leaseId);
      this.lastRenewal = Date.now();
    } catch (err) {
      if (err instanceof NotFoundError) return this.lose(`lease ${this.leaseId} expired`);
      if (Date.now() - this.lastRenewal >= this.ttlSeconds * 1000)
        return this.lose(
          `lease ${this.leaseId} not renewed for ${this.ttlSeconds} s: ${(err as Error).message}`,
        );
    }
    this.schedule();
  }

  private lose(why: string): void {
    clearTimeout(this.timer);
    this.controller.abort(new NotFoundError(why));
  }

  /** Ends the session: the lease is revoked and every key bound to it deleted. */
  async close(): Promise<void> {
    if (!this.lost.aborted) this.lose('session closed');
    await this.store.revokeLease(this.leaseId).catch(() => undefined);
  }
}
