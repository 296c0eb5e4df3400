/**
 * The Store on an etcd cluster (3.4 or later), through its v3 gRPC API. etcd already has the Store's
 * model (one revision, MVCC history, transactions with compares, watches, leases, compaction); this
 * file translates, and covers the few places where the Store promises more than etcd's raw
 * behaviour (see README.md, "Where etcd differs"):
 *
 * - revisions are etcd's minus one (codec.ts), and the compaction revision is etcd's own: etcd keeps
 *   one more revision than the Store lets callers read, so that the first change after a compaction
 *   still has its prevKv, and a read or watch at the revision just below is refused here;
 * - a value `!=` compare on a missing key holds (etcd says false): such a compare becomes nested
 *   transactions (txn.ts);
 * - lease ids are chosen here, below 2^53, so that they are exact JavaScript numbers;
 * - writes bigger than etcd accepts are refused before they are sent (InvalidError, at once).
 */
import { randomBytes } from 'node:crypto';
import { CompactedError, InvalidError, NotFoundError } from '../../core/errors.ts';
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
import {
  checkKey,
  checkRevision,
  checkSelector,
  checkTtl,
  invalid,
  putTxn,
  validateTxn,
} from '../core/validate.ts';
import {
  type EtcdKeyValue,
  type Int64,
  REVISION_OFFSET,
  bytes,
  fromEtcdRevision,
  int,
  keyRange,
  keyRangeAfter,
  keyValue,
} from './codec.ts';
import { Connection } from './connection.ts';
import { ETCD_ERRORS, hasMessage } from './errors.ts';
import { EtcdKeepAlive } from './leases.ts';
import { type EtcdTxnResponse, checkTxnSize, etcdTxn, txnResult } from './txn.ts';
import { type EtcdConfig, parseEtcdUrl } from './url.ts';
import { EtcdWatches } from './watch.ts';

export interface EtcdStoreOptions {
  /** `etcd://…` or `etcds://…` (see url.ts), or the parsed form. */
  url: string | EtcdConfig;
  logger?: Logger;
}

interface Header {
  header: { revision: Int64 } | null;
}

interface EtcdRangeResponse extends Header {
  kvs: EtcdKeyValue[];
  more: boolean;
  count: Int64;
}

/** The key of probe reads (one NUL byte): they only look at revisions, never at its value. */
const PROBE_KEY = Buffer.from([0]);

export class EtcdStore implements Store {
  readonly backend = 'etcd';
  readonly config: EtcdConfig;
  private readonly conn: Connection;
  private readonly log: Logger;
  private readonly watches: EtcdWatches;
  private readonly keepAlives: EtcdKeepAlive;
  /**
   * When this store last sent a renewal (or the grant) of each of its leases that etcd accepted, in
   * `performance.now()` ms, with the TTL: etcd's time to live is whole seconds, truncated; this
   * refines it (see leaseTimeToLive).
   */
  private readonly renewals = new Map<number, { sentAt: number; ttl: number }>();

  constructor(options: EtcdStoreOptions) {
    this.config = typeof options.url === 'string' ? parseEtcdUrl(options.url) : options.url;
    this.log = options.logger ?? silentLogger();
    this.conn = new Connection(this.config, this.log);
    this.watches = new EtcdWatches(this.conn, this.log);
    this.keepAlives = new EtcdKeepAlive(this.conn, this.log);
  }

  /** Watch streams opened so far (tests: a count above 1 means the watches resumed after a break). */
  get watchStreamsOpened(): number {
    return this.watches.streamsOpened;
  }

  // ---- reads ---------------------------------------------------------------------------------

  async get(key: string, options?: { revision?: number }): Promise<KeyValue | undefined> {
    checkKey(key, 'key');
    const result = await this.range(
      { key },
      options?.revision === undefined ? {} : { revision: options.revision },
    );
    return result.kvs[0];
  }

  async range(selector: KeySelector, options: RangeOptions = {}): Promise<RangeResult> {
    this.checkOpen();
    checkSelector(selector, 'selector');
    if (options.after !== undefined && typeof options.after !== 'string')
      throw invalid('after', 'expected a string');
    if (options.limit !== undefined && !(Number.isSafeInteger(options.limit) && options.limit >= 0)) {
      throw invalid('limit', 'expected a non-negative integer');
    }
    checkRevision(options.revision, 'revision');
    const revision = options.revision ?? 0;
    // Nothing can follow `after`: read the probe key instead, for the revision checks and the header.
    const range = keyRangeAfter(selector, options.after);
    const request = {
      ...(range ?? { key: PROBE_KEY }),
      limit: String(options.limit ?? 0),
      count_only: options.countOnly === true,
      revision: revision > 0 ? String(revision + REVISION_OFFSET) : '0',
    };
    let response: EtcdRangeResponse;
    try {
      if (revision === 0) {
        response = await this.conn.unary<EtcdRangeResponse>('KV', 'Range', request, true);
      } else {
        // Etcd still serves the revision just below the compaction (see the file's comment): the
        // probe at the Store revision's own etcd number fails exactly when the Store's read must.
        const txn = await this.conn.unary<EtcdTxnResponse>(
          'KV',
          'Txn',
          {
            success: [
              { request_range: { key: PROBE_KEY, revision: String(revision), count_only: true } },
              { request_range: request },
            ],
          },
          true,
        );
        response = { ...txn.responses[1]!.response_range!, header: txn.header };
      }
    } catch (err) {
      throw await this.readError(err, 'range', revision);
    }
    const current = fromEtcdRevision(response.header?.revision);
    if (range === undefined) return { kvs: [], count: 0, more: false, revision: current };
    return {
      kvs: response.kvs.map(keyValue),
      count: int(response.count, 'count'),
      more: response.more,
      revision: current,
    };
  }

  async status(): Promise<{ revision: number; compactRevision: number; backend: string }> {
    this.checkOpen();
    try {
      // Reading etcd's revision 1 (the empty store) succeeds until something is compacted.
      const response = await this.conn.unary<EtcdRangeResponse>(
        'KV',
        'Range',
        { key: PROBE_KEY, count_only: true, revision: '1' },
        true,
      );
      return {
        revision: fromEtcdRevision(response.header?.revision),
        compactRevision: 0,
        backend: this.backend,
      };
    } catch (err) {
      if (!hasMessage(err, ETCD_ERRORS.compacted)) throw this.conn.fail(err, 'status');
    }
    const compactRevision = await this.compactRevision();
    const response = await this.conn
      .unary<EtcdRangeResponse>('KV', 'Range', { key: PROBE_KEY, count_only: true }, true)
      .catch((err: unknown) => {
        throw this.conn.fail(err, 'status');
      });
    return { revision: fromEtcdRevision(response.header?.revision), compactRevision, backend: this.backend };
  }

  /**
   * etcd's compaction revision. etcd's API has no call for it; a watch from revision 1 is refused
   * with it (etcd checks unsynced watches every 100 ms). Only asked once a read found history compacted.
   */
  private compactRevision(): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      let watcher: Watcher | undefined = undefined;
      const timer = setTimeout(() => {
        watcher?.cancel();
        resolve(0);
      }, this.config.timeoutMs);
      watcher = this.watches.watch(
        { key: PROBE_KEY.toString('utf8'), fromRevision: 1 },
        {
          onEvents() {},
          onError(err) {
            clearTimeout(timer);
            if (err instanceof CompactedError) resolve(err.compactRevision);
            else reject(err);
          },
        },
      );
    });
  }

  /** A read's failure as a Store error: CompactedError with the compaction revision, InvalidError for the future. */
  private async readError(err: unknown, what: string, revision: number): Promise<Error> {
    if (hasMessage(err, ETCD_ERRORS.compacted)) {
      const compactRevision = await this.compactRevision().catch(() => 0);
      return new CompactedError(
        `revision ${revision} was compacted (oldest readable ${compactRevision})`,
        compactRevision,
      );
    }
    if (hasMessage(err, ETCD_ERRORS.futureRevision)) {
      return invalid('revision', `revision ${revision} is in the future`);
    }
    return this.conn.fail(err, what);
  }

  // ---- writes --------------------------------------------------------------------------------

  async put(
    key: string,
    value: string,
    options?: { lease?: number },
  ): Promise<{ revision: number; prevKv?: KeyValue }> {
    this.checkOpen();
    const txn = putTxn(key, value, options?.lease);
    checkTxnSize(txn, this.config.maxRequestBytes);
    await this.watches.settled();
    const response = await this.conn
      .unary<Header & { prev_kv: EtcdKeyValue | null }>(
        'KV',
        'Put',
        { key: bytes(key), value: bytes(value), lease: String(options?.lease ?? 0), prev_kv: true },
        false,
      )
      .catch((err: unknown) => {
        throw this.writeError(err, 'put', options?.lease);
      });
    const revision = fromEtcdRevision(response.header?.revision);
    return response.prev_kv === null ? { revision } : { revision, prevKv: keyValue(response.prev_kv) };
  }

  async delete(selector: KeySelector): Promise<{ revision: number; deleted: number }> {
    this.checkOpen();
    checkSelector(selector, 'selector');
    await this.watches.settled();
    const response = await this.conn
      .unary<Header & { deleted: Int64 }>('KV', 'DeleteRange', keyRange(selector), false)
      .catch((err: unknown) => {
        throw this.writeError(err, 'delete', undefined);
      });
    return {
      revision: fromEtcdRevision(response.header?.revision),
      deleted: int(response.deleted, 'deleted'),
    };
  }

  async txn(request: TxnRequest): Promise<TxnResult> {
    this.checkOpen();
    const txn = validateTxn(request);
    checkTxnSize(txn, this.config.maxRequestBytes);
    const { request: etcdRequest, depth } = etcdTxn(txn);
    await this.watches.settled();
    const response = await this.conn
      .unary<EtcdTxnResponse>('KV', 'Txn', etcdRequest, false)
      .catch((err: unknown) => {
        const lease = [...txn.success, ...txn.failure].find(
          (op) => op.type === 'put' && op.lease !== undefined && op.lease !== 0,
        );
        throw this.writeError(err, 'txn', lease?.type === 'put' ? lease.lease : undefined);
      });
    return txnResult(response, depth, txn);
  }

  private writeError(err: unknown, what: string, lease: number | undefined): Error {
    if (hasMessage(err, ETCD_ERRORS.leaseNotFound)) {
      return new NotFoundError(
        `${what}: lease ${lease ?? ''} does not exist (it expired or was revoked); nothing was written`.replace(
          'lease  ',
          'lease ',
        ),
      );
    }
    return this.conn.fail(err, what);
  }

  // ---- watches -------------------------------------------------------------------------------

  watch(options: WatchOptions, listener: WatchListener): Watcher {
    return this.watches.watch(options, listener);
  }

  // ---- leases --------------------------------------------------------------------------------

  async grantLease(ttlSeconds: number): Promise<LeaseGrant> {
    this.checkOpen();
    checkTtl(ttlSeconds);
    // etcd's TTLs are whole seconds (and at least its minimum, about 1.5 election timeouts).
    const ttl = Math.max(1, Math.ceil(ttlSeconds));
    for (let attempt = 0; ; attempt++) {
      const sentAt = performance.now();
      try {
        const response = await this.conn.unary<{ ID: Int64; TTL: Int64; error: string }>(
          'Lease',
          'LeaseGrant',
          { TTL: String(ttl), ID: String(newLeaseId()) },
          false,
        );
        if (response.error !== '') throw new InvalidError(`etcd refused the lease: ${response.error}`);
        const grant = { id: int(response.ID, 'lease id'), ttlSeconds: int(response.TTL, 'TTL') };
        this.renewals.set(grant.id, { sentAt, ttl: grant.ttlSeconds });
        return grant;
      } catch (err) {
        // A random id already taken: draw another.
        if (attempt < 3 && hasMessage(err, ETCD_ERRORS.leaseExists)) continue;
        throw this.conn.fail(err, 'lease grant');
      }
    }
  }

  async keepAlive(id: number): Promise<LeaseGrant> {
    this.checkOpen();
    checkLeaseId(id);
    const sentAt = performance.now();
    try {
      const grant = await this.keepAlives.keepAlive(id);
      this.renewals.set(id, { sentAt, ttl: grant.ttlSeconds });
      return grant;
    } catch (err) {
      if (err instanceof NotFoundError) this.renewals.delete(id);
      throw err;
    }
  }

  async revokeLease(id: number): Promise<void> {
    this.checkOpen();
    checkLeaseId(id);
    await this.watches.settled();
    this.renewals.delete(id);
    await this.conn.unary('Lease', 'LeaseRevoke', { ID: String(id) }, false).catch((err: unknown) => {
      if (hasMessage(err, ETCD_ERRORS.leaseNotFound)) throw new NotFoundError(`lease ${id} does not exist`);
      throw this.conn.fail(err, 'lease revoke');
    });
  }

  async leaseTimeToLive(
    id: number,
  ): Promise<{ id: number; ttlSeconds: number; remainingSeconds: number; keys: string[] }> {
    this.checkOpen();
    checkLeaseId(id);
    const response = await this.conn
      .unary<{ TTL: Int64; grantedTTL: Int64; keys: Buffer[] }>(
        'Lease',
        'LeaseTimeToLive',
        { ID: String(id), keys: true },
        true,
      )
      .catch((err: unknown) => {
        throw this.conn.fail(err, 'lease time to live');
      });
    const whole = int(response.TTL, 'TTL');
    if (whole < 0) {
      this.renewals.delete(id);
      throw new NotFoundError(`lease ${id} expired or does not exist`);
    }
    // etcd says the lease expires in [whole, whole + 1) seconds. A renewal this store sent at time t
    // moved the expiry to at least t + ttl: the larger of the two lower bounds, within etcd's range.
    let remaining = whole;
    const renewal = this.renewals.get(id);
    if (renewal !== undefined) {
      const local = (renewal.sentAt + renewal.ttl * 1000 - performance.now()) / 1000;
      remaining = Math.round(Math.min(Math.max(whole, local), whole + 1) * 1000) / 1000;
    }
    const keys = response.keys.map((key) => key.toString('utf8')).sort(byteOrder);
    return { id, ttlSeconds: int(response.grantedTTL, 'grantedTTL'), remainingSeconds: remaining, keys };
  }

  // ---- compaction ----------------------------------------------------------------------------

  async compact(revision: number): Promise<void> {
    this.checkOpen();
    if (!Number.isSafeInteger(revision) || revision < 0)
      throw invalid('revision', 'expected a non-negative integer');
    if (revision === 0) return;
    const { revision: current } = await this.status();
    if (revision > current)
      throw invalid('revision', `revision ${revision} is in the future (current ${current})`);
    try {
      // etcd's revision `revision` is the Store's `revision - 1`: kept readable by etcd, refused by
      // this store's reads, and the source of prevKv for the change at `revision`.
      await this.conn.unary('KV', 'Compact', { revision: String(revision), physical: false }, false);
    } catch (err) {
      // Idempotent: at or below the current compaction revision nothing changes.
      if (hasMessage(err, ETCD_ERRORS.compacted)) return;
      if (hasMessage(err, ETCD_ERRORS.futureRevision))
        throw invalid('revision', `revision ${revision} is in the future`);
      throw this.conn.fail(err, 'compact');
    }
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  async close(): Promise<void> {
    if (this.conn.isClosed) return;
    const closed = this.conn.closedError();
    this.watches.close(closed);
    this.keepAlives.close();
    this.conn.close();
  }

  private checkOpen(): void {
    if (this.conn.isClosed) throw this.conn.closedError();
  }
}

function checkLeaseId(id: unknown): asserts id is number {
  if (!(Number.isSafeInteger(id) && (id as number) > 0)) throw invalid('id', 'expected a lease id');
}

/** A random lease id in 1..2^52: exact as a JavaScript number, unlikely to collide. */
function newLeaseId(): number {
  const id = Number(randomBytes(8).readBigUInt64BE() >> 12n);
  return id === 0 ? 1 : id;
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
