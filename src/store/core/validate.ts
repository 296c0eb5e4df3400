/**
 * Checks of what callers hand the Store, shared by every backend so that a bad request is the same
 * InvalidError (with the same field path) whichever backend runs. They run before a write is queued:
 * a refused request never takes a revision. Requests come from inside unum, typed, but the server
 * passes some of them through from the wire, so the checks do not trust the types.
 */
import { InvalidError } from '../../core/errors.ts';
import type { Compare, KeySelector, TxnOp, TxnRequest } from '../types.ts';
import { selectorMatches } from './keys.ts';

/** A transaction after validation: absent lists become empty ones. */
export interface NormalizedTxn {
  compare: Compare[];
  success: TxnOp[];
  failure: TxnOp[];
}

export function invalid(path: string, message: string): InvalidError {
  return new InvalidError(`${path}: ${message}`, { details: { fields: [{ path, message }] } });
}

/** A key is a non-empty, well-formed string (a lone surrogate has no UTF-8 encoding to store). */
export function checkKey(key: unknown, path: string): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) throw invalid(path, 'expected a non-empty string');
  if (!key.isWellFormed()) throw invalid(path, 'expected a well-formed Unicode string');
}

/** Exactly one of `key` and `prefix`; the empty prefix selects every key. */
export function checkSelector(selector: KeySelector | undefined, path: string): void {
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

/** Absent, or a non-negative integer. */
export function checkRevision(revision: unknown, path: string): void {
  if (revision !== undefined && !(Number.isSafeInteger(revision) && (revision as number) >= 0)) {
    throw invalid(path, 'expected a non-negative integer');
  }
}

/** A lease's TTL: a positive number of seconds (fractions allowed, for tests). */
export function checkTtl(ttlSeconds: unknown): asserts ttlSeconds is number {
  if (typeof ttlSeconds !== 'number' || !Number.isFinite(ttlSeconds) || ttlSeconds <= 0) {
    throw invalid('ttlSeconds', 'expected a positive number of seconds');
  }
}

/**
 * The ops of one branch. Refuses, as etcd does, a key put twice or both put and deleted: one
 * revision cannot hold two versions of a key. Backends rely on that (a put may reuse the row its
 * compare read: nothing else in the transaction writes that key).
 */
export function validateOps(ops: unknown, path: string): TxnOp[] {
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

export function validateCompares(compares: unknown): Compare[] {
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

/** Validates a whole transaction request. InvalidError naming the first bad field. */
export function validateTxn(request: TxnRequest): NormalizedTxn {
  if (request === null || typeof request !== 'object') throw invalid('', 'expected a transaction');
  return {
    compare: validateCompares(request.compare),
    success: validateOps(request.success, 'success'),
    failure: validateOps(request.failure, 'failure'),
  };
}

/** A single put as a transaction (`put()` is one), validated. */
export function putTxn(key: string, value: string, lease: number | undefined): NormalizedTxn {
  const op: TxnOp =
    lease === undefined || lease === 0 ? { type: 'put', key, value } : { type: 'put', key, value, lease };
  return { compare: [], success: validateOps([op], 'success'), failure: [] };
}
