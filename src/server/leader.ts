/**
 * Leadership and the work only the leader does. Servers campaign for `/unum/leader` (a key on a
 * lease, created only if absent); the winner enables the evaluation broker, runs scheduler workers
 * and controllers, and fences every plan with a compare on its leader key, so a deposed leader's
 * late write cannot land.
 *
 *   cache change ──► controllers ──► evaluations ──► broker ──► worker ──schedule()──► plan ──► applier ──► Store
 */
import { newId, shortId } from '../core/ids.ts';
import type { Logger } from '../core/log.ts';
import type { Allocation, Evaluation } from '../core/types.ts';
import { schedule } from '../scheduler/schedule.ts';
import type { Store, TxnOp } from '../store/types.ts';
import type { CacheChange, StateCache } from './cache.ts';
import { EvalBroker } from './broker.ts';
import { eventOp, putOp } from './events.ts';
import { keys, prefixes } from './keys.ts';
import { PlanApplier } from './plan-applier.ts';

const LEADER_TTL_SECONDS = 10;
const PLAN_ATTEMPTS = 5;

/** What the leader keeps; older history is garbage-collected so a long-lived cluster stays bounded. */
export interface Retention {
  /** Events kept at most (oldest go first). */
  events: number;
  /** Events older than this go, whatever their number. */
  eventAgeMs: number;
  /** Finished evaluations older than this go (the newest of each job stays, for `unum status`). */
  evalAgeMs: number;
  /** Store revisions of history kept behind the current one (older ones are compacted). */
  revisions: number;
  /** How often the collector runs. */
  intervalMs: number;
}

export const DEFAULT_RETENTION: Retention = {
  events: 20_000,
  eventAgeMs: 24 * 3_600_000,
  evalAgeMs: 3_600_000,
  revisions: 50_000,
  intervalMs: 60_000,
};

export interface LeaderOptions {
  store: Store;
  cache: StateCache;
  log: Logger;
  serverId: string;
  workers?: number;
  retention?: Partial<Retention>;
}

export class Leadership {
  readonly broker = new EvalBroker();
  readonly applier: PlanApplier;
  private readonly store: Store;
  private readonly cache: StateCache;
  private readonly log: Logger;
  private readonly serverId: string;
  private readonly workerCount: number;
  private readonly retention: Retention;
  private abort = new AbortController();
  private leading: AbortController | undefined;
  private unsubscribe: (() => void) | undefined;
  private running: Promise<void> | undefined;

  constructor(o: LeaderOptions) {
    this.store = o.store;
    this.cache = o.cache;
    this.log = o.log;
    this.serverId = o.serverId;
    this.workerCount = o.workers ?? 1;
    this.retention = { ...DEFAULT_RETENTION, ...o.retention };
    this.applier = new PlanApplier(o.store, o.cache, o.log);
  }

  get isLeader(): boolean {
    return this.leading !== undefined && !this.leading.signal.aborted;
  }

  start(): void {
    this.running = this.campaign().catch((err: unknown) => this.log.error({ err }, 'leadership loop failed'));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.stepDown();
    await this.running;
  }

  private async campaign(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        // This same server restarted: its old leader key would otherwise block it until the lease runs out.
        await this.store.txn({
          compare: [{ key: keys.leader, target: 'value', op: '=', value: this.serverId }],
          success: [{ type: 'delete', key: keys.leader }],
        });
        const lease = await this.store.grantLease(LEADER_TTL_SECONDS);
        const res = await this.store.txn({
          compare: [{ key: keys.leader, target: 'create', op: '=', value: 0 }],
          success: [{ type: 'put', key: keys.leader, value: this.serverId, lease: lease.id }],
        });
        if (res.succeeded) {
          await this.lead(lease.id, res.revision);
        } else {
          await this.store.revokeLease(lease.id).catch(() => undefined);
          await this.waitForVacancy(signal);
        }
      } catch (err) {
        if (signal.aborted) break;
        this.log.warn({ err }, 'leader election failed; retrying');
        await delay(1000, signal);
      }
    }
  }

  private waitForVacancy(signal: AbortSignal): Promise<void> {
    // An abort that came while the campaign was mid-call would never fire again.
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const w = this.store.watch(
        { key: keys.leader },
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
      this.store.get(keys.leader).then(
        (kv) => {
          if (!kv) finish();
        },
        () => finish(),
      );
    });
  }

  private async lead(leaseId: number, createRevision: number): Promise<void> {
    const leading = new AbortController();
    this.leading = leading;
    this.applier.fence = [{ key: keys.leader, target: 'create', op: '=', value: createRevision }];
    this.log.info({ serverId: this.serverId }, 'this server is now the leader');
    await this.cache.waitForIndex(createRevision);
    this.broker.setEnabled(true);
    this.unsubscribe = this.cache.subscribe((changes) => this.onChanges(changes));
    this.restore();
    const workers = Array.from({ length: this.workerCount }, (_, i) => this.work(i, leading.signal));
    const gcTimer = setInterval(() => this.spawn(this.collectGarbage()), this.retention.intervalMs);
    gcTimer.unref();
    leading.signal.addEventListener('abort', () => clearInterval(gcTimer));
    // Renew the lease; losing it means losing leadership.
    while (!leading.signal.aborted) {
      await delay((LEADER_TTL_SECONDS * 1000) / 3, leading.signal);
      if (leading.signal.aborted) break;
      try {
        await this.store.keepAlive(leaseId);
      } catch (err) {
        this.log.error({ err }, 'lost the leader lease; stepping down');
        break;
      }
    }
    this.stepDown();
    await Promise.all(workers);
    await this.store.revokeLease(leaseId).catch(() => undefined);
  }

  private stepDown(): void {
    if (!this.leading) return;
    this.leading.abort();
    this.leading = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.applier.fence = [];
    this.broker.setEnabled(false);
  }

  /** On taking office: queue what the previous leader left, and catch nodes that died meanwhile. */
  private restore(): void {
    for (const e of this.cache.listEvals()) {
      if (e.status === 'pending') this.broker.enqueue(e);
      else if (e.status === 'blocked') this.broker.block(e);
    }
    for (const n of this.cache.listNodes()) {
      if (n.status === 'ready' && !this.cache.isAlive(n.id)) this.spawn(this.nodeDown(n.id));
    }
  }

  private onChanges(changes: CacheChange[]): void {
    let capacityChanged = false;
    for (const c of changes) {
      if (c.kind === 'eval' && c.evaluation?.status === 'pending') this.broker.enqueue(c.evaluation);
      else if (c.kind === 'heartbeat') {
        if (c.alive) capacityChanged = true;
        else this.spawn(this.nodeDown(c.nodeId));
      } else if (c.kind === 'node' && c.node?.status === 'ready' && c.prev?.status !== 'ready')
        capacityChanged = true;
      else if (c.kind === 'alloc' && c.alloc && c.prev && freedResources(c.prev, c.alloc))
        capacityChanged = true;
      else if (c.kind === 'resync') {
        this.restore();
        capacityChanged = true;
      }
    }
    if (capacityChanged) this.broker.unblock();
  }

  /** Trims events, finished evaluations and Store history to the retention limits. */
  async collectGarbage(
    now = Date.now(),
  ): Promise<{ events: number; evaluations: number; compactedTo: number }> {
    const r = this.retention;
    const ops: TxnOp[] = [];
    // Events: keys sort by time, so the oldest come first in a range.
    const total = (await this.store.range({ prefix: prefixes.events }, { countOnly: true })).count;
    const excess = Math.max(0, total - r.events);
    const oldest = await this.store.range(
      { prefix: prefixes.events },
      { limit: Math.min(Math.max(excess, 1000), 5000) },
    );
    let events = 0;
    for (const kv of oldest.kvs) {
      const time = Number(kv.key.slice(prefixes.events.length).split('-')[0]);
      if (events < excess || time < now - r.eventAgeMs) {
        ops.push({ type: 'delete', key: kv.key });
        events++;
      }
    }
    // Evaluations: finished and old, except each job's newest.
    const newest = new Map<string, Evaluation>();
    for (const e of this.cache.listEvals()) {
      const k = `${e.namespace}/${e.jobId}`;
      const n = newest.get(k);
      if (!n || e.modifiedAt > n.modifiedAt) newest.set(k, e);
    }
    let evaluations = 0;
    for (const e of this.cache.listEvals()) {
      if (e.status !== 'complete' && e.status !== 'canceled' && e.status !== 'failed') continue;
      if (e.modifiedAt >= now - r.evalAgeMs || newest.get(`${e.namespace}/${e.jobId}`) === e) continue;
      ops.push({ type: 'delete', key: keys.evaluation(e.id) });
      evaluations++;
    }
    // Small transactions: etcd refuses more than 128 operations in one.
    for (let i = 0; i < ops.length; i += 100)
      await this.store.txn({ compare: this.applier.fence, success: ops.slice(i, i + 100) });
    const status = await this.store.status();
    const compactedTo = status.revision - r.revisions;
    if (compactedTo > status.compactRevision) await this.store.compact(compactedTo);
    if (events || evaluations) this.log.info({ events, evaluations, compactedTo }, 'garbage collected');
    return { events, evaluations, compactedTo: Math.max(compactedTo, status.compactRevision) };
  }

  private spawn(p: Promise<void> | Promise<unknown>): void {
    p.catch((err: unknown) => this.log.error({ err }, 'controller failed'));
  }

  /** A node stopped heartbeating: mark it down, its running allocations lost, and re-evaluate their jobs. */
  private async nodeDown(nodeId: string): Promise<void> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const node = this.cache.node(nodeId);
      if (!node || this.cache.isAlive(nodeId)) return;
      const now = Date.now();
      const ops: TxnOp[] = [];
      const compare = [...this.applier.fence];
      if (node.status !== 'down') {
        compare.push({
          key: keys.node(nodeId),
          target: 'mod',
          op: '=',
          value: this.cache.revisionOf(keys.node(nodeId)),
        });
        ops.push(
          putOp(keys.node(nodeId), { ...node, status: 'down', statusDescription: 'missed heartbeats' }),
        );
        ops.push(
          eventOp(
            {
              topic: 'node',
              type: 'node-down',
              nodeId,
              message: `node ${node.name} is down: missed heartbeats`,
            },
            now,
          ),
        );
      }
      const jobs = new Map<string, Allocation>();
      for (const a of this.cache.allocsOnNode(nodeId)) {
        if (a.clientStatus !== 'pending' && a.clientStatus !== 'running') continue;
        compare.push({
          key: keys.alloc(a.id),
          target: 'mod',
          op: '=',
          value: this.cache.revisionOf(keys.alloc(a.id)),
        });
        ops.push(
          putOp(keys.alloc(a.id), {
            ...a,
            clientStatus: 'lost',
            clientDescription: `node ${node.name} is down`,
            modifiedAt: now,
          }),
        );
        ops.push(
          eventOp(
            {
              topic: 'allocation',
              type: 'alloc-lost',
              namespace: a.namespace,
              jobId: a.jobId,
              allocId: a.id,
              nodeId,
              message: `${a.name} (${shortId(a.id)}) lost: node ${node.name} is down`,
            },
            now,
          ),
        );
        jobs.set(`${a.namespace}/${a.jobId}`, a);
      }
      for (const a of jobs.values()) {
        const job = this.cache.job(a.namespace, a.jobId);
        const e = newEvaluation(a.namespace, a.jobId, job?.spec.priority ?? 50, 'node-update', now, nodeId);
        ops.push(putOp(keys.evaluation(e.id), e));
      }
      if (ops.length === 0) return;
      const res = await this.store.txn({ compare, success: ops });
      if (res.succeeded) {
        this.log.warn({ nodeId, lostAllocs: jobs.size }, 'node down');
        return;
      }
      await this.cache.waitForIndex(res.revision);
    }
  }

  private async work(worker: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const evaluation = await this.broker.dequeue(signal);
      if (!evaluation) break;
      try {
        await this.process(evaluation);
      } catch (err) {
        this.log.error({ err, evalId: evaluation.id, worker }, 'evaluation failed');
      } finally {
        this.broker.ack(evaluation);
      }
    }
  }

  private async process(evaluation: Evaluation): Promise<void> {
    let reason = '';
    for (let attempt = 0; attempt < PLAN_ATTEMPTS; attempt++) {
      const plan = schedule(this.cache, evaluation, { now: Date.now(), newId, random: Math.random });
      const result = await this.applier.apply(plan, evaluation);
      if (result.ok) {
        if (result.evaluation?.status === 'blocked') this.broker.block(result.evaluation);
        return;
      }
      reason = result.reason ?? 'refused';
      await this.cache.waitForIndex(result.revision);
    }
    const now = Date.now();
    await this.store.txn({
      compare: this.applier.fence,
      success: [
        putOp(keys.evaluation(evaluation.id), {
          ...evaluation,
          status: 'failed',
          statusDescription: `plan refused ${PLAN_ATTEMPTS} times: ${reason}`,
          modifiedAt: now,
        }),
        eventOp(
          {
            topic: 'evaluation',
            type: 'eval-failed',
            namespace: evaluation.namespace,
            jobId: evaluation.jobId,
            evalId: evaluation.id,
            message: `evaluation ${shortId(evaluation.id)} failed: ${reason}`,
          },
          now,
        ),
      ],
    });
  }
}

export function newEvaluation(
  namespace: string,
  jobId: string,
  priority: number,
  triggeredBy: Evaluation['triggeredBy'],
  now: number,
  nodeId?: string,
): Evaluation {
  return {
    id: newId(),
    namespace,
    jobId,
    priority,
    triggeredBy,
    status: 'pending',
    createdAt: now,
    modifiedAt: now,
    ...(nodeId ? { nodeId } : {}),
  };
}

/** The allocation gave back what it held: it finished, or was told to stop. */
function freedResources(prev: Allocation, next: Allocation): boolean {
  const held = (a: Allocation) =>
    a.desiredStatus === 'run' && (a.clientStatus === 'pending' || a.clientStatus === 'running');
  return held(prev) && !held(next);
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
