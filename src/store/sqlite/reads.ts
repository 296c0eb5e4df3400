/**
 * Reads on the sqlite file: the current state (`kv`), the state at a past revision (`history`), and
 * the history a watch catches up from. Synchronous, on committed state or, inside the write
 * transaction, on the state the batch has built so far (a txn's `get` sees the earlier entries).
 */
import type { SQLInputValue } from 'node:sqlite';
import type { KeySelector, KeyValue, RangeOptions, WatchEvent } from '../types.ts';
import { compareKeys, tombstone } from '../core/keys.ts';
import type { HistoryReader } from '../core/watch-hub.ts';
import {
  kvFromHistory,
  kvFromRow,
  prefixEnd,
  type HistoryRow,
  type KvRow,
  type Statements,
} from './schema.ts';

/** Rows read per step when a watch catches up from history. */
const CATCH_UP_ROWS = 1000;

/** One key now (`revision` undefined) or as of `revision`. */
export function readKey(s: Statements, key: string, revision: number | undefined): KeyValue | undefined {
  if (revision === undefined) {
    const row = s.kvGet.get(key) as unknown as KvRow | undefined;
    return row === undefined ? undefined : kvFromRow(row);
  }
  const row = s.historyKeyAt.get(key, revision) as unknown as HistoryRow | undefined;
  return row === undefined || row[5] === 0 ? undefined : kvFromHistory(row);
}

/** Reads the kv table (current state) or, with `revision`, history. Options are validated. */
export function readRange(
  s: Statements,
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
    const kv = readKey(s, selector.key, revision);
    const count = kv === undefined ? 0 : 1;
    return { kvs: kv === undefined || options.countOnly === true ? [] : [kv], count, more: false };
  }
  // Start strictly after `after` when it is inside or past the prefix, else at the prefix.
  const strict = after !== undefined && compareKeys(after, selector.prefix) >= 0;
  const low = strict ? after : selector.prefix;
  const high = prefixEnd(selector.prefix);
  const pick = current ? (strict ? s.kvRangeGt : s.kvRangeGe) : strict ? s.historyRangeGt : s.historyRangeGe;
  const counter = current
    ? strict
      ? s.kvCountGt
      : s.kvCountGe
    : strict
      ? s.historyCountGt
      : s.historyCountGe;
  const params: SQLInputValue[] = revision === undefined ? [low, high] : [low, high, revision];
  if (options.countOnly === true) {
    const row = counter.get(...params) as unknown as [number];
    return { kvs: [], count: row[0], more: false };
  }
  const rows = pick.all(...params, limit > 0 ? limit + 1 : -1) as unknown as KvRow[];
  const more = limit > 0 && rows.length > limit;
  if (more) rows.length = limit;
  let count = rows.length;
  if (more) count = (counter.get(...params) as unknown as [number])[0];
  return { kvs: rows.map(kvFromRow), count, more };
}

/**
 * The watch hub's view of the `history` table. A step reads at most CATCH_UP_ROWS rows and ends on a
 * whole revision: the last revision of a full step is dropped (read next time), unless it is the only
 * one, which is then read whole however big it is.
 */
export class SqliteHistory implements HistoryReader {
  private readonly s: Statements;
  private readonly state: { readonly revision: number; readonly compactRevision: number };

  constructor(s: Statements, state: { readonly revision: number; readonly compactRevision: number }) {
    this.s = s;
    this.state = state;
  }

  currentRevision(): number {
    return this.state.revision;
  }

  compactRevision(): number {
    return this.state.compactRevision;
  }

  readHistory(
    selector: KeySelector,
    from: number,
    to: number,
    withPrevKv: boolean,
  ): { events: WatchEvent[]; upTo: number } {
    const s = this.s;
    const { key, prefix } = selector;
    const high = prefix === undefined ? undefined : prefixEnd(prefix);
    let rows: HistoryRow[] =
      key !== undefined
        ? (s.historyKeyFrom.all(key, from, to, CATCH_UP_ROWS) as unknown as HistoryRow[])
        : (s.historyPrefixFrom.all(prefix!, high!, from, to, CATCH_UP_ROWS) as unknown as HistoryRow[]);
    let upTo = to;
    if (rows.length === CATCH_UP_ROWS) {
      const first = rows[0]![0];
      const last = rows[rows.length - 1]![0];
      if (last > first) {
        while (rows[rows.length - 1]![0] === last) rows.pop();
        upTo = last - 1;
      } else {
        // One key has one row per revision, so only a prefix can have more in this revision.
        rows =
          key !== undefined ? rows : (s.historyPrefixAt.all(prefix!, high!, last) as unknown as HistoryRow[]);
        upTo = last;
      }
    }
    const events: WatchEvent[] = [];
    for (const row of rows) {
      const deleted = row[5] === 0;
      const kv = deleted ? tombstone(row[2], row[0]) : kvFromHistory(row);
      let prevKv: KeyValue | undefined;
      if (withPrevKv) {
        const prev = s.historyPrev.get(row[2], row[0]) as unknown as HistoryRow | undefined;
        if (prev !== undefined && prev[5] !== 0) prevKv = kvFromHistory(prev);
      }
      events.push(
        prevKv === undefined
          ? { type: deleted ? 'delete' : 'put', kv }
          : { type: deleted ? 'delete' : 'put', kv, prevKv },
      );
    }
    return { events, upTo };
  }
}
