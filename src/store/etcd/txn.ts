/**
 * A Store transaction as etcd's TxnRequest, and etcd's TxnResponse back.
 *
 * Compares on `mod` and `create` are revisions: the Store's number is etcd's minus one, except 0
 * ("the key does not exist"), which is 0 for both. Compares hold for whole numbers only on etcd's
 * side (int64), so a fractional operand is rounded in the direction that keeps the comparison's
 * meaning.
 *
 * A value `!=` compare holds on a missing key in the Store (as a `!=` on any other target does),
 * but etcd evaluates every value compare on a missing key as false. Such a compare becomes a
 * nested transaction, which etcd has had since 3.3:
 *
 * ```
 * if version(k) = 0                 -- k is missing: the compare holds; the others decide
 *   then txn { others } then S else F
 *   else txn { others, value(k) != v } then S else F
 * ```
 *
 * and the result is read from the innermost transaction (`depth` levels down).
 */
import { InvalidError } from '../../core/errors.ts';
import type { Compare, KeyValue, TxnOp, TxnOpResult, TxnResult } from '../types.ts';
import type { NormalizedTxn } from '../core/validate.ts';
import {
  type EtcdKeyValue,
  type Int64,
  REVISION_OFFSET,
  byteLength,
  bytes,
  fromEtcdRevision,
  int,
  keyRange,
  keyValue,
} from './codec.ts';

interface EtcdRangeResponse {
  kvs: EtcdKeyValue[];
  more: boolean;
  count: Int64;
}

interface EtcdResponseOp {
  response_range: EtcdRangeResponse | null;
  response_put: { prev_kv: EtcdKeyValue | null } | null;
  response_delete_range: { deleted: Int64 } | null;
  response_txn: EtcdTxnResponse | null;
}

export interface EtcdTxnResponse {
  header: { revision: Int64 } | null;
  succeeded: boolean;
  responses: EtcdResponseOp[];
}

interface EtcdTxnRequest {
  compare: object[];
  success: object[];
  failure: object[];
}

const RESULT = { '=': 'EQUAL', '!=': 'NOT_EQUAL', '<': 'LESS', '>': 'GREATER' } as const;
const FIELD = { mod: 'mod_revision', create: 'create_revision', version: 'version', lease: 'lease' } as const;

/** The integer etcd compares with, for a Store operand. */
function operand(compare: Exclude<Compare, { target: 'value' }>): number {
  let value = compare.value;
  if (!Number.isInteger(value)) {
    if (compare.op === '<') value = Math.ceil(value);
    else if (compare.op === '>') value = Math.floor(value);
    // No key has a fractional revision, version or lease: `=` never holds, `!=` always does.
    else value = -1;
  }
  if ((compare.target === 'mod' || compare.target === 'create') && value > 0) value += REVISION_OFFSET;
  return value;
}

function etcdCompare(compare: Compare): object {
  const key = bytes(compare.key);
  if (compare.target === 'value') {
    return { key, target: 'VALUE', result: RESULT[compare.op], value: bytes(compare.value) };
  }
  return {
    key,
    target: compare.target.toUpperCase(),
    result: RESULT[compare.op],
    [FIELD[compare.target]]: String(operand(compare)),
  };
}

function etcdOp(op: TxnOp): object {
  switch (op.type) {
    case 'put':
      return {
        request_put: {
          key: bytes(op.key),
          value: bytes(op.value),
          lease: String(op.lease ?? 0),
          prev_kv: true,
        },
      };
    case 'delete':
      return { request_delete_range: keyRange(op) };
    case 'get':
      return { request_range: keyRange(op) };
  }
}

/** `compares` with each value `!=` compare made exact on missing keys (see the file's comment). */
function build(
  compares: Array<{ compare: Compare; exact: boolean }>,
  success: object[],
  failure: object[],
): { request: EtcdTxnRequest; depth: number } {
  const at = compares.findIndex((c) => !c.exact && c.compare.target === 'value' && c.compare.op === '!=');
  if (at === -1)
    return { request: { compare: compares.map((c) => etcdCompare(c.compare)), success, failure }, depth: 0 };
  const subject = compares[at]!;
  const others = compares.filter((_, i) => i !== at);
  const missing = build(others, success, failure);
  const present = build(
    compares.map((c, i) => (i === at ? { compare: c.compare, exact: true } : c)),
    success,
    failure,
  );
  return {
    request: {
      compare: [{ key: bytes(subject.compare.key), target: 'VERSION', result: 'EQUAL', version: '0' }],
      success: [{ request_txn: missing.request }],
      failure: [{ request_txn: present.request }],
    },
    depth: Math.max(missing.depth, present.depth) + 1,
  };
}

export function etcdTxn(txn: NormalizedTxn): { request: EtcdTxnRequest; depth: number } {
  return build(
    txn.compare.map((compare) => ({ compare, exact: false })),
    txn.success.map(etcdOp),
    txn.failure.map(etcdOp),
  );
}

/** The Store's result from etcd's response, `depth` nested transactions down. */
export function txnResult(response: EtcdTxnResponse, depth: number, txn: NormalizedTxn): TxnResult {
  const revision = fromEtcdRevision(response.header?.revision);
  let inner = response;
  for (let level = 0; level < depth; level++) {
    const nested = inner.responses[0]?.response_txn;
    if (nested === null || nested === undefined) break;
    inner = nested;
  }
  const ops = inner.succeeded ? txn.success : txn.failure;
  const results: TxnOpResult[] = inner.responses.map((response, i) => {
    const op = ops[i]!;
    if (op.type === 'put') {
      const prev = response.response_put?.prev_kv ?? null;
      return prev === null ? { type: 'put' } : { type: 'put', prevKv: keyValue(prev) };
    }
    if (op.type === 'delete')
      return { type: 'delete', deleted: int(response.response_delete_range?.deleted, 'deleted') };
    const kvs: KeyValue[] = (response.response_range?.kvs ?? []).map(keyValue);
    return { type: 'get', kvs };
  });
  return { succeeded: inner.succeeded, revision, results };
}

/** Bytes a request's keys and values take, plus a little for each field's framing. */
function estimate(txn: NormalizedTxn): number {
  let size = 16;
  for (const c of txn.compare)
    size += 24 + byteLength(c.key) + (c.target === 'value' ? byteLength(c.value) : 0);
  for (const op of [...txn.success, ...txn.failure]) {
    size += 24;
    if (op.type === 'put') size += byteLength(op.key) + byteLength(op.value);
    else size += 2 * byteLength(op.key ?? op.prefix);
  }
  return size;
}

function mib(n: number): string {
  return `${(n / 1_048_576).toFixed(2)} MiB`;
}

/**
 * InvalidError at once when a write is bigger than the members accept (`--max-request-bytes`):
 * etcd would refuse it anyway, after it crossed the network.
 */
export function checkTxnSize(txn: NormalizedTxn, maxRequestBytes: number): void {
  const size = estimate(txn);
  if (size < maxRequestBytes) return;
  const big = [...txn.success, ...txn.failure].find(
    (op) => op.type === 'put' && byteLength(op.value) > maxRequestBytes / 2,
  );
  const where =
    big?.type === 'put'
      ? ` (the value of ${JSON.stringify(big.key)} alone is ${mib(byteLength(big.value))})`
      : '';
  throw new InvalidError(
    `the write is ${mib(size)}${where}, more than etcd accepts in one request (${mib(maxRequestBytes)}, ` +
      `its --max-request-bytes): store smaller values, or raise --max-request-bytes on every etcd member ` +
      `and max-request-bytes= in the store URL`,
    { details: { fields: [{ path: 'value', message: `larger than ${maxRequestBytes} bytes` }] } },
  );
}
