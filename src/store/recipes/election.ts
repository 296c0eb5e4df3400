/**
 * Leader election over the Store (./queue.ts): candidates wait in line under `prefix`, each on a
 * lease of its own, and the head of the line leads. A candidate watches only the one before it, so a
 * leader's end wakes one successor, which takes office at once. The leader's place (its key and
 * create revision) is its term's fencing token; `fence` is the compare every write of the term
 * carries, so that a deposed leader can never commit.
 *
 * The value in a candidate's key says who it is (a server id); `leader()` reads the head's.
 */
import type { Store } from '../types.ts';
import { line, release, takeHead, type Place } from './queue.ts';

export type Leadership = Place;

export interface LeaderInfo {
  value: string;
  key: string;
  /** The leader's fencing token. */
  revision: number;
}

export class Election {
  private readonly store: Store;
  readonly prefix: string;

  constructor(store: Store, prefix: string) {
    this.store = store;
    this.prefix = prefix;
  }

  /**
   * Waits until the candidate of `leaseId` leads. Rejects with the signal's reason on abort (the
   * place is given up) and with NotFoundError when the lease ended meanwhile.
   */
  async campaign(leaseId: number, value: string, signal: AbortSignal): Promise<Leadership> {
    return takeHead(this.store, this.prefix, leaseId, value, signal);
  }

  /** Gives the office (or the place in line) up: the next candidate leads at once. */
  async resign(l: Leadership): Promise<void> {
    await release(this.store, l);
  }

  /** Who leads now, or undefined while nobody does. */
  async leader(): Promise<LeaderInfo | undefined> {
    const head = (await line(this.store, this.prefix))[0];
    return head === undefined
      ? undefined
      : { value: head.value, key: head.key, revision: head.createRevision };
  }

  /**
   * Calls `listener` with the leader whenever it may have changed (and once at the start; undefined
   * while nobody leads). Returns the function that stops observing.
   */
  observe(listener: (leader: LeaderInfo | undefined) => void, onError?: (err: Error) => void): () => void {
    let last: string | undefined = '';
    let stopped = false;
    let reading = Promise.resolve();
    const look = () => {
      reading = reading.then(async () => {
        if (stopped) return;
        const now = await this.leader().catch((err: Error) => {
          onError?.(err);
          return undefined;
        });
        const id = now === undefined ? undefined : `${now.key}@${now.revision}`;
        if (!stopped && id !== last) {
          last = id;
          listener(now);
        }
      });
    };
    const w = this.store.watch({ prefix: this.prefix }, { onEvents: look, onError: (err) => onError?.(err) });
    look();
    return () => {
      stopped = true;
      w.cancel();
    };
  }
}
