/**
 * The watch hub, etcd's "watchable store" without the storage: it registers watches (a key or a
 * prefix, and the revision to start from), catches each one up from the backend's history, then
 * feeds it the events of every commit the backend publishes. Backend-neutral: all it needs is a
 * `HistoryReader` and a call to `publish` after each commit.
 *
 * ```
 * watch() ─► catching up: history read a step per immediate ─► live: publish() pushes matching events
 *                      └─ start below the compaction revision: ends with CompactedError
 * ```
 *
 * Guarantees (see WatchListener in ../types.ts): whole revisions, in revision order, no gap and no
 * duplicate, never delivered from inside `watch()` or from the write that caused them. No gap: each
 * catch-up step reads history up to the revision committed at that moment, and the switch to live
 * happens in the same tick as the check that history is exhausted, so no commit falls between the
 * two. Delivery is unbounded (no slow-watcher cancellation yet); event objects are shared between
 * watches and must be treated as read-only.
 */
import { CompactedError, UnavailableError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { KeySelector, WatchEvent, WatchListener, WatchOptions, Watcher } from '../types.ts';
import { checkRevision, checkSelector, invalid } from './validate.ts';

/** The events one revision committed, with each key's value before when known. */
export interface RevisionEvents {
  revision: number;
  events: WatchEvent[];
}

/** What the hub reads from a backend. Called from an immediate, never inside a commit. */
export interface HistoryReader {
  /** The newest committed revision. */
  currentRevision(): number;
  /** The oldest readable revision: a watch from below it ends with CompactedError. */
  compactRevision(): number;
  /**
   * The changes to the keys `selector` picks at revisions `from`..`to` (committed, and not below the
   * compaction revision), in revision order, with `prevKv` when `withPrevKv`. It may return fewer
   * revisions than asked to keep a step short, but only whole ones: `upTo` is the last revision
   * covered (`from` <= `upTo` <= `to`), and the next step starts at `upTo + 1`.
   */
  readHistory(
    selector: KeySelector,
    from: number,
    to: number,
    withPrevKv: boolean,
  ): { events: WatchEvent[]; upTo: number };
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
      // A listener's bug must not end the watch or reach the commit that fed it.
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

export class WatchHub {
  private readonly history: HistoryReader;
  private readonly log: Logger;
  /** Live watches on one key, by key: a commit finds them without scanning every watch. */
  private readonly keyWatches = new Map<string, Set<WatchStream>>();
  /** Live watches on a prefix. */
  private readonly prefixWatches = new Set<WatchStream>();
  private liveCount = 0;
  /** Every watch not ended, live or catching up. */
  private readonly watches = new Set<WatchStream>();
  private closedWith: Error | undefined;

  constructor(history: HistoryReader, log: Logger) {
    this.history = history;
    this.log = log;
  }

  /**
   * Whether any watch is live. A backend builds event objects for a commit only then: with no
   * watcher, a write allocates nothing for watches.
   */
  get hasLiveWatches(): boolean {
    return this.liveCount > 0;
  }

  /** Watches not ended (live or catching up). */
  get size(): number {
    return this.watches.size;
  }

  /** Store.watch: InvalidError for a bad selector, revision or listener; the rest goes to the listener. */
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
      from > 0 ? from : this.history.currentRevision() + 1,
      (w) => this.remove(w),
      this.log,
    );
    if (this.closedWith !== undefined) {
      stream.fail(this.closedWith);
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

  /**
   * Hands a commit's events to the live watches, delivered from a microtask (so never from inside
   * the write's own call). `revisions` are in increasing order and follow every revision published
   * before; the backend calls this right after the commit, in the same tick.
   */
  publish(revisions: RevisionEvents[]): void {
    if (revisions.length === 0) return;
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

  /** Ends every watch with `err` (UnavailableError when the store closes); later watches get it too. */
  close(err: Error = new UnavailableError('store is closed')): void {
    this.closedWith ??= err;
    for (const stream of [...this.watches]) stream.fail(err);
  }

  private goLive(stream: WatchStream): void {
    stream.state = 'live';
    this.liveCount++;
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

  private remove(stream: WatchStream): void {
    if (!this.watches.delete(stream)) return;
    const key = stream.selector.key;
    if (key !== undefined) {
      const set = this.keyWatches.get(key);
      if (set?.delete(stream) === true) {
        this.liveCount--;
        if (set.size === 0) this.keyWatches.delete(key);
      }
    } else if (this.prefixWatches.delete(stream)) {
      this.liveCount--;
    }
  }

  /**
   * One catch-up step: history from `stream.nextRevision` up to the current revision (or as far as
   * the reader goes in one step), then the next step on an immediate, or live.
   */
  private catchUp(stream: WatchStream): void {
    if (stream.state !== 'catch-up' || this.closedWith !== undefined) return;
    const compactRevision = this.history.compactRevision();
    if (stream.nextRevision < compactRevision) {
      stream.fail(
        new CompactedError(
          `watch from revision ${stream.nextRevision}: compacted (oldest readable ${compactRevision})`,
          compactRevision,
        ),
      );
      return;
    }
    const current = this.history.currentRevision();
    if (stream.nextRevision > current) {
      this.goLive(stream);
      return;
    }
    const { events, upTo } = this.history.readHistory(
      stream.selector,
      stream.nextRevision,
      current,
      stream.wantPrevKv,
    );
    stream.nextRevision = upTo + 1;
    if (events.length > 0) stream.emit(events);
    // The listener may have cancelled, or closed the store.
    if (stream.state !== 'catch-up' || this.closedWith !== undefined) return;
    if (stream.nextRevision > this.history.currentRevision()) this.goLive(stream);
    else setImmediate(() => this.catchUp(stream));
  }
}
