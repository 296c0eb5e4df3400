/**
 * The sqlite write path: a queue of logical writes, group-committed. Every write that arrives
 * before the queue is flushed (from `setImmediate`, so a whole tick's worth of callers) is applied in
 * one SQLite transaction and acknowledged after its COMMIT. Each logical transaction still gets its
 * own revision, and its compares see the state left by the earlier ones of the same batch. After the
 * commit: the revision moves, the lessor learns of grants and revokes, every promise settles, and
 * the watch hub gets the batch's events. See ../README.md ("Write path").
 */
import { NotFoundError, UnavailableError, UnumError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { KeyValue, LeaseGrant, TxnOpResult, TxnResult, WatchEvent } from '../types.ts';
import { evaluateCompares } from '../core/compare.ts';
import { tombstone } from '../core/keys.ts';
import type { Lessor } from '../core/lessor.ts';
import type { NormalizedTxn } from '../core/validate.ts';
import type { RevisionEvents, WatchHub } from '../core/watch-hub.ts';
import { readKey, readRange } from './reads.ts';
import { kvFromRow, prefixEnd, type KvRow, type Statements } from './schema.ts';
import type { WalFlusher } from './wal-flush.ts';

export type WriteEntry =
  | { kind: 'txn'; txn: NormalizedTxn; resolve: (result: TxnResult) => void; reject: (err: unknown) => void }
  | { kind: 'grant'; ttl: number; resolve: (grant: LeaseGrant) => void; reject: (err: unknown) => void }
  | {
      kind: 'revoke';
      id: number;
      /** An expiry revokes quietly if the lease is already gone; a caller's revoke gets NotFoundError. */
      expired: boolean;
      resolve: () => void;
      reject: (err: unknown) => void;
    };

/** What the store and its queue share: the queue moves `revision` and `nextLeaseId` at each commit. */
export interface StoreState {
  revision: number;
  compactRevision: number;
  nextLeaseId: number;
}

export interface CommitQueueOptions {
  statements: Statements;
  state: StoreState;
  lessor: Lessor;
  hub: WatchHub;
  wal: WalFlusher;
  log: Logger;
  /** Most logical transactions per SQLite transaction. */
  maxBatch: number;
}

/** State of one group commit while its SQLite transaction is open. */
interface Batch {
  revision: number;
  nextLeaseId: number;
  granted: Map<number, number>;
  revoked: Set<number>;
  /** Undefined when no watcher is live: then no event objects are built. */
  events: RevisionEvents[] | undefined;
}

export class CommitQueue {
  /** SQLite transactions committed. */
  commits = 0;
  /** Logical writes (txn, put, delete, lease grant and revoke) applied. */
  writes = 0;

  private readonly s: Statements;
  private readonly state: StoreState;
  private readonly lessor: Lessor;
  private readonly hub: WatchHub;
  private readonly wal: WalFlusher;
  private readonly log: Logger;
  private readonly maxBatch: number;
  private queue: WriteEntry[] = [];
  private flushTimer: NodeJS.Immediate | undefined;
  private closed = false;

  constructor(options: CommitQueueOptions) {
    this.s = options.statements;
    this.state = options.state;
    this.lessor = options.lessor;
    this.hub = options.hub;
    this.wal = options.wal;
    this.log = options.log;
    this.maxBatch = options.maxBatch;
  }

  enqueue(entry: WriteEntry): void {
    this.queue.push(entry);
    // setImmediate, not a microtask: it runs after every continuation woken by the previous commit,
    // so a whole round of concurrent writers lands in one batch.
    this.flushTimer ??= setImmediate(() => {
      this.flushTimer = undefined;
      this.flush();
    });
  }

  /** Commits everything accepted so far, now (the store is closing: accepted writes are not dropped). */
  close(): void {
    this.cancelTimer();
    while (this.queue.length > 0) this.flush();
    this.cancelTimer();
    this.closed = true;
  }

  private cancelTimer(): void {
    if (this.flushTimer === undefined) return;
    clearImmediate(this.flushTimer);
    this.flushTimer = undefined;
  }

  private scheduleMore(): void {
    if (this.queue.length > 0 && !this.closed) {
      this.flushTimer ??= setImmediate(() => {
        this.flushTimer = undefined;
        this.flush();
      });
    }
  }

  /** Commits one batch from the queue and acknowledges it; re-arms itself if more are waiting. */
  private flush(): void {
    if (this.queue.length === 0) return;
    let entries: WriteEntry[];
    if (this.queue.length <= this.maxBatch) {
      entries = this.queue;
      this.queue = [];
    } else {
      entries = this.queue.slice(0, this.maxBatch);
      this.queue = this.queue.slice(this.maxBatch);
    }
    const batch: Batch = {
      revision: this.state.revision,
      nextLeaseId: this.state.nextLeaseId,
      granted: new Map(),
      revoked: new Set(),
      events: this.hub.hasLiveWatches ? [] : undefined,
    };
    // What each entry settles with once the batch is durable: [ok, value].
    const outcomes: Array<[boolean, unknown]> = [];
    try {
      this.s.begin.run();
      for (const entry of entries) {
        try {
          outcomes.push([true, this.apply(entry, batch)]);
        } catch (err) {
          // Expected refusals (unknown lease, ...) are raised before the entry wrote anything.
          if (!(err instanceof UnumError)) throw err;
          outcomes.push([false, err]);
        }
      }
      if (batch.nextLeaseId !== this.state.nextLeaseId)
        this.s.setMeta.run('next_lease_id', batch.nextLeaseId);
      this.s.commit.run();
    } catch (err) {
      try {
        this.s.rollback.run();
      } catch {
        // No transaction open (BEGIN failed): nothing to undo.
      }
      this.log.error({ err, entries: entries.length }, 'store commit failed');
      const failure = new UnavailableError(`store commit failed: ${(err as Error).message}`, { cause: err });
      for (const entry of entries) entry.reject(failure);
      this.scheduleMore();
      return;
    }

    this.commits++;
    this.writes += entries.length;
    this.state.revision = batch.revision;
    this.state.nextLeaseId = batch.nextLeaseId;
    for (const id of batch.revoked) this.lessor.remove(id);
    for (const [id, ttl] of batch.granted) if (!batch.revoked.has(id)) this.lessor.add(id, ttl);

    entries.forEach((entry, i) => {
      const [ok, value] = outcomes[i]!;
      if (ok) (entry.resolve as (v: unknown) => void)(value);
      else entry.reject(value);
    });
    if (batch.events !== undefined) this.hub.publish(batch.events);
    this.wal.written(entries.length);
    this.scheduleMore();
  }

  private apply(entry: WriteEntry, batch: Batch): unknown {
    switch (entry.kind) {
      case 'txn':
        return this.applyTxn(entry.txn, batch);
      case 'grant': {
        const id = batch.nextLeaseId++;
        this.s.leaseInsert.run(id, entry.ttl);
        batch.granted.set(id, entry.ttl);
        return { id, ttlSeconds: entry.ttl } satisfies LeaseGrant;
      }
      case 'revoke':
        if (!this.leaseUsable(entry.id, batch, entry.expired)) {
          if (entry.expired) return undefined;
          throw new NotFoundError(`lease ${entry.id} not found`);
        }
        this.applyRevoke(entry.id, batch);
        return undefined;
    }
  }

  /** Whether `id` can take keys (or be revoked) at this point of the batch. */
  private leaseUsable(id: number, batch: Batch, allowExpiring = false): boolean {
    if (batch.revoked.has(id)) return false;
    if (batch.granted.has(id)) return true;
    return allowExpiring ? this.lessor.has(id) : this.lessor.alive(id);
  }

  private applyTxn(txn: NormalizedTxn, batch: Batch): TxnResult {
    // The kv of the last key compared, reused by a put of that key (the usual compare-and-swap): no
    // op of a transaction writes a key that one of its puts writes (validateOps), so it is still the
    // key's kv when the put runs.
    let comparedKey: string | undefined;
    let comparedKv: KeyValue | undefined;
    const succeeded =
      txn.compare.length === 0 ||
      evaluateCompares(txn.compare, (key) => {
        comparedKey = key;
        comparedKv = readKey(this.s, key, undefined);
        return comparedKv;
      });
    const ops = succeeded ? txn.success : txn.failure;
    for (const op of ops) {
      if (
        op.type === 'put' &&
        op.lease !== undefined &&
        op.lease !== 0 &&
        !this.leaseUsable(op.lease, batch)
      ) {
        throw new NotFoundError(`lease ${op.lease} not found`, { details: { key: op.key, lease: op.lease } });
      }
    }

    const revision = batch.revision + 1;
    let wrote = false;
    let sub = 0;
    const events: WatchEvent[] | undefined = batch.events === undefined ? undefined : [];
    const results: TxnOpResult[] = [];
    for (const op of ops) {
      if (op.type === 'put') {
        const prevKv = op.key === comparedKey ? comparedKv : readKey(this.s, op.key, undefined);
        const lease = op.lease ?? 0;
        let createRevision: number;
        let version: number;
        if (prevKv === undefined) {
          createRevision = revision;
          version = 1;
          this.s.kvInsert.run(op.key, op.value, createRevision, revision, version, lease);
        } else {
          createRevision = prevKv.createRevision;
          version = prevKv.version + 1;
          this.s.kvUpdate.run(op.value, revision, version, lease, op.key);
        }
        this.s.historyInsert.run(revision, sub++, op.key, op.value, createRevision, version, lease);
        wrote = true;
        if (events !== undefined) {
          const kv: KeyValue = {
            key: op.key,
            value: op.value,
            createRevision,
            modRevision: revision,
            version,
            lease,
          };
          events.push(prevKv === undefined ? { type: 'put', kv } : { type: 'put', kv, prevKv });
        }
        results.push(prevKv === undefined ? { type: 'put' } : { type: 'put', prevKv });
      } else if (op.type === 'delete') {
        let rows: KvRow[];
        if (op.key !== undefined) {
          const row = this.s.kvGet.get(op.key) as unknown as KvRow | undefined;
          rows = row === undefined ? [] : [row];
          if (row !== undefined) this.s.kvDelete.run(op.key);
        } else {
          const high = prefixEnd(op.prefix);
          rows = this.s.kvRangeGe.all(op.prefix, high, -1) as unknown as KvRow[];
          if (rows.length > 0) this.s.kvDeleteRange.run(op.prefix, high);
        }
        for (const row of rows) {
          this.s.historyInsert.run(revision, sub++, row[0], '', 0, 0, 0);
          events?.push({ type: 'delete', kv: tombstone(row[0], revision), prevKv: kvFromRow(row) });
        }
        if (rows.length > 0) wrote = true;
        results.push({ type: 'delete', deleted: rows.length });
      } else {
        const selector = op.key !== undefined ? { key: op.key } : { prefix: op.prefix };
        results.push({ type: 'get', kvs: readRange(this.s, selector, {}, undefined).kvs });
      }
    }
    if (wrote) {
      batch.revision = revision;
      if (events !== undefined && events.length > 0) batch.events!.push({ revision, events });
    }
    return { succeeded, revision: batch.revision, results };
  }

  private applyRevoke(id: number, batch: Batch): void {
    const rows = this.s.kvByLease.all(id) as unknown as KvRow[];
    if (rows.length > 0) {
      const revision = batch.revision + 1;
      const events: WatchEvent[] = [];
      let sub = 0;
      for (const row of rows) {
        this.s.kvDelete.run(row[0]);
        this.s.historyInsert.run(revision, sub++, row[0], '', 0, 0, 0);
        if (batch.events !== undefined) {
          events.push({ type: 'delete', kv: tombstone(row[0], revision), prevKv: kvFromRow(row) });
        }
      }
      batch.revision = revision;
      if (batch.events !== undefined) batch.events.push({ revision, events });
    }
    this.s.leaseDelete.run(id);
    batch.revoked.add(id);
  }
}
