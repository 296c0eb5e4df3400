/**
 * The Store: a key-value store with etcd's semantics (see docs/architecture.md). Every backend passes the
 * contract suite in `contract.ts`.
 *
 * - One global revision counts every committed change. A transaction commits all its writes at one
 *   revision; a read-only call does not move it. The first write is revision 1 (an empty store is at 0).
 * - Each key has `createRevision` (when last created), `modRevision` (last change) and `version`
 *   (writes since creation; 1 for a new key). Deleting a key resets these.
 * - Values are strings (JSON for unum's own objects).
 */

export interface KeyValue {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  /** The lease the key is attached to, 0 for none. */
  lease: number;
}

/** A key, or every key starting with `prefix`. Exactly one of the two. */
export type KeySelector = { key: string; prefix?: undefined } | { prefix: string; key?: undefined };

export interface RangeOptions {
  /** Read as of this revision (0 or absent: the current one). CompactedError if compacted. */
  revision?: number;
  /** At most this many keys, in key order; `more` tells whether some were left out. */
  limit?: number;
  /** Only keys strictly after this one (for paging). */
  after?: string;
  /** Only count, return no kvs. */
  countOnly?: boolean;
}

export interface RangeResult {
  kvs: KeyValue[];
  /** The store's current revision at the time of the read (not the `revision` asked for). */
  revision: number;
  count: number;
  more: boolean;
}

export type CompareTarget = 'mod' | 'create' | 'version' | 'value' | 'lease';

/**
 * A condition a transaction checks before choosing its branch. A missing key has mod, create,
 * version and lease 0 and value undefined (a value compare on a missing key is false for `=`,
 * true for `!=`).
 */
export type Compare =
  | { key: string; target: 'mod' | 'create' | 'version' | 'lease'; op: '=' | '!=' | '<' | '>'; value: number }
  | { key: string; target: 'value'; op: '=' | '!='; value: string };

export type TxnOp =
  | { type: 'put'; key: string; value: string; lease?: number }
  | ({ type: 'delete' } & KeySelector)
  | ({ type: 'get' } & KeySelector);

export type TxnOpResult =
  { type: 'put'; prevKv?: KeyValue } | { type: 'delete'; deleted: number } | { type: 'get'; kvs: KeyValue[] };

export interface TxnRequest {
  compare?: Compare[];
  success: TxnOp[];
  failure?: TxnOp[];
}

export interface TxnResult {
  succeeded: boolean;
  /** The revision after the transaction (unchanged when it wrote nothing). */
  revision: number;
  /** One result per op of the branch taken, in order. */
  results: TxnOpResult[];
}

export interface WatchEvent {
  type: 'put' | 'delete';
  /** For a delete: the key, with `modRevision` = the deletion's revision and an empty value. */
  kv: KeyValue;
  /** The value before this change, when the watch asked for `prevKv` and there was one. */
  prevKv?: KeyValue;
}

export type WatchOptions = KeySelector & {
  /**
   * Deliver every change at or after this revision, then live ones. Absent: only changes after the
   * watch is created. CompactedError (through `onError`) when older than the compaction revision.
   */
  fromRevision?: number;
  prevKv?: boolean;
};

export interface WatchListener {
  /**
   * Called with the events of one or more whole revisions, in revision order, never twice for the
   * same change. Never called synchronously from `watch()` or from the write that caused it.
   */
  onEvents(events: WatchEvent[]): void;
  /** The watch ended: CompactedError when `fromRevision` was compacted, UnavailableError when the backend went away. */
  onError?(err: Error): void;
}

export interface Watcher {
  /** Stops delivery. Idempotent. */
  cancel(): void;
}

export interface LeaseGrant {
  id: number;
  ttlSeconds: number;
}

export interface Store {
  /** `sqlite`, `etcd` or `memory`. */
  readonly backend: string;

  /** One key, or undefined. CompactedError if `revision` was compacted. */
  get(key: string, options?: { revision?: number }): Promise<KeyValue | undefined>;

  /** Keys selected by key or prefix, sorted by key. CompactedError if `revision` was compacted. */
  range(selector: KeySelector, options?: RangeOptions): Promise<RangeResult>;

  /** Writes one key. NotFoundError if `lease` is given and does not exist. */
  put(
    key: string,
    value: string,
    options?: { lease?: number },
  ): Promise<{ revision: number; prevKv?: KeyValue }>;

  /** Deletes one key or a prefix. Deleting nothing does not move the revision. */
  delete(selector: KeySelector): Promise<{ revision: number; deleted: number }>;

  /**
   * Evaluates every compare against the current state; if all hold runs `success`, else `failure`,
   * atomically at one new revision (if anything was written). NotFoundError if a put names a
   * lease that does not exist (nothing is written).
   */
  txn(request: TxnRequest): Promise<TxnResult>;

  /** Starts a watch; see WatchOptions and WatchListener. */
  watch(options: WatchOptions, listener: WatchListener): Watcher;

  /** A new lease; its keys are deleted (and watchers told) when it is revoked or expires. */
  grantLease(ttlSeconds: number): Promise<LeaseGrant>;

  /** Renews a lease to its full TTL. NotFoundError if it expired or never existed. */
  keepAlive(id: number): Promise<LeaseGrant>;

  /** Revokes a lease now, deleting its keys in one revision. NotFoundError if unknown. */
  revokeLease(id: number): Promise<void>;

  /** Seconds left before the lease expires; NotFoundError if unknown. */
  leaseTimeToLive(
    id: number,
  ): Promise<{ id: number; ttlSeconds: number; remainingSeconds: number; keys: string[] }>;

  /**
   * Forgets history before `revision`: reads and watches at older revisions fail with CompactedError.
   * Current values are untouched. InvalidError if `revision` is in the future.
   */
  compact(revision: number): Promise<void>;

  /** The current revision and the compaction revision. */
  status(): Promise<{ revision: number; compactRevision: number; backend: string }>;

  /** Stops timers and watches and releases the backend. Calls after close reject with UnavailableError. */
  close(): Promise<void>;
}
