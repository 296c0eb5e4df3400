/**
 * A lock over the Store (./queue.ts): `lock` takes a place in the line under `prefix` with the
 * holder's lease and waits for the head; waiters are served in the order they came, each watching
 * only its predecessor. The lock is held while the place exists — until `unlock`, or until the
 * lease ends (the holder died, or was cut off past its TTL). Every acquisition returns its fencing
 * token (the place's create revision) and the compare that guards a write with it: the Store
 * refuses a fenced write once the lock is gone, however late it arrives.
 */
import type { Store } from '../types.ts';
import { enqueue, line, release, takeHead, type Place } from './queue.ts';

export type Lock = Place;

export class Mutex {
  private readonly store: Store;
  private readonly prefix: string;
  private readonly leaseId: number;

  /** `prefix` names the lock (ends with `/`); `leaseId` is the holder's (a Session's, ./session.ts). */
  constructor(store: Store, prefix: string, leaseId: number) {
    this.store = store;
    this.prefix = prefix;
    this.leaseId = leaseId;
  }

  /**
   * Waits for the lock. Aborting `signal` gives the place up and rejects with its reason;
   * NotFoundError when the lease ended meanwhile.
   */
  async lock(signal: AbortSignal = new AbortController().signal, value = ''): Promise<Lock> {
    return takeHead(this.store, this.prefix, this.leaseId, value, signal);
  }

  /** The lock if it is free now (or already this lease's); undefined, and no place taken, if not. */
  async tryLock(value = ''): Promise<Lock | undefined> {
    const place = await enqueue(this.store, this.prefix, this.leaseId, value);
    const head = (await line(this.store, this.prefix))[0];
    if (head?.key === place.key) return place;
    await this.unlock(place);
    return undefined;
  }

  /** Gives the lock (or the place in line) up. A place already gone is no error. */
  async unlock(lock: Lock): Promise<void> {
    await release(this.store, lock);
  }

  /** Who holds the lock now: its place and value, or undefined when free. */
  async holder(): Promise<{ key: string; revision: number; value: string } | undefined> {
    const head = (await line(this.store, this.prefix))[0];
    return head === undefined
      ? undefined
      : { key: head.key, revision: head.createRevision, value: head.value };
  }
}
