/**
 * Watches over etcd's Watch stream: every watch of the store shares one bidirectional stream, and
 * that stream is re-established, on the next member, whenever it breaks (a member killed or
 * restarted, a leader lost, a network cut). Each watch then resumes from the revision after the
 * last one it delivered, so that nothing is lost and nothing is delivered twice.
 *
 * ```
 * watch() ─► entry {range, next} ─► create (watch_id = ours, start_revision) ─► events ─► filter < next ─► onEvents
 *                                       ▲                                                              │ next = last + 1
 *                                       └── stream broke: back off, reopen, create every entry again ◄─┘
 * ```
 *
 * `next` is the first Store revision the watch still owes its listener. The etcd watch starts one
 * revision earlier than `next` and drops that revision's events: etcd refuses a start revision below
 * its compaction revision, and the Store's compaction revision is etcd's (see codec.ts), so the
 * start one earlier makes etcd's check the Store's. It also gives the first change its `prevKv` (etcd
 * reads it at the revision before the change, which must not be compacted).
 *
 * A watch without `fromRevision` starts at etcd's "now"; its `next` is set from the created
 * response's revision. etcd never splits a revision between responses (without `fragment`), so
 * each response is delivered as one call of whole revisions.
 */
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { CompactedError, UnavailableError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { KeySelector, WatchEvent, WatchListener, WatchOptions, Watcher } from '../types.ts';
import { checkRevision, checkSelector, invalid } from '../core/validate.ts';
import {
  type EtcdKeyValue,
  type Int64,
  type KeyRange,
  fromEtcdRevision,
  int,
  keyRange,
  keyValue,
} from './codec.ts';
import type { Connection } from './connection.ts';

interface EtcdEvent {
  type: 'PUT' | 'DELETE';
  kv: EtcdKeyValue;
  prev_kv: EtcdKeyValue | null;
}

interface EtcdWatchResponse {
  header: { revision: Int64 } | null;
  watch_id: Int64;
  created: boolean;
  canceled: boolean;
  compact_revision: Int64;
  cancel_reason: string;
  events: EtcdEvent[];
}

class WatchEntry implements Watcher {
  id: number;
  readonly range: KeyRange;
  readonly prevKv: boolean;
  readonly listener: WatchListener;
  /** The first Store revision not yet delivered; undefined until a "now" watch is created. */
  next: number | undefined;
  /** Whether the current stream has created it. */
  created = false;
  /**
   * A watch without `fromRevision`, started after the newest revision the store had seen (rather
   * than at etcd's "now", which a write sent right after `watch()` could overtake).
   */
  fromSeen = false;
  ended = false;
  private readonly onCancel: (entry: WatchEntry) => void;

  constructor(
    id: number,
    selector: KeySelector,
    options: { prevKv: boolean; next: number | undefined },
    listener: WatchListener,
    onCancel: (entry: WatchEntry) => void,
  ) {
    this.id = id;
    this.range = keyRange(selector);
    this.prevKv = options.prevKv;
    this.next = options.next;
    this.listener = listener;
    this.onCancel = onCancel;
  }

  cancel(): void {
    if (this.ended) return;
    this.ended = true;
    this.onCancel(this);
  }

  fail(err: Error, log: Logger): void {
    if (this.ended) return;
    this.ended = true;
    try {
      this.listener.onError?.(err);
    } catch (thrown) {
      log.error({ err: thrown }, 'a watch listener threw from onError');
    }
  }
}

const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 2000;

export class EtcdWatches {
  private readonly conn: Connection;
  private readonly log: Logger;
  private readonly entries = new Map<number, WatchEntry>();
  private nextId = 1;
  private stream: ClientDuplexStream<unknown, unknown> | undefined;
  private opening = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private backoffMs = RECONNECT_MIN_MS;
  private closedWith: Error | undefined;
  private readonly settledWaiters: Array<() => void> = [];
  /** Streams opened, for tests: more than one means the watches were resumed after a break. */
  streamsOpened = 0;

  constructor(conn: Connection, log: Logger) {
    this.conn = conn;
    this.log = log;
  }

  watch(options: WatchOptions, listener: WatchListener): Watcher {
    checkSelector(options, 'watch');
    checkRevision(options.fromRevision, 'fromRevision');
    if (typeof listener?.onEvents !== 'function') throw invalid('listener.onEvents', 'expected a function');
    const selector: KeySelector =
      options.key !== undefined ? { key: options.key } : { prefix: options.prefix };
    const from =
      options.fromRevision !== undefined && options.fromRevision > 0 ? options.fromRevision : undefined;
    const entry = new WatchEntry(
      this.nextId++,
      selector,
      { prevKv: options.prevKv === true, next: from },
      listener,
      (e) => this.cancel(e),
    );
    if (this.closedWith !== undefined) {
      const err = this.closedWith;
      // Never from inside watch().
      setImmediate(() => entry.fail(err, this.log));
      return entry;
    }
    if (from === undefined && this.conn.observedRevision > 0) {
      // Every write this store sends from now on commits after the newest revision it has seen.
      entry.next = fromEtcdRevision(this.conn.observedRevision) + 1;
      entry.fromSeen = true;
    }
    this.entries.set(entry.id, entry);
    if (this.stream !== undefined) this.create(entry);
    else this.open();
    return entry;
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Settles once every watch started at etcd's "now" is created (or the stream broke): a write
   * waits for it, so that a watch sees every write sent after `watch()` returned. Undefined when
   * there is nothing to wait for (the usual case: see `fromSeen`).
   */
  settled(): Promise<void> | undefined {
    if (!this.hasUnstartedNow()) return undefined;
    return new Promise<void>((resolve) => this.settledWaiters.push(resolve));
  }

  private hasUnstartedNow(): boolean {
    if (this.stream === undefined && !this.opening) return false;
    for (const entry of this.entries.values()) if (entry.next === undefined) return true;
    return false;
  }

  private wakeSettled(): void {
    if (this.settledWaiters.length === 0 || this.hasUnstartedNow()) return;
    for (const resolve of this.settledWaiters.splice(0)) resolve();
  }

  /** Ends every watch with `err` (UnavailableError: the store closed) and the stream. */
  close(err: Error): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = err;
    clearTimeout(this.reconnectTimer);
    const stream = this.stream;
    this.stream = undefined;
    stream?.cancel();
    const entries = [...this.entries.values()];
    this.entries.clear();
    this.wakeSettled();
    setImmediate(() => {
      for (const entry of entries) entry.fail(err, this.log);
    });
  }

  private cancel(entry: WatchEntry): void {
    this.entries.delete(entry.id);
    this.wakeSettled();
    if (this.stream !== undefined && entry.created) {
      this.stream.write({ cancel_request: { watch_id: String(entry.id) } });
    }
  }

  private create(entry: WatchEntry): void {
    entry.created = false;
    this.stream?.write({
      create_request: {
        ...entry.range,
        // One revision early (see the file's comment); 0 is etcd's "now".
        start_revision: entry.next === undefined ? '0' : String(entry.next),
        prev_kv: entry.prevKv,
        progress_notify: true,
        watch_id: String(entry.id),
      },
    });
  }

  private open(): void {
    if (this.opening || this.stream !== undefined || this.closedWith !== undefined) return;
    this.opening = true;
    const endpoint = this.conn.endpoint;
    this.conn
      .duplex('Watch', 'Watch')
      .then((stream) => {
        this.opening = false;
        if (this.closedWith !== undefined) {
          stream.cancel();
          return;
        }
        this.stream = stream;
        this.streamsOpened++;
        stream.on('data', (response: EtcdWatchResponse) => this.onResponse(response));
        stream.on('error', (err: Error) => this.broken(stream, endpoint, err));
        stream.on('end', () => this.broken(stream, endpoint, new Error('the watch stream ended')));
        for (const entry of this.entries.values()) this.create(entry);
      })
      .catch((err: unknown) => {
        this.opening = false;
        this.broken(undefined, endpoint, err as Error);
        this.wakeSettled();
      });
  }

  private broken(
    stream: ClientDuplexStream<unknown, unknown> | undefined,
    endpoint: string,
    err: Error,
  ): void {
    if (stream !== undefined && stream !== this.stream) return;
    this.stream = undefined;
    if (this.closedWith !== undefined) return;
    this.log.warn({ err: err.message, endpoint }, 'etcd: the watch stream broke; resuming the watches');
    this.conn.failedOver(endpoint);
    for (const entry of this.entries.values()) entry.created = false;
    this.wakeSettled();
    if (this.entries.size === 0) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.open(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, RECONNECT_MAX_MS);
  }

  private onResponse(response: EtcdWatchResponse): void {
    const id = int(response.watch_id, 'watch_id');
    const entry = this.entries.get(id);
    if (entry === undefined || entry.ended) {
      // Canceled before etcd created it: cancel it there too.
      if (response.created && !response.canceled)
        this.stream?.write({ cancel_request: { watch_id: String(id) } });
      return;
    }
    if (response.created) {
      entry.created = true;
      this.backoffMs = RECONNECT_MIN_MS;
      // A "now" watch receives the changes after the revision current at its creation.
      entry.next ??= fromEtcdRevision(response.header?.revision) + 1;
      this.wakeSettled();
    }
    this.conn.observe(response.header?.revision);
    if (response.canceled) {
      this.entries.delete(entry.id);
      const compactRevision = int(response.compact_revision, 'compact_revision');
      if (compactRevision > 0 && entry.fromSeen) {
        // The revision this store saw last is already compacted: start at etcd's "now" instead.
        entry.fromSeen = false;
        entry.next = undefined;
        entry.id = this.nextId++;
        this.entries.set(entry.id, entry);
        this.create(entry);
        return;
      }
      if (compactRevision > 0) {
        entry.fail(
          new CompactedError(
            `watch from revision ${entry.next ?? 0}: that revision was compacted (oldest readable ${compactRevision})`,
            compactRevision,
          ),
          this.log,
        );
      } else {
        entry.fail(
          new UnavailableError(`etcd canceled the watch: ${response.cancel_reason || 'no reason given'}`),
          this.log,
        );
      }
      return;
    }
    if (response.events.length === 0) {
      // A progress notification: every later event has a higher revision than the header's.
      if (!response.created && entry.next !== undefined && response.header !== null) {
        entry.next = Math.max(entry.next, fromEtcdRevision(response.header.revision) + 1);
      }
      return;
    }
    const next = entry.next ?? 0;
    const events: WatchEvent[] = [];
    for (const event of response.events) {
      const kv = keyValue(event.kv);
      if (kv.modRevision < next) continue;
      const out: WatchEvent = { type: event.type === 'DELETE' ? 'delete' : 'put', kv };
      if (entry.prevKv && event.prev_kv !== null) out.prevKv = keyValue(event.prev_kv);
      events.push(out);
    }
    if (events.length === 0) return;
    entry.next = events[events.length - 1]!.kv.modRevision + 1;
    entry.fromSeen = false;
    try {
      entry.listener.onEvents(events);
    } catch (err) {
      this.log.error({ err }, 'a watch listener threw; the watch goes on');
    }
  }
}
