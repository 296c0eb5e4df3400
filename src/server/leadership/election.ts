/**
 * The servers' election, on the Store's election recipe (src/store/recipes/election.ts): each
 * candidate waits in line under `prefix` on a lease of its own, watching only the candidate before
 * it; the head of the line leads until its lease ends. `campaign` blocks until this server leads (or
 * is aborted), `resign` gives the office up (the next in line takes it at once), `leader` and
 * `observe` report who leads. The leader's place — its key and create revision — is the term's
 * fence (./term.ts).
 */
import type { Logger } from '../../core/log.ts';
import { Election as ElectionRecipe } from '../../store/recipes/election.ts';
import type { Store } from '../../store/types.ts';

export interface Elected {
  leaseId: number;
  /** This server's key in the line. */
  key: string;
  /** Create revision of that key: the term's fencing token. */
  revision: number;
}

export interface ElectionOptions {
  store: Store;
  /** Where candidates wait in line (ends with `/`). */
  prefix: string;
  /** This candidate's value in its key (the server id). */
  candidate: string;
  ttlSeconds: number;
  log: Logger;
}

export class Election {
  private readonly o: ElectionOptions;
  private readonly recipe: ElectionRecipe;

  constructor(o: ElectionOptions) {
    this.o = o;
    this.recipe = new ElectionRecipe(o.store, o.prefix);
  }

  get ttlSeconds(): number {
    return this.o.ttlSeconds;
  }

  /**
   * Waits until this candidate leads. Undefined when `signal` aborts first. Store errors are thrown
   * (the caller retries).
   */
  async campaign(signal: AbortSignal): Promise<Elected | undefined> {
    const { store, prefix, candidate } = this.o;
    // This same server restarted: its old place would otherwise hold the line until its lease ends.
    for (const kv of (await store.range({ prefix })).kvs)
      if (kv.value === candidate)
        await store.txn({
          compare: [{ key: kv.key, target: 'create', op: '=', value: kv.createRevision }],
          success: [{ type: 'delete', key: kv.key }],
        });
    const lease = await store.grantLease(this.o.ttlSeconds);
    // The place in line lives as long as its lease: kept alive while waiting (the leader keeps it
    // from then on). A renewal that fails leaves the lease to end, and the wait with it.
    const keeping = setInterval(
      () => void store.keepAlive(lease.id).catch(() => undefined),
      (this.o.ttlSeconds * 1000) / 3,
    );
    keeping.unref();
    try {
      const place = await this.recipe.campaign(lease.id, candidate, signal);
      return { leaseId: lease.id, key: place.key, revision: place.revision };
    } catch (err) {
      await store.revokeLease(lease.id).catch(() => undefined);
      if (signal.aborted) return undefined;
      throw err;
    } finally {
      clearInterval(keeping);
    }
  }

  /** Keeps the office: NotFoundError (or another Store error) when the lease is lost. */
  async renew(elected: Elected): Promise<void> {
    await this.o.store.keepAlive(elected.leaseId);
  }

  /** Gives the office up: the place goes with the lease, and the next candidate leads at once. */
  async resign(elected: Elected): Promise<void> {
    await this.o.store.revokeLease(elected.leaseId).catch(() => undefined);
  }

  /** Who leads now (the leader's server id), or undefined. */
  async leader(): Promise<string | undefined> {
    return (await this.recipe.leader())?.value;
  }

  /** Calls `listener` with the leader's id at every change (undefined while nobody leads). */
  observe(listener: (leader: string | undefined) => void): () => void {
    return this.recipe.observe(
      (l) => listener(l?.value),
      (err) => this.o.log.warn({ err }, 'leader watch ended'),
    );
  }
}
