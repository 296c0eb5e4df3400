/**
 * Between the Store's values and etcd's messages: keys and ranges as bytes, int64 fields (decimal
 * strings from the decoder) to numbers with a range check, and the one-off revision numbering.
 *
 * Revisions: etcd counts its empty state as revision 1, the Store as 0 (its first write is
 * revision 1). So a Store revision is etcd's minus one, everywhere a revision is a point in the
 * history (a response header, a key's create and mod revision, a read's `revision`, a watch's
 * start). `etcdctl` shows the same keys with revisions one higher.
 */
import { InternalError } from '../../core/errors.ts';
import type { KeySelector, KeyValue } from '../types.ts';

/** etcd's revision for a Store revision (> 0) and back. */
export const REVISION_OFFSET = 1;

/** The etcd wire's int64, as decoded (a decimal string) or as a number. */
export type Int64 = string | number;

/** An int64 as a number; InternalError if it does not fit exactly (never for revisions or unum's lease ids). */
export function int(value: Int64 | null | undefined, what: string): number {
  if (value === null || value === undefined) return 0;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isSafeInteger(n)) {
    throw new InternalError(`etcd returned ${what} ${String(value)}, outside JavaScript's exact integers`);
  }
  return n;
}

/** A Store revision from etcd's (0 stays 0: "none"). */
export function fromEtcdRevision(value: Int64 | null | undefined, what = 'revision'): number {
  const n = int(value, what);
  return n <= 0 ? 0 : n - REVISION_OFFSET;
}

export interface EtcdKeyValue {
  key: Buffer;
  value: Buffer;
  create_revision: Int64;
  mod_revision: Int64;
  version: Int64;
  lease: Int64;
}

export function keyValue(kv: EtcdKeyValue): KeyValue {
  return {
    key: kv.key.toString('utf8'),
    value: kv.value.toString('utf8'),
    createRevision: fromEtcdRevision(kv.create_revision, 'create_revision'),
    modRevision: fromEtcdRevision(kv.mod_revision, 'mod_revision'),
    version: int(kv.version, 'version'),
    lease: int(kv.lease, 'lease'),
  };
}

export function bytes(s: string): Buffer {
  return Buffer.from(s, 'utf8');
}

/**
 * The smallest key greater than every key starting with `prefix`, as etcd's clientv3 computes it:
 * the prefix's bytes with the last byte below 0xff incremented and what follows it dropped. `\0`
 * (every key up to the end) when the prefix is empty or all 0xff bytes.
 */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/**
 * `[key, range_end)` for a selector; an empty prefix is every key (`\0`, `\0`). A single key has no
 * `range_end` at all: the encoder writes a field that is present even when empty, and etcd reads
 * an empty `range_end` that is present as a range, not as one key.
 */
export interface KeyRange {
  key: Buffer;
  range_end?: Buffer;
}

export function keyRange(selector: KeySelector): KeyRange {
  if (selector.key !== undefined) return { key: bytes(selector.key) };
  if (selector.prefix === '') return { key: Buffer.from([0]), range_end: Buffer.from([0]) };
  const key = bytes(selector.prefix);
  return { key, range_end: prefixEnd(key) };
}

/**
 * The range of a selector restricted to keys strictly after `after` (paging), or undefined when
 * nothing can be left. The key right after `after` in byte order is `after` + `\0`.
 */
export function keyRangeAfter(selector: KeySelector, after: string | undefined): KeyRange | undefined {
  const range = keyRange(selector);
  if (after === undefined) return range;
  const next = Buffer.concat([bytes(after), Buffer.from([0])]);
  if (selector.key !== undefined) return Buffer.compare(range.key, next) >= 0 ? range : undefined;
  const end = range.range_end!;
  const start = Buffer.compare(next, range.key) > 0 ? next : range.key;
  const unbounded = end.length === 1 && end[0] === 0;
  if (!unbounded && Buffer.compare(start, end) >= 0) return undefined;
  // A single-key range must keep an explicit end, or etcd would read it as `start` alone.
  return { key: start, range_end: end };
}

/** A string's size in UTF-8 bytes, as it goes on the wire. */
export function byteLength(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}
