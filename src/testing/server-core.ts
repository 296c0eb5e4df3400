/**
 * A server core for unit tests: a memory Store, the watch-fed cache over it, a fake clock, the
 * failure detector on that clock (as if this server led) and helpers to elect a term and seed
 * objects — the broker, applier, controllers and transitions run against this instead of a whole
 * HTTP server.
 */
import { FakeClock } from '../core/clock.ts';
import { silentLogger } from '../core/log.ts';
import type { Allocation, Evaluation, Job, Node } from '../core/types.ts';
import { StateCache } from '../server/cache.ts';
import { Heartbeats, type HeartbeatSettings } from '../server/heartbeats.ts';
import { putOp } from '../server/events.ts';
import { keys } from '../server/keys.ts';
import { Election } from '../server/leadership/election.ts';
import { Term } from '../server/leadership/term.ts';
import { createStore } from '../store/index.ts';
import { UnavailableError } from '../core/errors.ts';
import type { Store, TxnOp } from '../store/types.ts';

export interface ServerCore {
  store: Store;
  cache: StateCache;
  clock: FakeClock;
  log: ReturnType<typeof silentLogger>;
  /** The failure detector, on `clock`, as the leader's (it never forwards). */
  heartbeats: Heartbeats;
  /** Elects `candidate` and returns its term (and the lease that holds the office). */
  elect(candidate?: string): Promise<{ term: Term; leaseId: number }>;
  /** Writes the objects in one transaction and waits until the cache has them. */
  seed(objects: { nodes?: Node[]; jobs?: Job[]; allocs?: Allocation[]; evals?: Evaluation[] }): Promise<void>;
  /** Writes `node`'s liveness key, as its registration does. */
  heartbeat(node: Node): Promise<void>;
  /** Deletes `node`'s liveness key, as the leader does when it marks the node down. */
  silence(node: Node): Promise<void>;
  /** Waits until the cache has applied every write made so far. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

export async function startServerCore(
  o: { heartbeat?: Partial<HeartbeatSettings>; store?: Store } = {},
): Promise<ServerCore> {
  const store = o.store ?? (await createStore('memory:'));
  const log = silentLogger();
  const cache = new StateCache(store, log);
  await cache.start();
  const clock = new FakeClock();
  const heartbeats = new Heartbeats({
    clock,
    cache,
    log,
    relay: {
      isLeader: () => true,
      forwardHeartbeat: () => Promise.reject(new UnavailableError('a server core does not forward')),
    },
    ...(o.heartbeat ? { settings: o.heartbeat } : {}),
  });
  const settle = async () => {
    await cache.waitForIndex((await store.status()).revision);
  };
  return {
    store,
    cache,
    clock,
    log,
    heartbeats,
    async elect(candidate = 's1') {
      const election = new Election({ store, prefix: keys.leaders, candidate, ttlSeconds: 60, log });
      const elected = await election.campaign(new AbortController().signal);
      if (!elected) throw new Error(`${candidate} was not elected`);
      await settle();
      return { term: new Term(store, elected.key, candidate, elected.revision), leaseId: elected.leaseId };
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
      await store.put(keys.heartbeat(node.id), String(clock.now()));
      await settle();
    },
    async silence(node) {
      await store.delete({ key: keys.heartbeat(node.id) });
      await settle();
    },
    settle,
    async close() {
      heartbeats.close();
      cache.stop();
      await store.close();
    },
  };
}
