/**
 * The collector: keeps a long-lived cluster's history bounded. It trims events and finished
 * evaluations to the retention limits and compacts old Store revisions, then looks again after
 * `intervalMs`. One key ("retention").
 */
import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import type { Evaluation } from '../../core/types.ts';
import type { Store, TxnOp } from '../../store/types.ts';
import type { StateCache } from '../cache.ts';
import { keys, prefixes } from '../keys.ts';
import type { Term } from '../leadership/term.ts';
import type { Controller } from './controller.ts';

export const RETENTION = 'retention';

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

export interface Collected {
  events: number;
  evaluations: number;
  compactedTo: number;
}

export interface CollectorDeps {
  store: Store;
  cache: StateCache;
  clock: Clock;
  log: Logger;
  retention: Retention;
}

/** Trims events, finished evaluations and Store history to the retention limits, fenced by `term`. */
export async function collectGarbage(d: CollectorDeps, term: Term, now = d.clock.now()): Promise<Collected> {
  const r = d.retention;
  const ops: TxnOp[] = [];
  // Events: keys sort by time, so the oldest come first in a range.
  const total = (await d.store.range({ prefix: prefixes.events }, { countOnly: true })).count;
  const excess = Math.max(0, total - r.events);
  const oldest = await d.store.range(
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
  for (const e of d.cache.listEvals()) {
    const k = `${e.namespace}/${e.jobId}`;
    const n = newest.get(k);
    if (!n || e.modifiedAt > n.modifiedAt) newest.set(k, e);
  }
  let evaluations = 0;
  for (const e of d.cache.listEvals()) {
    if (e.status !== 'complete' && e.status !== 'canceled' && e.status !== 'failed') continue;
    if (e.modifiedAt >= now - r.evalAgeMs || newest.get(`${e.namespace}/${e.jobId}`) === e) continue;
    ops.push({ type: 'delete', key: keys.evaluation(e.id) });
    evaluations++;
  }
  // Small transactions: etcd refuses more than 128 operations in one.
  for (let i = 0; i < ops.length; i += 100) await term.txn({ success: ops.slice(i, i + 100) });
  term.check();
  const status = await d.store.status();
  const compactedTo = status.revision - r.revisions;
  if (compactedTo > status.compactRevision) await d.store.compact(compactedTo);
  if (events || evaluations) d.log.info({ events, evaluations, compactedTo }, 'garbage collected');
  return { events, evaluations, compactedTo: Math.max(compactedTo, status.compactRevision) };
}

export function collectorController(d: CollectorDeps): Controller {
  return {
    name: 'collector',
    initialKeys: () => [RETENTION],
    keysFor: () => [],
    async reconcile(_key, term) {
      await collectGarbage(d, term);
      return { requeueAfterMs: d.retention.intervalMs };
    },
  };
}
