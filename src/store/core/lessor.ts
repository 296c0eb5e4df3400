/**
 * Lease expiry, as etcd's lessor keeps it: which leases exist, when each expires, and a timer for
 * the earliest. Backend-neutral: the backend persists grants and revokes and deletes the keys; the
 * lessor only decides *when* a lease has expired and tells the backend through `onExpire`.
 *
 * Time comes from an injected `Clock`, so tests move a `FakeClock` instead of sleeping. Expiry times
 * are in memory only: a backend that reopens re-adds every lease with a full TTL from then, as etcd
 * does after a leader change (a restart must not expire every agent's lease at once).
 */
import type { Clock, ClockTimer } from '../../core/clock.ts';
import { systemClock } from '../../core/clock.ts';
import { NotFoundError } from '../../core/errors.ts';

/**
 * The system clock's timers with a monotonic `now()`: a step of the wall clock (NTP, an operator)
 * must neither expire every lease at once nor keep them all alive.
 */
export const monotonicClock: Clock = {
  ...systemClock,
  now: () => performance.timeOrigin + performance.now(),
};

interface LeaseState {
  ttl: number;
  /** `clock.now()` milliseconds. */
  expiresAt: number;
  /** Handed to `onExpire` and not yet removed: it can no longer take keys or be renewed. */
  expiring: boolean;
}

export interface LessorOptions {
  clock: Clock;
  /**
   * Called once when a lease's TTL has passed. The backend revokes it (deleting its keys) and then
   * calls `remove`; if it cannot, `expiryFailed` lets the lessor try again.
   */
  onExpire: (id: number) => void;
}

export class Lessor {
  private readonly clock: Clock;
  private readonly onExpire: (id: number) => void;
  private readonly leases = new Map<number, LeaseState>();
  private timer: ClockTimer | undefined;
  private timerAt = Infinity;
  private closed = false;

  constructor(options: LessorOptions) {
    this.clock = options.clock;
    this.onExpire = options.onExpire;
  }

  /** Leases tracked, expiring ones included. */
  get size(): number {
    return this.leases.size;
  }

  /** Starts a lease's full TTL from now (a committed grant, or a lease found on reopen). */
  add(id: number, ttlSeconds: number): void {
    if (this.closed) return;
    const expiresAt = this.clock.now() + ttlSeconds * 1000;
    this.leases.set(id, { ttl: ttlSeconds, expiresAt, expiring: false });
    if (expiresAt < this.timerAt) this.arm(expiresAt);
  }

  /** Forgets a lease (its revoke committed). A timer armed for it fires early at worst, and re-arms. */
  remove(id: number): void {
    this.leases.delete(id);
  }

  /** Known (even if its expiry revoke is under way): a revoke of it may still run. */
  has(id: number): boolean {
    return this.leases.has(id);
  }

  /** Known, not expiring and within its TTL: it may take keys and be renewed. */
  alive(id: number): boolean {
    const lease = this.leases.get(id);
    return lease !== undefined && !lease.expiring && lease.expiresAt > this.clock.now();
  }

  /** Renews a lease to its full TTL from now. NotFoundError if it expired or never existed. */
  keepAlive(id: number): { id: number; ttlSeconds: number } {
    const lease = this.live(id);
    // Only ever later: the armed timer, if for this lease, fires early and re-arms.
    lease.expiresAt = this.clock.now() + lease.ttl * 1000;
    return { id, ttlSeconds: lease.ttl };
  }

  /** The TTL and the seconds left (millisecond precision). NotFoundError if expired or unknown. */
  timeToLive(id: number): { ttlSeconds: number; remainingSeconds: number } {
    const lease = this.live(id);
    return { ttlSeconds: lease.ttl, remainingSeconds: Math.round(lease.expiresAt - this.clock.now()) / 1000 };
  }

  /** The backend could not revoke an expired lease: it expires again at the next check. */
  expiryFailed(id: number): void {
    const lease = this.leases.get(id);
    if (lease === undefined) return;
    lease.expiring = false;
    this.rearm();
  }

  /** Stops the timer; nothing expires after this. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private live(id: number): LeaseState {
    const lease = this.leases.get(id);
    if (lease === undefined || lease.expiring || lease.expiresAt <= this.clock.now()) {
      throw new NotFoundError(`lease ${id} not found`, { details: { lease: id } });
    }
    return lease;
  }

  private arm(at: number): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = this.clock.setTimeout(() => this.expire(), Math.max(0, at - this.clock.now()));
  }

  /** One timer for the earliest expiry: renewals only move expiries later, so it fires early at worst. */
  private rearm(): void {
    if (this.closed) return;
    let earliest = Infinity;
    for (const lease of this.leases.values()) {
      if (!lease.expiring && lease.expiresAt < earliest) earliest = lease.expiresAt;
    }
    if (earliest === Infinity) {
      if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
      this.timer = undefined;
      this.timerAt = Infinity;
      return;
    }
    if (this.timer !== undefined && this.timerAt <= earliest) return;
    this.arm(earliest);
  }

  private expire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.closed) return;
    const now = this.clock.now();
    const due: number[] = [];
    for (const [id, lease] of this.leases) {
      if (lease.expiring || lease.expiresAt > now) continue;
      lease.expiring = true;
      due.push(id);
    }
    for (const id of due) this.onExpire(id);
    this.rearm();
  }
}
