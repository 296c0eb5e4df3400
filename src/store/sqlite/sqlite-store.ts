/**
 * The Store on the built-in `node:sqlite`: one file, WAL mode, one connection, etcd's MVCC semantics.
 *
 * Writes go through a queue and are group-committed: every write that arrives before the queue is
 * flushed (the flush runs from `setImmediate`, so a whole tick's worth of callers) is applied in one
 * SQLite transaction and acknowledged after its COMMIT. Each logical transaction still gets its own
 * revision, and its compares see the state left by the earlier ones of the same batch. Reads run
 * synchronously against committed state, so a read issued after an acknowledged write sees it.
 * With synchronous=normal the WAL is also fdatasync'ed in the background (libuv thread pool), so
 * that SQLite's checkpoints do not have to write it back from the event loop.
 *
 * See src/store/README.md for the schema, the write and watch paths, the durability choice and where a write's time goes.
 */
import { closeSync, fdatasync, mkdirSync, openSync, realpathSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import {
  CompactedError,
  InvalidError,
  NotFoundError,
  UnavailableError,
  UnumError,
} from '../../core/errors.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import type {
  Compare,
  KeySelector,
  KeyValue,
  LeaseGrant,
  RangeOptions,
  RangeResult,
  Store,
  TxnOp,
  TxnOpResult,
  TxnRequest,
  TxnResult,
  WatchEvent,
  WatchListener,
  WatchOptions,
  Watcher,
} from '../types.ts';

export type SynchronousLevel = 'normal' | 'full';

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

const SCHEMA_VERSION = 1;
/**
 * WAL pages after which SQLite checkpoints by itself (4 KB pages: 64 MB with synchronous=normal,
 * 16 MB with full). A checkpoint copies the pages changed since the previous one into the database
 * file and fsyncs it, on the event loop: with `normal` a bigger WAL means fewer of them (a lone
 * writer's commit writes ~3 pages: one checkpoint per ~5000 commits). With `full` the WAL is already
 * synced, checkpoints are cheap, and a WAL growing to 64 MB after each open costs more (every
 * commit's fsync also writes the file's new size) than the checkpoints it saves.
 */
const WAL_AUTOCHECKPOINT_PAGES = { normal: 16_000, full: 4000 } as const;
/**
 * With synchronous=normal, logical writes committed between two background `fdatasync`s of the WAL
 * (one at a time, on the libuv thread pool). The checkpoint must fsync the WAL before copying it
 * into the database file; done from the commit that triggers it, on the event loop, that fsync used
 * to write back the whole WAL (16 MB: ~40 ms, about half of a lone writer's time per transaction).
 * Flushing it in the background keeps that write-back off the event loop; it changes nothing about
 * what an acknowledgement means (the commit's WAL write still happens before it).
 */
const WAL_SYNC_WRITES = 64;
/** Rows read per step when a watch catches up from history. */
const CATCH_UP_ROWS = 1000;
/** Revisions deleted per SQLite transaction during compaction (the event loop runs between chunks). */
const COMPACT_CHUNK_REVISIONS = 5000;
/** Bound as a BLOB and cast to TEXT: byte 0xFF sorts after every valid UTF-8 string. */
const NO_UPPER_BOUND = new Uint8Array([0xff]);

// Rows come back as arrays (setReturnArrays) in these column orders: cheaper than named objects.
/** key, value, create_revision, mod_revision, version, lease */
type KvRow = [string, string, number, number, number, number];
/** mod_revision, sub, key, value, create_revision, version, lease; version 0 marks a delete. */
type HistoryRow = [number, number, string, string, number, number, number];

const KV_COLUMNS = 'key, value, create_revision, mod_revision, version, lease';
const HISTORY_COLUMNS = 'mod_revision, sub, key, value, create_revision, version, lease';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
  key             TEXT PRIMARY KEY,
  value           TEXT NOT NULL,
  create_revision INTEGER NOT NULL,
  mod_revision    INTEGER NOT NULL,
  version         INTEGER NOT NULL,
  lease           INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease <> 0;
CREATE TABLE IF NOT EXISTS history (
  mod_revision    INTEGER NOT NULL,
  sub             INTEGER NOT NULL,
  key             TEXT NOT NULL,
  value           TEXT NOT NULL,
  create_revision INTEGER NOT NULL,
  version         INTEGER NOT NULL,
  lease           INTEGER NOT NULL,
  PRIMARY KEY (mod_revision, sub)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS history_key_revision ON history (key, mod_revision);
CREATE TABLE IF NOT EXISTS lease (
  id  INTEGER PRIMARY KEY,
  ttl REAL NOT NULL
);
`;

function kvFromRow(row: KvRow): KeyValue {
  return {
    key: row[0],
    value: row[1],
    createRevision: row[2],
    modRevision: row[3],
    version: row[4],
    lease: row[5],
  };
}

function kvFromHistory(row: HistoryRow): KeyValue {
  return {
    key: row[2],
    value: row[3],
    createRevision: row[4],
    modRevision: row[0],
    version: row[5],
    lease: row[6],
  };
}

function tombstone(key: string, revision: number): KeyValue {
  return { key, value: '', createRevision: 0, modRevision: revision, version: 0, lease: 0 };
}

/**
 * The smallest string greater than every string that starts with `prefix`, in SQLite's BINARY
 * (UTF-8 byte) order, which is code point order: bump the last code point that can be bumped.
 */
export function prefixEnd(prefix: string): string | Uint8Array {
  const points = Array.from(prefix);
  while (points.length > 0) {
    const last = points.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) {
      const next = last + 1 === 0xd800 ? 0xe000 : last + 1;
      return points.join('') + String.fromCodePoint(next);
    }
  }
  return NO_UPPER_BOUND;
}

/** Byte-order (= code point order) comparison, as SQLite compares keys. */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

function invalid(path: string, message: string): InvalidError {
  return new InvalidError(`${path}: ${message}`, { details: { fields: [{ path, message }] } });
}

function checkKey(key: unknown, path: string): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) throw invalid(path, 'expected a non-empty string');
  if (!key.isWellFormed()) throw invalid(path, 'expected a well-formed Unicode string');
}

function checkSelector(selector: KeySelector | undefined, path: string): void {
  if (selector === undefined || selector === null || typeof selector !== 'object') {
    throw invalid(path, 'expected { key } or { prefix }');
  }
  if (selector.key !== undefined) {
    if (selector.prefix !== undefined) throw invalid(path, 'give either key or prefix, not both');
    checkKey(selector.key, `${path}.key`);
  } else if (typeof selector.prefix !== 'string' || !selector.prefix.isWellFormed()) {
    throw invalid(`${path}.prefix`, 'expected a string');
  }
}

function checkRevision(revision: unknown, path: string): void {
  if (revision !== undefined && !(Number.isSafeInteger(revision) && (revision as number) >= 0)) {
    throw invalid(path, 'expected a non-negative integer');
  }
}

function selectorMatches(selector: KeySelector, key: string): boolean {
  return selector.key !== undefined ? selector.key === key : key.startsWith(selector.prefix);
}

function validateOps(ops: unknown, path: string): TxnOp[] {
  if (ops === undefined) return [];
  if (!Array.isArray(ops)) throw invalid(path, 'expected an array of operations');
  const putKeys = new Set<string>();
  const deletes: KeySelector[] = [];
  (ops as TxnOp[]).forEach((op, i) => {
    const at = `${path}[${i}]`;
    switch (op?.type) {
      case 'put':
        checkKey(op.key, `${at}.key`);
        if (typeof op.value !== 'string') throw invalid(`${at}.value`, 'expected a string');
        if (op.lease !== undefined && !(Number.isSafeInteger(op.lease) && op.lease >= 0)) {
          throw invalid(`${at}.lease`, 'expected a lease id');
        }
        // etcd rejects these too: one revision cannot hold two versions of a key.
        if (putKeys.has(op.key))
          throw invalid(`${at}.key`, `duplicate key ${JSON.stringify(op.key)} in transaction`);
        putKeys.add(op.key);
        break;
      case 'delete':
        checkSelector(op, at);
        deletes.push(op);
        break;
      case 'get':
        checkSelector(op, at);
        break;
      default:
        throw invalid(`${at}.type`, 'expected put, delete or get');
    }
  });
  for (const selector of deletes) {
    for (const key of putKeys) {
      if (selectorMatches(selector, key)) {
        throw invalid(path, `key ${JSON.stringify(key)} is both put and deleted in one transaction`);
      }
    }
  }
  return ops as TxnOp[];
}

function validateCompares(compares: unknown): Compare[] {
  if (compares === undefined) return [];
  if (!Array.isArray(compares)) throw invalid('compare', 'expected an array');
  (compares as Compare[]).forEach((c, i) => {
    const at = `compare[${i}]`;
    checkKey(c?.key, `${at}.key`);
    if (c.target === 'value') {
      if (c.op !== '=' && c.op !== '!=') throw invalid(`${at}.op`, 'expected = or != for a value compare');
      if (typeof c.value !== 'string') throw invalid(`${at}.value`, 'expected a string');
    } else if (
      c.target === 'mod' ||
      c.target === 'create' ||
      c.target === 'version' ||
      c.target === 'lease'
    ) {
      if (c.op !== '=' && c.op !== '!=' && c.op !== '<' && c.op !== '>') {
        throw invalid(`${at}.op`, 'expected =, !=, < or >');
      }
      if (typeof c.value !== 'number' || !Number.isFinite(c.value))
        throw invalid(`${at}.value`, 'expected a number');
    } else {
      throw invalid(`${at}.target`, 'expected mod, create, version, value or lease');
    }
  });
  return compares as Compare[];
}

/** Whether `compare` holds for a key whose kv row is `row` (undefined: the key does not exist). */
function holds(compare: Compare, row: KvRow | undefined): boolean {
  if (compare.target === 'value') {
    const equal = row !== undefined && row[1] === compare.value;
    return compare.op === '=' ? equal : !equal;
  }
  let actual = 0;
  if (row !== undefined) {
    switch (compare.target) {
      case 'mod':
        actual = row[3];
        break;
      case 'create':
        actual = row[2];
        break;
      case 'version':
        actual = row[4];
        break;
      case 'lease':
        actual = row[5];
        break;
    }
  }
  switch (compare.op) {
    case '=':
      return actual === compare.value;
    case '!=':
      return actual !== compare.value;
    case '<':
      return actual < compare.value;
    case '>':
      return actual > compare.value;
  }
}

interface NormalizedTxn {
  compare: Compare[];
  success: TxnOp[];
  failure: TxnOp[];
}

type WriteEntry =
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

/** The events of one revision, with the value each key had before. */
interface RevisionEvents {
  revision: number;
  events: WatchEvent[];
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

interface LeaseState {
  ttl: number;
  /** performance.now() milliseconds. */
  expiresAt: number;
  /** Its expiry revoke is queued: it can no longer be used or renewed. */
  expiring: boolean;
}

class WatchStream implements Watcher {
  readonly selector: KeySelector;
  readonly wantPrevKv: boolean;
  readonly listener: WatchListener;
  /** Revisions below this were delivered (or were before the watch's start). */
  nextRevision: number;
  state: 'catch-up' | 'live' | 'ended' = 'catch-up';
  pending: WatchEvent[] = [];
  private deliveryQueued = false;
  private endError: Error | undefined;
  private readonly onCancel: (stream: WatchStream) => void;
  private readonly log: Logger;

  constructor(
    selector: KeySelector,
    wantPrevKv: boolean,
    listener: WatchListener,
    nextRevision: number,
    onCancel: (stream: WatchStream) => void,
    log: Logger,
  ) {
    this.selector = selector;
    this.wantPrevKv = wantPrevKv;
    this.listener = listener;
    this.nextRevision = nextRevision;
    this.onCancel = onCancel;
    this.log = log;
  }

  cancel(): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.pending = [];
    this.onCancel(this);
  }

  /** Ends the watch with `err` after the events already queued. */
  fail(err: Error): void {
    if (this.state === 'ended') return;
    this.state = 'ended';
    this.endError = err;
    this.onCancel(this);
    this.queueDelivery();
  }

  push(event: WatchEvent): void {
    this.pending.push(
      this.wantPrevKv || event.prevKv === undefined ? event : { type: event.type, kv: event.kv },
    );
  }

  queueDelivery(): void {
    if (this.deliveryQueued) return;
    this.deliveryQueued = true;
    queueMicrotask(() => this.deliver());
  }

  /** Hands events to the listener now; only called from a microtask or an immediate. */
  emit(events: WatchEvent[]): void {
    try {
      this.listener.onEvents(events);
    } catch (err) {
      this.log.warn({ err, selector: this.selector }, 'store watch listener threw');
    }
  }

  private deliver(): void {
    this.deliveryQueued = false;
    const events = this.pending;
    this.pending = [];
    if (events.length > 0) this.emit(events);
    const err = this.endError;
    if (err !== undefined) {
      this.endError = undefined;
      try {
        this.listener.onError?.(err);
      } catch (listenerErr) {
        this.log.warn({ err: listenerErr, selector: this.selector }, 'store watch error listener threw');
      }
    }
  }
}

export class SqliteStore implements Store {
  readonly backend: string;
  readonly path: string;
  readonly synchronous: SynchronousLevel;

  private readonly db: DatabaseSync;
  private readonly log: Logger;
  private readonly maxBatch: number;
  private readonly s: ReturnType<typeof prepareStatements>;

  private revision = 0;
  private compactRevision = 0;
  private nextLeaseId = 1;
  private closed = false;

  private queue: WriteEntry[] = [];
  private flushTimer: NodeJS.Immediate | undefined;

  private readonly leases = new Map<number, LeaseState>();
  private leaseTimer: NodeJS.Timeout | undefined;
  private leaseTimerAt = Infinity;

  /** Live watches on one key, by key. */
  private readonly keyWatches = new Map<string, Set<WatchStream>>();
  /** Live watches on a prefix. */
  private readonly prefixWatches = new Set<WatchStream>();
  private liveWatchCount = 0;
  /** Every watch not ended, live or catching up. */
  private readonly watches = new Set<WatchStream>();

  private compaction: Promise<void> = Promise.resolve();
  private readonly counters: SqliteStoreStats = { commits: 0, writes: 0, walSyncs: 0 };

  /** The WAL file, flushed in the background with synchronous=normal (undefined: no flushing). */
  private walPath: string | undefined;
  private walFd: number | undefined;
  /** The background fdatasync in flight, if any. */
  private walSync: Promise<void> | undefined;
  private writesSinceWalSync = 0;

  constructor(options: SqliteStoreOptions) {
    this.path = options.path;
    this.synchronous = options.synchronous ?? 'normal';
    if (this.synchronous !== 'normal' && this.synchronous !== 'full') {
      throw invalid('synchronous', `expected normal or full, got ${JSON.stringify(this.synchronous)}`);
    }
    this.backend = options.backend ?? 'sqlite';
    this.log = options.logger ?? silentLogger();
    this.maxBatch = options.maxBatch ?? 1000;
    const inMemory = this.path === ':memory:';

    let db: DatabaseSync | undefined;
    try {
      if (!inMemory) mkdirSync(dirname(this.path), { recursive: true });
      db = new DatabaseSync(this.path);
      if (!inMemory) {
        // One process owns the file: a second server on it would break the revision and the watches.
        // Set before WAL so that SQLite keeps the WAL index in process memory (no -shm file).
        db.exec('PRAGMA locking_mode = EXCLUSIVE');
        const mode = db.prepare('PRAGMA journal_mode = WAL').get()?.['journal_mode'];
        if (mode !== 'wal') throw new Error(`cannot switch to WAL mode (got ${String(mode)})`);
        // Checkpoints: see WAL_AUTOCHECKPOINT_PAGES. journal_size_limit keeps the WAL file at up to
        // 64 MB after a checkpoint rather than truncating it.
        db.exec(`PRAGMA wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES[this.synchronous]}`);
        db.exec('PRAGMA journal_size_limit = 67108864');
      }
      db.exec(`PRAGMA synchronous = ${this.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
      db.exec('PRAGMA cache_size = -32768');
      db.exec('PRAGMA temp_store = MEMORY');
      // BEGIN IMMEDIATE takes the write lock now, so that a second opener fails here, not later.
      db.exec('BEGIN IMMEDIATE');
      const userVersion = Number(db.prepare('PRAGMA user_version').get()?.['user_version'] ?? 0);
      if (userVersion > SCHEMA_VERSION) {
        throw new InvalidError(
          `store file ${this.path} has schema version ${userVersion}; this unum knows up to ${SCHEMA_VERSION}`,
        );
      }
      db.exec(SCHEMA);
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
      db.exec('COMMIT');
    } catch (err) {
      try {
        db?.close();
      } catch {
        // Already failing: the first error is the one to report.
      }
      if (err instanceof UnumError) throw err;
      const busy = (err as { errcode?: number }).errcode === 5;
      throw new UnavailableError(
        busy
          ? `store file ${this.path} is in use by another process`
          : `cannot open store file ${this.path}: ${(err as Error).message}`,
        { cause: err },
      );
    }

    this.db = db;
    if (!inMemory && this.synchronous === 'normal') {
      try {
        // SQLite names the WAL after the database path with symbolic links resolved.
        this.walPath = `${realpathSync(this.path)}-wal`;
      } catch (err) {
        this.log.warn({ err, path: this.path }, 'no background flushing of the WAL');
      }
    }
    this.s = prepareStatements(this.db);
    this.compactRevision = this.readMeta('compact_revision');
    // The revision is not stored apart (one page less to write per commit): rows at or above the
    // compaction revision are never deleted, so the newest history row is the current revision.
    const newest = (this.s.historyMaxRevision.get() as unknown as [number | null])[0] ?? 0;
    this.revision = Math.max(newest, this.compactRevision);
    this.nextLeaseId = Math.max(1, this.readMeta('next_lease_id'));
    // As etcd does after a leader change: every lease restarts with its full TTL from now.
    const now = performance.now();
    for (const row of this.s.leaseAll.all() as unknown as Array<[number, number]>) {
      this.leases.set(row[0], { ttl: row[1], expiresAt: now + row[1] * 1000, expiring: false });
    }
    this.armLeaseTimer();
    this.log.debug(
      { path: this.path, revision: this.revision, leases: this.leases.size, synchronous: this.synchronous },
      'store opened',
    );
  }

  stats(): SqliteStoreStats {
    return { ...this.counters };
  }

  // ---- reads ---------------------------------------------------------------------------------

  async get(key: string, options?: { revision?: number }): Promise<KeyValue | undefined> {
    this.checkOpen();
    checkKey(key, 'key');
    const revision = this.readRevision(options?.revision);
    if (revision === this.revision) {
      const row = this.s.kvGet.get(key) as unknown as KvRow | undefined;
      return row === undefined ? undefined : kvFromRow(row);
    }
    const row = this.s.historyKeyAt.get(key, revision) as unknown as HistoryRow | undefined;
    return row === undefined || row[5] === 0 ? undefined : kvFromHistory(row);
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
    const at = revision === this.revision ? undefined : revision;
    return { ...this.rangeAt(selector, options, at), revision: this.revision };
  }

  async status(): Promise<{ revision: number; compactRevision: number; backend: string }> {
    this.checkOpen();
    return { revision: this.revision, compactRevision: this.compactRevision, backend: this.backend };
  }

  /** Checks a read revision; returns the one to read at (0 and absent mean the current one). */
  private readRevision(revision: number | undefined): number {
    checkRevision(revision, 'revision');
    if (revision === undefined || revision === 0) return this.revision;
    if (revision > this.revision) {
      throw invalid('revision', `revision ${revision} is in the future (current ${this.revision})`);
    }
    if (revision < this.compactRevision) {
      throw new CompactedError(
        `revision ${revision} was compacted (oldest readable ${this.compactRevision})`,
        this.compactRevision,
      );
    }
    return revision;
  }

  /** Reads the kv table (current state, including a batch's uncommitted writes) or, with `revision`, history. */
  private rangeAt(
    selector: KeySelector,
    options: RangeOptions,
    revision: number | undefined,
  ): { kvs: KeyValue[]; count: number; more: boolean } {
    const current = revision === undefined;
    const limit = options.limit !== undefined && options.limit > 0 ? options.limit : 0;
    const after = options.after;
    if (selector.key !== undefined) {
      if (after !== undefined && compareKeys(selector.key, after) <= 0)
        return { kvs: [], count: 0, more: false };
      let kv: KeyValue | undefined;
      if (current) {
        const row = this.s.kvGet.get(selector.key) as unknown as KvRow | undefined;
        kv = row === undefined ? undefined : kvFromRow(row);
      } else {
        const row = this.s.historyKeyAt.get(selector.key, revision) as unknown as HistoryRow | undefined;
        kv = row === undefined || row[5] === 0 ? undefined : kvFromHistory(row);
      }
      const count = kv === undefined ? 0 : 1;
      return { kvs: kv === undefined || options.countOnly === true ? [] : [kv], count, more: false };
    }
    // Start strictly after `after` when it is inside or past the prefix, else at the prefix.
    const strict = after !== undefined && compareKeys(after, selector.prefix) >= 0;
    const low = strict ? after : selector.prefix;
    const high = prefixEnd(selector.prefix);
    const pick = current
      ? strict
        ? this.s.kvRangeGt
        : this.s.kvRangeGe
      : strict
        ? this.s.historyRangeGt
        : this.s.historyRangeGe;
    const params: SQLInputValue[] = revision === undefined ? [low, high] : [low, high, revision];
    if (options.countOnly === true) {
      const counter = current
        ? strict
          ? this.s.kvCountGt
          : this.s.kvCountGe
        : strict
          ? this.s.historyCountGt
          : this.s.historyCountGe;
      const row = counter.get(...params) as unknown as [number];
      return { kvs: [], count: row[0], more: false };
    }
    const rows = pick.all(...params, limit > 0 ? limit + 1 : -1) as unknown as KvRow[];
    const more = limit > 0 && rows.length > limit;
    if (more) rows.length = limit;
    let count = rows.length;
    if (more) {
      const counter = current
        ? strict
          ? this.s.kvCountGt
          : this.s.kvCountGe
        : strict
          ? this.s.historyCountGt
          : this.s.historyCountGe;
      count = (counter.get(...params) as unknown as [number])[0];
    }
    return { kvs: rows.map(kvFromRow), count, more };
  }

  // ---- writes --------------------------------------------------------------------------------

  put(
    key: string,
    value: string,
    options?: { lease?: number },
  ): Promise<{ revision: number; prevKv?: KeyValue }> {
    try {
      this.checkOpen();
      const op: TxnOp =
        options?.lease === undefined || options.lease === 0
          ? { type: 'put', key, value }
          : { type: 'put', key, value, lease: options.lease };
      const txn: NormalizedTxn = { compare: [], success: validateOps([op], 'success'), failure: [] };
      // Settled straight from the commit, without a second promise to map the TxnResult.
      return new Promise((resolve, reject) => {
        this.enqueue({
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
    return this.txn({ success: [{ type: 'delete', ...selector } as TxnOp] }).then((result) => ({
      revision: result.revision,
      deleted: (result.results[0] as { type: 'delete'; deleted: number }).deleted,
    }));
  }

  txn(request: TxnRequest): Promise<TxnResult> {
    try {
      this.checkOpen();
      if (request === null || typeof request !== 'object') throw invalid('', 'expected a transaction');
      const txn: NormalizedTxn = {
        compare: validateCompares(request.compare),
        success: validateOps(request.success, 'success'),
        failure: validateOps(request.failure, 'failure'),
      };
      return new Promise<TxnResult>((resolve, reject) => {
        this.enqueue({ kind: 'txn', txn, resolve, reject });
      });
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  private enqueue(entry: WriteEntry): void {
    this.queue.push(entry);
    // setImmediate, not a microtask: it runs after every continuation woken by the previous commit,
    // so a whole round of concurrent writers lands in one batch.
    this.flushTimer ??= setImmediate(() => {
      this.flushTimer = undefined;
      this.flush();
    });
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
      revision: this.revision,
      nextLeaseId: this.nextLeaseId,
      granted: new Map(),
      revoked: new Set(),
      events: this.liveWatchCount > 0 ? [] : undefined,
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
      if (batch.nextLeaseId !== this.nextLeaseId) this.s.setMeta.run('next_lease_id', batch.nextLeaseId);
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

    this.counters.commits++;
    this.counters.writes += entries.length;
    this.revision = batch.revision;
    this.nextLeaseId = batch.nextLeaseId;
    const now = performance.now();
    for (const id of batch.revoked) this.leases.delete(id);
    for (const [id, ttl] of batch.granted) {
      if (!batch.revoked.has(id)) this.leases.set(id, { ttl, expiresAt: now + ttl * 1000, expiring: false });
    }
    if (batch.granted.size > 0) this.armLeaseTimer();

    entries.forEach((entry, i) => {
      const [ok, value] = outcomes[i]!;
      if (ok) (entry.resolve as (v: unknown) => void)(value);
      else entry.reject(value);
    });
    if (batch.events !== undefined && batch.events.length > 0) this.dispatch(batch.events);
    this.walWritten(entries.length);
    this.scheduleMore();
  }

  /**
   * Counts `writes` committed to the WAL and starts a background fdatasync of it once there are
   * WAL_SYNC_WRITES since the last one started, if none is in flight. Only an optimisation: SQLite
   * still fsyncs the WAL itself before every checkpoint, so a failure here only turns it off.
   */
  private walWritten(writes: number): void {
    this.writesSinceWalSync += writes;
    if (this.walSync !== undefined || this.writesSinceWalSync < WAL_SYNC_WRITES) return;
    if (this.walPath === undefined || this.closed) return;
    this.writesSinceWalSync = 0;
    try {
      // A second descriptor on the WAL: SQLite holds no locks on that file (they are on the main
      // file), so it cannot drop one when closed. The WAL file lives as long as the connection.
      this.walFd ??= openSync(this.walPath, 'r+');
    } catch (err) {
      this.log.warn({ err, path: this.walPath }, 'cannot open the WAL for background flushing');
      this.walPath = undefined;
      return;
    }
    const fd = this.walFd;
    this.counters.walSyncs++;
    this.walSync = new Promise<void>((resolve) => {
      fdatasync(fd, (err) => {
        this.walSync = undefined;
        if (err !== null) {
          this.log.warn({ err, path: this.walPath }, 'background flush of the WAL failed; turned off');
          this.walPath = undefined;
        }
        resolve();
      });
    });
  }

  private scheduleMore(): void {
    if (this.queue.length > 0 && !this.closed) {
      this.flushTimer ??= setImmediate(() => {
        this.flushTimer = undefined;
        this.flush();
      });
    }
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
    const lease = this.leases.get(id);
    if (lease === undefined) return false;
    if (allowExpiring) return true;
    return !lease.expiring && lease.expiresAt > performance.now();
  }

  private applyTxn(txn: NormalizedTxn, batch: Batch): TxnResult {
    let succeeded = true;
    // The row of the last key compared, reused by a put of that key (the usual compare-and-swap):
    // no op of a transaction writes a key that one of its puts writes (validateOps), so it is still
    // the key's row when the put runs.
    let comparedKey: string | undefined;
    let comparedRow: KvRow | undefined;
    for (const compare of txn.compare) {
      if (compare.key !== comparedKey) {
        comparedKey = compare.key;
        comparedRow = this.s.kvGet.get(compare.key) as unknown as KvRow | undefined;
      }
      if (!holds(compare, comparedRow)) {
        succeeded = false;
        break;
      }
    }
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
        const prevRow =
          op.key === comparedKey ? comparedRow : (this.s.kvGet.get(op.key) as unknown as KvRow | undefined);
        const lease = op.lease ?? 0;
        let createRevision: number;
        let version: number;
        if (prevRow === undefined) {
          createRevision = revision;
          version = 1;
          this.s.kvInsert.run(op.key, op.value, createRevision, revision, version, lease);
        } else {
          createRevision = prevRow[2];
          version = prevRow[4] + 1;
          this.s.kvUpdate.run(op.value, revision, version, lease, op.key);
        }
        this.s.historyInsert.run(revision, sub++, op.key, op.value, createRevision, version, lease);
        wrote = true;
        const prevKv = prevRow === undefined ? undefined : kvFromRow(prevRow);
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
        const { kvs } = this.rangeAt(
          op.key !== undefined ? { key: op.key } : { prefix: op.prefix },
          {},
          undefined,
        );
        results.push({ type: 'get', kvs });
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

  // ---- watches -------------------------------------------------------------------------------

  watch(options: WatchOptions, listener: WatchListener): Watcher {
    checkSelector(options, 'watch');
    const selector: KeySelector =
      options.key !== undefined ? { key: options.key } : { prefix: options.prefix };
    checkRevision(options.fromRevision, 'fromRevision');
    if (typeof listener?.onEvents !== 'function') throw invalid('listener.onEvents', 'expected a function');
    const from = options.fromRevision !== undefined && options.fromRevision > 0 ? options.fromRevision : 0;
    const stream = new WatchStream(
      selector,
      options.prevKv === true,
      listener,
      from > 0 ? from : this.revision + 1,
      (w) => this.removeWatch(w),
      this.log,
    );
    if (this.closed) {
      stream.fail(new UnavailableError('store is closed'));
      return stream;
    }
    this.watches.add(stream);
    if (from === 0) {
      this.goLive(stream);
    } else {
      // Never from inside watch(): the first events (or the CompactedError) come from an immediate.
      setImmediate(() => this.catchUp(stream));
    }
    return stream;
  }

  private goLive(stream: WatchStream): void {
    stream.state = 'live';
    this.liveWatchCount++;
    if (stream.selector.key !== undefined) {
      let set = this.keyWatches.get(stream.selector.key);
      if (set === undefined) {
        set = new Set();
        this.keyWatches.set(stream.selector.key, set);
      }
      set.add(stream);
    } else {
      this.prefixWatches.add(stream);
    }
  }

  private removeWatch(stream: WatchStream): void {
    if (!this.watches.delete(stream)) return;
    const key = stream.selector.key;
    if (key !== undefined) {
      const set = this.keyWatches.get(key);
      if (set?.delete(stream) === true) {
        this.liveWatchCount--;
        if (set.size === 0) this.keyWatches.delete(key);
      }
    } else if (this.prefixWatches.delete(stream)) {
      this.liveWatchCount--;
    }
  }

  /**
   * Delivers history from `stream.nextRevision` up to the current revision, a chunk per immediate,
   * then makes the stream live. Switching to live happens in the same tick as the check that history
   * is exhausted, so no commit can fall between the two: no gap, no duplicate.
   */
  private catchUp(stream: WatchStream): void {
    if (stream.state !== 'catch-up' || this.closed) return;
    if (stream.nextRevision < this.compactRevision) {
      stream.fail(
        new CompactedError(
          `watch from revision ${stream.nextRevision}: compacted (oldest readable ${this.compactRevision})`,
          this.compactRevision,
        ),
      );
      return;
    }
    if (stream.nextRevision > this.revision) {
      this.goLive(stream);
      return;
    }
    const { key, prefix } = stream.selector;
    const high = prefix === undefined ? undefined : prefixEnd(prefix);
    let rows: HistoryRow[] =
      key !== undefined
        ? (this.s.historyKeyFrom.all(
            key,
            stream.nextRevision,
            this.revision,
            CATCH_UP_ROWS,
          ) as unknown as HistoryRow[])
        : (this.s.historyPrefixFrom.all(
            prefix!,
            high!,
            stream.nextRevision,
            this.revision,
            CATCH_UP_ROWS,
          ) as unknown as HistoryRow[]);
    let upTo = this.revision;
    if (rows.length === CATCH_UP_ROWS) {
      // A chunk ends on a whole revision: drop the last one (read next time), unless it is the only one.
      const first = rows[0]![0];
      const last = rows[rows.length - 1]![0];
      if (last > first) {
        while (rows[rows.length - 1]![0] === last) rows.pop();
        upTo = last - 1;
      } else {
        rows =
          key !== undefined
            ? rows
            : (this.s.historyPrefixAt.all(prefix!, high!, last) as unknown as HistoryRow[]);
        upTo = last;
      }
    }
    const events: WatchEvent[] = [];
    for (const row of rows) {
      const deleted = row[5] === 0;
      const kv = deleted ? tombstone(row[2], row[0]) : kvFromHistory(row);
      let prevKv: KeyValue | undefined;
      if (stream.wantPrevKv) {
        const prev = this.s.historyPrev.get(row[2], row[0]) as unknown as HistoryRow | undefined;
        if (prev !== undefined && prev[5] !== 0) prevKv = kvFromHistory(prev);
      }
      events.push(
        prevKv === undefined
          ? { type: deleted ? 'delete' : 'put', kv }
          : { type: deleted ? 'delete' : 'put', kv, prevKv },
      );
    }
    stream.nextRevision = upTo + 1;
    if (events.length > 0) stream.emit(events);
    if (stream.state !== 'catch-up' || this.closed) return;
    if (stream.nextRevision > this.revision) this.goLive(stream);
    else setImmediate(() => this.catchUp(stream));
  }

  /** Hands a committed batch's events to the live watches (delivered from a microtask). */
  private dispatch(revisions: RevisionEvents[]): void {
    const touched = new Set<WatchStream>();
    for (const { revision, events } of revisions) {
      for (const event of events) {
        const exact = this.keyWatches.get(event.kv.key);
        if (exact !== undefined) {
          for (const stream of exact) {
            if (revision < stream.nextRevision) continue;
            stream.push(event);
            touched.add(stream);
          }
        }
        for (const stream of this.prefixWatches) {
          if (revision < stream.nextRevision || !event.kv.key.startsWith(stream.selector.prefix!)) continue;
          stream.push(event);
          touched.add(stream);
        }
      }
    }
    const last = revisions[revisions.length - 1]!.revision;
    for (const stream of touched) {
      stream.nextRevision = last + 1;
      stream.queueDelivery();
    }
  }

  // ---- leases --------------------------------------------------------------------------------

  grantLease(ttlSeconds: number): Promise<LeaseGrant> {
    try {
      this.checkOpen();
      if (typeof ttlSeconds !== 'number' || !Number.isFinite(ttlSeconds) || ttlSeconds <= 0) {
        throw invalid('ttlSeconds', 'expected a positive number of seconds');
      }
      return new Promise<LeaseGrant>((resolve, reject) => {
        this.enqueue({ kind: 'grant', ttl: ttlSeconds, resolve, reject });
      });
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  async keepAlive(id: number): Promise<LeaseGrant> {
    this.checkOpen();
    const lease = this.leases.get(id);
    const now = performance.now();
    if (lease === undefined || lease.expiring || lease.expiresAt <= now) {
      throw new NotFoundError(`lease ${id} not found`, { details: { lease: id } });
    }
    lease.expiresAt = now + lease.ttl * 1000;
    return { id, ttlSeconds: lease.ttl };
  }

  revokeLease(id: number): Promise<void> {
    try {
      this.checkOpen();
      return new Promise<void>((resolve, reject) => {
        this.enqueue({ kind: 'revoke', id, expired: false, resolve, reject });
      });
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  async leaseTimeToLive(
    id: number,
  ): Promise<{ id: number; ttlSeconds: number; remainingSeconds: number; keys: string[] }> {
    this.checkOpen();
    const lease = this.leases.get(id);
    const now = performance.now();
    if (lease === undefined || lease.expiring || lease.expiresAt <= now) {
      throw new NotFoundError(`lease ${id} not found`, { details: { lease: id } });
    }
    const keys = (this.s.kvByLease.all(id) as unknown as KvRow[]).map((row) => row[0]);
    const remainingSeconds = Math.round(lease.expiresAt - now) / 1000;
    return { id, ttlSeconds: lease.ttl, remainingSeconds, keys };
  }

  /** One timer for the earliest expiry; a renewal only moves expiries later, so it fires early at worst. */
  private armLeaseTimer(): void {
    if (this.closed) return;
    let earliest = Infinity;
    for (const lease of this.leases.values()) {
      if (!lease.expiring && lease.expiresAt < earliest) earliest = lease.expiresAt;
    }
    if (earliest === Infinity) {
      clearTimeout(this.leaseTimer);
      this.leaseTimer = undefined;
      this.leaseTimerAt = Infinity;
      return;
    }
    if (this.leaseTimer !== undefined && this.leaseTimerAt <= earliest) return;
    clearTimeout(this.leaseTimer);
    this.leaseTimerAt = earliest;
    this.leaseTimer = setTimeout(() => this.expireLeases(), Math.max(0, earliest - performance.now()) + 1);
    // Leases alone do not keep a process alive; whoever waits on them holds it open.
    this.leaseTimer.unref();
  }

  private expireLeases(): void {
    this.leaseTimer = undefined;
    this.leaseTimerAt = Infinity;
    if (this.closed) return;
    const now = performance.now();
    for (const [id, lease] of this.leases) {
      if (lease.expiring || lease.expiresAt > now) continue;
      lease.expiring = true;
      this.log.debug({ lease: id }, 'lease expired');
      this.enqueue({
        kind: 'revoke',
        id,
        expired: true,
        resolve: () => {},
        reject: (err) => {
          // The commit failed: let the timer try again rather than leave the lease half-expired.
          this.log.warn({ err, lease: id }, 'revoking an expired lease failed');
          lease.expiring = false;
          this.armLeaseTimer();
        },
      });
    }
    this.armLeaseTimer();
  }

  // ---- compaction ----------------------------------------------------------------------------

  compact(revision: number): Promise<void> {
    try {
      this.checkOpen();
      if (!Number.isSafeInteger(revision) || revision < 0)
        throw invalid('revision', 'expected a non-negative integer');
      if (revision > this.revision) {
        throw invalid('revision', `revision ${revision} is in the future (current ${this.revision})`);
      }
    } catch (err) {
      return Promise.reject(err as Error);
    }
    // Idempotent: compacting at or below the current compaction revision changes nothing.
    if (revision <= this.compactRevision) return this.compaction.catch(() => undefined);
    // Reads and watches below `revision` fail from now on (a watch still catching up notices at its
    // next step); the rows themselves go in chunks after.
    this.s.setMeta.run('compact_revision', revision);
    this.compactRevision = revision;
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
      this.walWritten(WAL_SYNC_WRITES);
      low = high;
      if (low < revision) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.log.info({ revision, deleted, ms: Math.round(performance.now() - started) }, 'store compacted');
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.closed) return;
    // Writes already accepted are committed, not dropped.
    if (this.flushTimer !== undefined) {
      clearImmediate(this.flushTimer);
      this.flushTimer = undefined;
    }
    while (this.queue.length > 0) this.flush();
    if (this.flushTimer !== undefined) {
      clearImmediate(this.flushTimer);
      this.flushTimer = undefined;
    }
    this.closed = true;
    clearTimeout(this.leaseTimer);
    this.leaseTimer = undefined;
    const gone = new UnavailableError('store is closed');
    for (const stream of [...this.watches]) stream.fail(gone);
    try {
      this.db.close();
    } catch (err) {
      this.log.warn({ err }, 'closing the store file failed');
    }
    if (this.walSync !== undefined) await this.walSync;
    if (this.walFd !== undefined) {
      closeSync(this.walFd);
      this.walFd = undefined;
    }
    this.log.debug({ path: this.path, revision: this.revision }, 'store closed');
  }

  private checkOpen(): void {
    if (this.closed) throw new UnavailableError('store is closed');
  }

  private readMeta(name: string): number {
    const row = this.s.getMeta.get(name) as unknown as [number] | undefined;
    return row === undefined ? 0 : row[0];
  }
}

function prepareStatements(db: DatabaseSync) {
  const prepare = (sql: string): StatementSync => {
    const statement = db.prepare(sql);
    statement.setReturnArrays(true);
    return statement;
  };
  // Latest history row per key at or before a revision (SQLite takes the bare columns from the MAX row).
  const historyLatest = (low: '>=' | '>') => `
    SELECT key, value, create_revision, mod_revision, version, lease FROM (
      SELECT key, value, create_revision, MAX(mod_revision) AS mod_revision, version, lease
      FROM history WHERE key ${low} ?1 AND key < CAST(?2 AS TEXT) AND mod_revision <= ?3 GROUP BY key
    ) WHERE version > 0`;
  return {
    begin: prepare('BEGIN IMMEDIATE'),
    commit: prepare('COMMIT'),
    rollback: prepare('ROLLBACK'),
    getMeta: prepare('SELECT value FROM meta WHERE name = ?'),
    setMeta: prepare(
      'INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
    ),

    kvGet: prepare(`SELECT ${KV_COLUMNS} FROM kv WHERE key = ?`),
    kvRangeGe: prepare(
      `SELECT ${KV_COLUMNS} FROM kv WHERE key >= ?1 AND key < CAST(?2 AS TEXT) ORDER BY key LIMIT ?3`,
    ),
    kvRangeGt: prepare(
      `SELECT ${KV_COLUMNS} FROM kv WHERE key > ?1 AND key < CAST(?2 AS TEXT) ORDER BY key LIMIT ?3`,
    ),
    kvCountGe: prepare('SELECT COUNT(*) FROM kv WHERE key >= ?1 AND key < CAST(?2 AS TEXT)'),
    kvCountGt: prepare('SELECT COUNT(*) FROM kv WHERE key > ?1 AND key < CAST(?2 AS TEXT)'),
    // A put knows whether the key exists (it read the row): an INSERT or an UPDATE, not an upsert
    // (which tries the insert first).
    kvInsert: prepare(`INSERT INTO kv (${KV_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`),
    kvUpdate: prepare('UPDATE kv SET value = ?, mod_revision = ?, version = ?, lease = ? WHERE key = ?'),
    kvDelete: prepare('DELETE FROM kv WHERE key = ?'),
    kvDeleteRange: prepare('DELETE FROM kv WHERE key >= ?1 AND key < CAST(?2 AS TEXT)'),
    kvByLease: prepare(`SELECT ${KV_COLUMNS} FROM kv WHERE lease = ? ORDER BY key`),

    historyInsert: prepare(`INSERT INTO history (${HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`),
    historyKeyAt: prepare(
      `SELECT ${HISTORY_COLUMNS} FROM history WHERE key = ? AND mod_revision <= ? ORDER BY mod_revision DESC LIMIT 1`,
    ),
    historyRangeGe: prepare(`${historyLatest('>=')} ORDER BY key LIMIT ?4`),
    historyRangeGt: prepare(`${historyLatest('>')} ORDER BY key LIMIT ?4`),
    historyCountGe: prepare(`SELECT COUNT(*) FROM (${historyLatest('>=')})`),
    historyCountGt: prepare(`SELECT COUNT(*) FROM (${historyLatest('>')})`),
    historyKeyFrom: prepare(
      `SELECT ${HISTORY_COLUMNS} FROM history WHERE key = ? AND mod_revision >= ? AND mod_revision <= ?
       ORDER BY mod_revision LIMIT ?`,
    ),
    historyPrefixFrom: prepare(
      `SELECT ${HISTORY_COLUMNS} FROM history
       WHERE key >= ?1 AND key < CAST(?2 AS TEXT) AND mod_revision >= ?3 AND mod_revision <= ?4
       ORDER BY mod_revision, sub LIMIT ?5`,
    ),
    historyPrefixAt: prepare(
      `SELECT ${HISTORY_COLUMNS} FROM history WHERE key >= ?1 AND key < CAST(?2 AS TEXT) AND mod_revision = ?3
       ORDER BY sub`,
    ),
    historyPrev: prepare(
      `SELECT ${HISTORY_COLUMNS} FROM history WHERE key = ? AND mod_revision < ? ORDER BY mod_revision DESC LIMIT 1`,
    ),
    historyMinRevision: prepare('SELECT MIN(mod_revision) FROM history'),
    historyMaxRevision: prepare('SELECT MAX(mod_revision) FROM history'),
    historyCompact: prepare(
      `DELETE FROM history WHERE mod_revision >= ?1 AND mod_revision < ?2 AND (
         version = 0 OR mod_revision < (
           SELECT MAX(h.mod_revision) FROM history AS h WHERE h.key = history.key AND h.mod_revision < ?3))`,
    ),

    leaseInsert: prepare('INSERT INTO lease (id, ttl) VALUES (?, ?)'),
    leaseDelete: prepare('DELETE FROM lease WHERE id = ?'),
    leaseAll: prepare('SELECT id, ttl FROM lease'),
  };
}
