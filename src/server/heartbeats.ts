/**
 * Heartbeats, kept in the one place every server can answer from: the Store. A node's heartbeat key
 * lives on a lease of its own; a heartbeat renews the lease; when the lease runs out the key is
 * deleted and every server's cache sees the node go silent. When a node last heartbeat is read back
 * from its lease's remaining time, so any server (not only the one the agent talks to) answers it.
 * A later release can move renewals off the Store's write path without changing this interface.
 */
import type { Clock } from '../core/clock.ts';
import { NotFoundError } from '../core/errors.ts';
import type { LeaseGrant, Store } from '../store/types.ts';
import { keys, prefixes } from './keys.ts';

export const HEARTBEAT_TTL_SECONDS = 10;

export class Heartbeats {
  readonly ttlSeconds: number;
  private readonly store: Store;
  private readonly clock: Clock;

  constructor(store: Store, clock: Clock, ttlSeconds = HEARTBEAT_TTL_SECONDS) {
    this.store = store;
    this.clock = clock;
    this.ttlSeconds = ttlSeconds;
  }

  /** A lease for a registering node's heartbeat key. */
  grant(): Promise<LeaseGrant> {
    return this.store.grantLease(this.ttlSeconds);
  }

  /** A heartbeat. NotFoundError when the node must register again (unknown, or its lease expired). */
  async renew(nodeId: string): Promise<void> {
    const kv = await this.store.get(keys.heartbeat(nodeId));
    if (!kv || kv.lease === 0)
      throw new NotFoundError(`node ${nodeId} is not registered or missed its heartbeats; register again`);
    try {
      await this.store.keepAlive(kv.lease);
    } catch (err) {
      if (err instanceof NotFoundError)
        throw new NotFoundError(`node ${nodeId} missed its heartbeats; register again`, { cause: err });
      throw err;
    }
  }

  /** When each heartbeating node last renewed its lease (ms since the epoch); silent nodes are absent. */
  async lastSeen(): Promise<Map<string, number>> {
    const { kvs } = await this.store.range({ prefix: prefixes.heartbeats });
    const now = this.clock.now();
    const seen = new Map<string, number>();
    await Promise.all(
      kvs.map(async (kv) => {
        if (kv.lease === 0) return;
        try {
          const l = await this.store.leaseTimeToLive(kv.lease);
          seen.set(
            kv.key.slice(prefixes.heartbeats.length),
            Math.round(now - (l.ttlSeconds - l.remainingSeconds) * 1000),
          );
        } catch (err) {
          // Expired between the range and this read: the node is silent.
          if (!(err instanceof NotFoundError)) throw err;
        }
      }),
    );
    return seen;
  }
}
