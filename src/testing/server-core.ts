/**
 * A server core for unit tests: a memory Store, the watch-fed cache over it, a fake clock and
 * helpers to elect a term and seed objects — the broker, applier, controllers and transitions run
 * against this instead of a whole HTTP server.
 */
import { FakeClock } from '../core/clock.ts';
import { silentLogger } from '../core/log.ts';
import type { Allocation, Evaluation, Job, Node } from '../core/types.ts';
import { StateCache } from '../server/cache.ts';
import { putOp } from '../server/events.ts';
import { keys } from '../server/keys.ts';
import { Election } from '../server/leadership/election.ts';
import { Term } from '../server/leadership/term.ts';
import { createStore } from '../store/index.ts';
import type { Store, TxnOp } from '../store/types.ts';

export interface ServerCore {
  store: Store;
  cache: StateCache;
  clock: FakeClock;
  log: ReturnType<typeof silentLogger>;
  /** Elects `candidate` and returns its term (and the lease that holds the office). */
  elect(candidate?: string): Promise<{ term: Term; leaseId: number }>;
  /** Writes the objects in one transaction and waits until the cache has them. */
  seed(objects: { nodes?: Node[]; jobs?: Job[]; allocs?: Allocation[]; evals?: Evaluation[] }): Promise<void>;
  /** Gives `node` a heartbeat key on a lease of its own; returns the lease id. */
  heartbeat(node: Node): Promise<number>;
  /** Waits until the cache has applied every write made so far. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

export async function startServerCore(): Promise<ServerCore> {
  const store = await createStore('memory:');
  const log = silentLogger();
  const cache = new StateCache(store, log);
  await cache.start();
  const clock = new FakeClock();
  const settle = async () => {
    await cache.waitForIndex((await store.status()).revision);
  };
  return {
    store,
    cache,
    clock,
    log,
    async elect(candidate = 's1') {
      const election = new Election({ store, key: keys.leader, candidate, ttlSeconds: 60, log });
      const elected = await election.campaign(new AbortController().signal);
      if (!elected) throw new Error(`${candidate} was not elected`);
      await settle();
      return { term: new Term(store, keys.leader, candidate, elected.revision), leaseId: elected.leaseId };
    },
    async seed(o) {
      const ops: TxnOp[] = [
        ...(o.nodes ?? []).map((n) => putOp(keys.node(n.id), n)),
        ...(o.jobs ?? []).map((j) => putOp(keys.job(j.namespace, j.id), j)),
        ...(o.allocs ?? []).map((a) => putOp(keys.alloc(a.id), a)),
        ...(o.evals ?? []).map((e) => putOp(keys.evaluation(e.id), e)),
      ];
      await store.txn({ success: ops });
      await settle();
    },
    async heartbeat(node) {
      const lease = await store.grantLease(60);
      await store.put(keys.heartbeat(node.id), '0', { lease: lease.id });
      await settle();
      return lease.id;
    },
    settle,
    async close() {
      cache.stop();
      await store.close();
    },
  };
}
