/**
 * Compare evaluation, as etcd's txn does it: pure functions over the current kv of each key, so a
 * backend that evaluates compares itself (sqlite, inside its write transaction) and a test get the
 * same answer. A missing key has mod, create, version and lease 0 and no value.
 */
import type { Compare, KeyValue } from '../types.ts';

/** Whether `compare` holds for a key whose current kv is `kv` (undefined: the key does not exist). */
export function compareHolds(compare: Compare, kv: KeyValue | undefined): boolean {
  if (compare.target === 'value') {
    const equal = kv !== undefined && kv.value === compare.value;
    return compare.op === '=' ? equal : !equal;
  }
  let actual = 0;
  if (kv !== undefined) {
    switch (compare.target) {
      case 'mod':
        actual = kv.modRevision;
        break;
      case 'create':
        actual = kv.createRevision;
        break;
      case 'version':
        actual = kv.version;
        break;
      case 'lease':
        actual = kv.lease;
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

/**
 * Whether every compare holds; stops at the first that does not. `lookup` returns a key's current
 * kv; it is called once per run of compares on the same key (several compares on one key are
 * common: `mod = R` and `value = V`).
 */
export function evaluateCompares(
  compares: readonly Compare[],
  lookup: (key: string) => KeyValue | undefined,
): boolean {
  let key: string | undefined;
  let kv: KeyValue | undefined;
  for (const compare of compares) {
    if (compare.key !== key) {
      key = compare.key;
      kv = lookup(key);
    }
    if (!compareHolds(compare, kv)) return false;
  }
  return true;
}
