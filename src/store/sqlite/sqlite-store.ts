/**
 * The Store on the built-in `node:sqlite`: one file, WAL mode, one connection, etcd's MVCC semantics.
 *
 * This file wires the pieces: the file and its statements (schema.ts), the group-committed write
 * queue (commit-queue.ts), reads (reads.ts), the background WAL flush (wal-flush.ts), and the
 * backend-neutral core: validation and compares, the watch hub fed from the `history` table, and
 * the lessor that decides when a lease has expired (../core/). Reads run synchronously against
 * committed state, so a read issued after an acknowledged write sees it.
 *
 * See src/store/README.md for the schema, the write and watch paths, the durability choice and where a write's time goes.
 */
import type { DatabaseSync } from 'node:sqlite';
import { CompactedError, UnavailableError } from '../../core/errors.ts';
import type { Clock } from '../../core/clock.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import type {
  KeySelector,
  KeyValue,
  LeaseGrant,
  RangeOptions,
  RangeResult,
  Store,
  TxnRequest,
  TxnResult,
  WatchListener,
  WatchOptions,
  Watcher,
} from '../types.ts';
import { Lessor, monotonicClock } from '../core/lessor.ts';
import {
  checkKey,
  checkRevision,
  checkSelector,
  checkTtl,
  invalid,
  putTxn,
  validateTxn,
} from '../core/validate.ts';
import { WatchHub } from '../core/watch-hub.ts';
import { CommitQueue, type StoreState, type WriteEntry } from './commit-queue.ts';
import { SqliteHistory, readKey, readRange } from './reads.ts';
import { openDatabase, prepareStatements, type Statements, type SynchronousLevel } from './schema.ts';
import { WAL_SYNC_WRITES, WalFlusher } from './wal-flush.ts';

export { prefixEnd, type SynchronousLevel } from './schema.ts';

export interface SqliteStoreOptions {
  /** Path of the database file (its directory is created), or `:memory:`. */
  path: string;
  /**
   * SQLite's `synchronous` setting. `normal` (default): with WAL, an acknowledged commit survives the
   * process being killed (it is in the OS page cache), not a power loss. `full`: the WAL is fsynced at
   * every commit, so it survives power loss too, at the cost of one fsync per group commit.
   */
  synchronous?: SynchronousLevel;
  /** Reported as `backend`; default `sqlite` (the factory says `memory` for `:memory:`). */
  backend?: string;
  logger?: Logger;
  /** Most logical transactions per SQLite transaction; default 1000. */
  maxBatch?: number;
  /** Drives lease expiry; default a monotonic system clock. Tests pass a FakeClock. */
  clock?: Clock;
}

/** Counters for tests and benchmarks. */
export interface SqliteStoreStats {
  /** SQLite transactions committed by the write queue. */
  commits: number;
  /** Logical writes (txn, put, delete, lease grant and revoke) applied. */
  writes: number;
  /** Background fdatasyncs of the WAL started (synchronous=normal only). */
  walSyncs: number;
}

/** Revisions deleted per SQLite transaction during compaction (the event loop runs between chunks). */
const COMPACT_CHUNK_REVISIONS = 5000;

export class SqliteStore implements Store {
  readonly backend: string;
  readonly path: string;
  readonly synchronous: SynchronousLevel;

  private readonly db: DatabaseSync;
  private readonly log: Logger;
  private readonly s: Statements;
  private readonly state: StoreState;
  private readonly lessor: Lessor;
  private readonly hub: WatchHub;
  private readonly wal: WalFlusher;
  private readonly queue: CommitQueue;
  private closed = false;
  private compaction: Promise<void> = Promise.resolve();

  constructor(options: SqliteStoreOptions) {
    this.path = options.path;
    this.synchronous = options.synchronous ?? 'normal';
    if (this.synchronous !== 'normal' && this.synchronous !== 'full') {
      throw invalid('synchronous', `expected normal or full, got ${JSON.stringify(this.synchronous)}`);
    }
    this.backend = options.backend ?? 'sqlite';
    this.log = options.logger ?? silentLogger();
    const inMemory = this.path === ':memory:';

    this.db = openDatabase(this.path, this.synchronous);
    this.wal = new WalFlusher(!inMemory && this.synchronous === 'normal' ? this.path : undefined, this.log);
    this.s = prepareStatements(this.db);
    const compactRevision = this.readMeta('compact_revision');
    // The revision is not stored apart (one page less to write per commit): rows at or above the
    // compaction revision are never deleted, so the newest history row is the current revision.
    const newest = (this.s.historyMaxRevision.get() as unknown as [number | null])[0] ?? 0;
    this.state = {
      revision: Math.max(newest, compactRevision),
      compactRevision,
      nextLeaseId: Math.max(1, this.readMeta('next_lease_id')),
    };
    this.hub = new WatchHub(new SqliteHistory(this.s, this.state), this.log);
    this.lessor = new Lessor({ clock: options.clock ?? monotonicClock, onExpire: (id) => this.expire(id) });
    this.queue = new CommitQueue({
      statements: this.s,
      state: this.state,
      lessor: this.lessor,
      hub: this.hub,
      wal: this.wal,
      log: this.log,
      maxBatch: options.maxBatch ?? 1000,
    });
    // As etcd does after a leader change: every lease restarts with its full TTL from now.
    for (const row of this.s.leaseAll.all() as unknown as Array<[number, number]>)
      this.lessor.add(row[0], row[1]);
    this.log.debug(
      {
        path: this.path,
        revision: this.state.revision,
        leases: this.lessor.size,
        synchronous: this.synchronous,
      },
      'store opened',
    );
  }

  stats(): SqliteStoreStats {
    return { commits: this.queue.commits, writes: this.queue.writes, walSyncs: this.wal.syncs };
  }

  // ---- reads ---------------------------------------------------------------------------------

  async get(key: string, options?: { revision?: number }): Promise<KeyValue | undefined> {
    this.checkOpen();
    checkKey(key, 'key');
    const revision = this.readRevision(options?.revision);
    return readKey(this.s, key, revision === this.state.revision ? undefined : revision);
  }

  async range(selector: KeySelector, options: RangeOptions = {}): Promise<RangeResult> {
    this.checkOpen();
    checkSelector(selector, 'selector');
    if (options.after !== undefined && typeof options.after !== 'string') {
      throw invalid('after', 'expected a string');
    }
    if (options.limit !== undefined && !(Number.isSafeInteger(options.limit) && options.limit >= 0)) {
      throw invalid('limit', 'expected a non-negative integer');
    }
    const revision = this.readRevision(options.revision);
    const at = revision === this.state.revision ? undefined : revision;
    return { ...readRange(this.s, selector, options, at), revision: this.state.revision };
  }

  async status(): Promise<{ revision: number; compactRevision: number; backend: string }> {
    this.checkOpen();
    return {
      revision: this.state.revision,
      compactRevision: this.state.compactRevision,
      backend: this.backend,
    };
  }

  /** Checks a read revision; returns the one to read at (0 and absent mean the current one). */
  private readRevision(revision: number | undefined): number {
    checkRevision(revision, 'revision');
    const { revision: current, compactRevision } = this.state;
    if (revision === undefined || revision === 0) return current;
    if (revision > current) {
      throw invalid('revision', `revision ${revision} is in the future (current ${current})`);
    }
    if (revision < compactRevision) {
      throw new CompactedError(
        `revision ${revision} was compacted (oldest readable ${compactRevision})`,
        compactRevision,
      );
    }
    return revision;
  }

  // ---- writes --------------------------------------------------------------------------------

  put(
    key: string,
    value: string,
    options?: { lease?: number },
  ): Promise<{ revision: number; prevKv?: KeyValue }> {
    try {
      this.checkOpen();
      const txn = putTxn(key, value, options?.lease);
      // Settled straight from the commit, without a second promise to map the TxnResult.
      return new Promise((resolve, reject) => {
        this.queue.enqueue({
          kind: 'txn',
          txn,
          resolve: (result) => {
            const first = result.results[0] as { type: 'put'; prevKv?: KeyValue };
            resolve(
              first.prevKv === undefined
                ? { revision: result.revision }
                : { revision: result.revision, prevKv: first.prevKv },
            );
          },
          reject,
        });
      });
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  delete(selector: KeySelector): Promise<{ revision: number; deleted: number }> {
    return this.txn({ success: [{ type: 'delete', ...selector }] }).then((result) => ({
      revision: result.revision,
      deleted: (result.results[0] as { type: 'delete'; deleted: number }).deleted,
    }));
  }

  txn(request: TxnRequest): Promise<TxnResult> {
    try {
      this.checkOpen();
      const txn = validateTxn(request);
      return new Promise<TxnResult>((resolve, reject) => {
        this.queue.enqueue({ kind: 'txn', txn, resolve, reject });
      });
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  // ---- watches -------------------------------------------------------------------------------

  watch(options: WatchOptions, listener: WatchListener): Watcher {
    return this.hub.watch(options, listener);
  }

  // ---- leases --------------------------------------------------------------------------------

  grantLease(ttlSeconds: number): Promise<LeaseGrant> {
    return this.write<LeaseGrant>(
      () => checkTtl(ttlSeconds),
      (resolve, reject) => ({
        kind: 'grant',
        ttl: ttlSeconds,
        resolve,
        reject,
      }),
    );
  }

  async keepAlive(id: number): Promise<LeaseGrant> {
    this.checkOpen();
    return this.lessor.keepAlive(id);
  }

  revokeLease(id: number): Promise<void> {
    return this.write<void>(
      () => {},
      (resolve, reject) => ({ kind: 'revoke', id, expired: false, resolve, reject }),
    );
  }

  async leaseTimeToLive(
    id: number,
  ): Promise<{ id: number; ttlSeconds: number; remainingSeconds: number; keys: string[] }> {
    this.checkOpen();
    const { ttlSeconds, remainingSeconds } = this.lessor.timeToLive(id);
    const keys = (this.s.kvByLease.all(id) as unknown as Array<[string]>).map((row) => row[0]);
    return { id, ttlSeconds, remainingSeconds, keys };
  }

  /** The lessor found `id` past its TTL: revoke it through the write queue like any write. */
  private expire(id: number): void {
    this.log.debug({ lease: id }, 'lease expired');
    this.queue.enqueue({
      kind: 'revoke',
      id,
      expired: true,
      resolve: () => {},
      reject: (err) => {
        // The commit failed: let the lessor try again rather than leave the lease half-expired.
        this.log.warn({ err, lease: id }, 'revoking an expired lease failed');
        this.lessor.expiryFailed(id);
      },
    });
  }

  /** Queues a write after `check` (which throws InvalidError); every error comes back as a rejection. */
  private write<T>(
    check: () => void,
    entry: (resolve: (value: T) => void, reject: (err: unknown) => void) => WriteEntry,
  ): Promise<T> {
    try {
      this.checkOpen();
      check();
      return new Promise<T>((resolve, reject) => this.queue.enqueue(entry(resolve, reject)));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  // ---- compaction ----------------------------------------------------------------------------

  compact(revision: number): Promise<void> {
    try {
      this.checkOpen();
      if (!Number.isSafeInteger(revision) || revision < 0)
        throw invalid('revision', 'expected a non-negative integer');
      if (revision > this.state.revision) {
        throw invalid('revision', `revision ${revision} is in the future (current ${this.state.revision})`);
      }
    } catch (err) {
      return Promise.reject(err as Error);
    }
    // Idempotent: compacting at or below the current compaction revision changes nothing.
    if (revision <= this.state.compactRevision) return this.compaction.catch(() => undefined);
    // Reads and watches below `revision` fail from now on (a watch still catching up notices at its
    // next step); the rows themselves go in chunks after.
    this.s.setMeta.run('compact_revision', revision);
    this.state.compactRevision = revision;
    const run = this.compaction.catch(() => undefined).then(() => this.deleteHistoryBelow(revision));
    this.compaction = run;
    return run;
  }

  /**
   * Deletes every history row below `revision` except, for each key, the newest one when it is not a
   * tombstone: that row is the key's value at `revision` (if no later row) and the prevKv of its next
   * change. Runs in chunks of revisions with the event loop turning in between.
   */
  private async deleteHistoryBelow(revision: number): Promise<void> {
    const started = performance.now();
    let low = (this.s.historyMinRevision.get() as unknown as [number | null])[0] ?? revision;
    let deleted = 0;
    while (low < revision && !this.closed) {
      const high = Math.min(low + COMPACT_CHUNK_REVISIONS, revision);
      this.s.begin.run();
      try {
        deleted += Number(this.s.historyCompact.run(low, high, revision).changes);
        this.s.commit.run();
      } catch (err) {
        this.s.rollback.run();
        throw err;
      }
      // A chunk rewrites many pages: flush them in the background too.
      this.wal.written(WAL_SYNC_WRITES);
      low = high;
      if (low < revision) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.log.info({ revision, deleted, ms: Math.round(performance.now() - started) }, 'store compacted');
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.closed) return;
    // Writes already accepted are committed, not dropped.
    this.queue.close();
    this.closed = true;
    this.lessor.close();
    this.hub.close(new UnavailableError('store is closed'));
    try {
      this.db.close();
    } catch (err) {
      this.log.warn({ err }, 'closing the store file failed');
    }
    await this.wal.close();
    this.log.debug({ path: this.path, revision: this.state.revision }, 'store closed');
  }

  private checkOpen(): void {
    if (this.closed) throw new UnavailableError('store is closed');
  }

  private readMeta(name: string): number {
    const row = this.s.getMeta.get(name) as unknown as [number] | undefined;
    return row === undefined ? 0 : row[0];
  }
}
