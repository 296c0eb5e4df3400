/**
 * Explains a violation found on one key: which few operations cannot be ordered, and in words what
 * went wrong ("stale read: …").
 *
 * 1. The earliest failing prefix. Cut the history at time t: operations invoked later are dropped,
 *    operations still running at t get an unknown outcome. A linearizable history has linearizable
 *    prefixes, so a binary search over completion times finds the first t that fails; the operation
 *    completing at t (the culprit) is the one that could not be linearized.
 * 2. The essential operations. Each other operation is weakened to an unknown outcome (in chunks,
 *    halving, as delta debugging does) and kept weakened if the prefix still fails. Weakening rather
 *    than removing keeps every write available as a possible source of a value, so the explanation of
 *    a stale read is never turned into "a value nobody wrote". What is left firm cannot be ordered
 *    even if every other operation on the key may or may not have taken effect, at any time.
 */
import { formatOperation, type Operation, type Value } from './history.ts';
import type { Model } from './register.ts';
import { searchKey } from './wgl.ts';

export type ViolationKind =
  'stale-read' | 'value-never-written' | 'value-from-the-future' | 'impossible-cas' | 'unorderable';

export interface Explanation {
  kind: ViolationKind;
  /** The operation that could not be linearized: the first whose completion made the history fail. */
  culprit: Operation;
  /** The operations that cannot be ordered together, the culprit among them, by invocation time. */
  operations: Operation[];
  /** A paragraph for a person: the kind in words, then the operations, one per line. */
  text: string;
}

export function explainViolation<S>(
  model: Model<S>,
  key: string,
  operations: readonly Operation[],
  maxSteps: number,
): Explanation {
  const fails = (ops: readonly Operation[]) => searchKey(model, ops, maxSteps).verdict === 'violation';

  const times = [...new Set(operations.flatMap((o) => (o.complete === undefined ? [] : [o.complete])))];
  times.sort((a, b) => a - b);
  let low = 0;
  let high = times.length - 1;
  // Invariant: the prefix at times[high] fails (the whole history does, or we were not called).
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (fails(prefix(operations, times[mid]!))) high = mid;
    else low = mid + 1;
  }
  const cut = times[high] ?? Infinity;
  let ops = prefix(operations, cut);
  const culpritIndex = ops.findIndex((o) => o.complete === cut);

  let candidates = ops.flatMap((o, i) => (o.complete !== undefined && i !== culpritIndex ? [i] : []));
  for (let size = Math.max(1, candidates.length >>> 1); ; size = Math.max(1, size >>> 1)) {
    const firm: number[] = [];
    for (let start = 0; start < candidates.length; start += size) {
      const chunk = new Set(candidates.slice(start, start + size));
      const weaker = ops.map((o, i) => (chunk.has(i) ? weaken(o) : o));
      if (fails(weaker)) ops = weaker;
      else firm.push(...chunk);
    }
    // At single operations, go round again while that weakens more: each weakening can free others.
    const done = firm.length === 0 || (size === 1 && firm.length === candidates.length);
    candidates = firm;
    if (done) break;
  }
  const essential = ops
    .filter((o, i) => o.complete !== undefined || i === culpritIndex)
    .sort((a, b) => a.invoke - b.invoke);
  const culprit = ops[culpritIndex] ?? essential[essential.length - 1]!;
  const { kind, sentence } = describe(culprit, essential, operations);
  const lines = essential.map(
    (o) => '  ' + formatOperation(o) + (o === culprit ? '   ← cannot be linearized' : ''),
  );
  const text = [
    `key ${JSON.stringify(key)}: not linearizable: ${sentence}`,
    'These operations cannot be put in one order that respects real time (whatever the other operations',
    'on this key did, each may or may not have taken effect at any time after its invocation):',
    ...lines,
  ].join('\n');
  return { kind, culprit, operations: essential, text };
}

/** The history as seen at time `t`: what was invoked by then, unfinished operations with unknown outcome. */
function prefix(operations: readonly Operation[], t: number): Operation[] {
  return operations
    .filter((o) => o.invoke <= t)
    .map((o) => (o.complete !== undefined && o.complete > t ? weaken(o) : o));
}

function weaken(o: Operation): Operation {
  if (o.op === 'write') return { ...o, complete: undefined };
  return o.op === 'read'
    ? { op: o.op, process: o.process, key: o.key, invoke: o.invoke, complete: undefined }
    : { op: o.op, process: o.process, key: o.key, invoke: o.invoke, complete: undefined, input: o.input };
}

/** The value an operation that took effect leaves in the register, if it writes. */
function written(o: Operation): { value: Value } | undefined {
  if (o.op === 'write') return { value: o.input };
  if (o.op === 'cas' && o.output !== false) return { value: o.input.value };
  return undefined;
}

function describe(
  culprit: Operation,
  essential: readonly Operation[],
  all: readonly Operation[],
): { kind: ViolationKind; sentence: string } {
  const who = `client ${culprit.process}`;
  if (culprit.op === 'write') {
    return {
      kind: 'unorderable',
      sentence: `the write of ${JSON.stringify(culprit.input)} by ${who} cannot be placed among the operations around it.`,
    };
  }
  if (culprit.op === 'cas' && culprit.output === false) {
    return {
      kind: 'impossible-cas',
      sentence: `the cas by ${who} expecting ${JSON.stringify(culprit.input.expect)} failed, but at every point it could have taken effect the value was ${JSON.stringify(culprit.input.expect)}.`,
    };
  }
  const seen = culprit.op === 'read' ? (culprit.output ?? null) : culprit.input.expect;
  const what =
    culprit.op === 'read' ? `the read by ${who} returned` : `the cas by ${who} succeeded expecting`;
  const writers = all.filter((o) => written(o)?.value === seen);
  if (seen !== null && writers.length === 0) {
    return {
      kind: 'value-never-written',
      sentence: `${what} ${JSON.stringify(seen)}, a value no operation on this key wrote.`,
    };
  }
  if (seen !== null && writers.every((w) => w.invoke > culprit.complete!)) {
    const first = writers.reduce((a, b) => (a.invoke <= b.invoke ? a : b));
    return {
      kind: 'value-from-the-future',
      sentence: `${what} ${JSON.stringify(seen)} at ${culprit.complete}, a value written only by operations invoked after that (first: client ${first.process} at ${first.invoke}).`,
    };
  }
  // A stale read: a write of another value completed before the culprit began.
  const newer = essential
    .filter((o) => o !== culprit && o.complete !== undefined && o.complete < culprit.invoke)
    .filter((o) => written(o) !== undefined && written(o)!.value !== seen)
    .sort((a, b) => b.complete! - a.complete!)[0];
  if (newer) {
    const verb = newer.op === 'write' ? 'write' : 'cas';
    return {
      kind: 'stale-read',
      sentence: `stale read: ${what} ${JSON.stringify(seen)} (invoked at ${culprit.invoke}), but the ${verb} of ${JSON.stringify(written(newer)!.value)} by client ${newer.process} had completed at ${newer.complete}, before it began.`,
    };
  }
  return {
    kind: 'unorderable',
    sentence: `${what} ${JSON.stringify(seen)}, which no order of the operations around it allows.`,
  };
}
