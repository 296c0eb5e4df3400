/**
 * Key helpers every backend shares. Keys sort in code point order, which is UTF-8 byte order: the
 * order SQLite's BINARY collation and etcd both use, so `range` pages the same way on every backend.
 */
import type { KeySelector, KeyValue } from '../types.ts';

/** Byte-order (= code point order) comparison of two keys. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Whether `selector` picks `key`. */
export function selectorMatches(selector: KeySelector, key: string): boolean {
  return selector.key !== undefined ? selector.key === key : key.startsWith(selector.prefix);
}

/** The kv a delete event carries: the key, the deletion's revision, and nothing else. */
export function tombstone(key: string, revision: number): KeyValue {
  return { key, value: '', createRevision: 0, modRevision: revision, version: 0, lease: 0 };
}
