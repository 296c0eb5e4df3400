/**
 * Leader election over the Store, in the style of etcd's `concurrency.Election`: a candidate puts
 * the leader key on a lease of its own only if the key is absent; whoever created it leads until
 * its lease ends. `campaign` blocks until this server wins (or is aborted), `resign` gives the
 * office up, `observe` reports who leads. The key's create revision is the term's fencing token.
 */
import type { Logger } from '../../core/log.ts';
import type { Store } from '../../store/types.ts';

export interface Elected {
  leaseId: number;
  /** Create revision of the leader key: the term's fencing token. */
  revision: number;
}

export interface ElectionOptions {
  store: Store;
  key: string;
  /** This candidate's value in the key. */
  candidate: string;
  ttlSeconds: number;
  log: Logger;
}

export class Election {
  private readonly o: ElectionOptions;

  constructor(o: ElectionOptions) {
    this.o = o;
  }

  get ttlSeconds(): number {
    return this.o.ttlSeconds;
  }

  /**
   * Waits until this candidate holds the key. Undefined when `signal` aborts first. Store errors
   * are thrown (the caller retries).
   */
  async campaign(signal: AbortSignal): Promise<Elected | undefined> {
    const { store, key, candidate } = this.o;
    while (!signal.aborted) {
      // This same server restarted: its old key would otherwise block it until the lease runs out.
      await store.txn({
        compare: [{ key, target: 'value', op: '=', value: candidate }],
        success: [{ type: 'delete', key }],
      });
      const lease = await store.grantLease(this.o.ttlSeconds);
      const res = await store.txn({
        compare: [{ key, target: 'create', op: '=', value: 0 }],
        success: [{ type: 'put', key, value: candidate, lease: lease.id }],
      });
      if (res.succeeded) return { leaseId: lease.id, revision: res.revision };
      await store.revokeLease(lease.id).catch(() => undefined);
      await this.waitForVacancy(signal);
    }
    return undefined;
  }

  /** Keeps the office: NotFoundError (or another Store error) when the lease is lost. */
  async renew(elected: Elected): Promise<void> {
    await this.o.store.keepAlive(elected.leaseId);
  }

  /** Gives the office up: the key goes with the lease, and the next candidate is elected at once. */
  async resign(elected: Elected): Promise<void> {
    await this.o.store.revokeLease(elected.leaseId).catch(() => undefined);
  }

  /** Who leads now (the key's value), or undefined. */
  async leader(): Promise<string | undefined> {
    return (await this.o.store.get(this.o.key))?.value;
  }

  /** Calls `listener` with the leader's value at every change (undefined while the office is vacant). */
  observe(listener: (leader: string | undefined) => void): () => void {
    const w = this.o.store.watch(
      { key: this.o.key },
      {
        onEvents: (events) => {
          const last = events[events.length - 1];
          if (last) listener(last.type === 'put' ? last.kv.value : undefined);
        },
        onError: (err) => this.o.log.warn({ err }, 'leader watch ended'),
      },
    );
    return () => w.cancel();
  }

  private waitForVacancy(signal: AbortSignal): Promise<void> {
    // An abort that came while the campaign was mid-call would never fire again.
    if (signal.aborted) return Promise.resolve();
    const { store, key } = this.o;
    return new Promise((resolve) => {
      const w = store.watch(
        { key },
        {
          onEvents: (events) => {
            if (events.some((e) => e.type === 'delete')) finish();
          },
          onError: () => finish(),
        },
      );
      const finish = () => {
        w.cancel();
        signal.removeEventListener('abort', finish);
        resolve();
      };
      signal.addEventListener('abort', finish);
      // The leader may have gone between our failed create and this watch.
      store.get(key).then(
        (kv) => {
          if (!kv) finish();
        },
        () => finish(),
      );
    });
  }
}
