/**
 * Explains a violation found on one key: which few operations cannot be ordered, and in words what
 * went wrong ("stale read: …").
 *
 * 1. The earliest failing prefix. Cut the history at time t: operations invoked later are dropped,
 *    operations still running at t get an unknown outcome. A linearizable history has linearizable
 *    prefixes, so a binary search over completion times finds the first t that fails; the operation
 *    completing at t (the culprit) is the one that could not be linearized.
 * 2. A small witness. Operations are removed (in chunks, halving, as delta debugging does) while
 *    what is left still fails. Only removals that cannot create a violation are tried: a read or a
 *    failed cas (they only constrain), and a write or successful cas whose value nothing left reads
 *    or expects, and, if a failed cas is left (any other value would explain it), that another write
 *    left surely replaced before the first failed cas began.
 *    If the whole history were linearizable, so would be what is left; so what is left, a few
 *    operations among which every value read is written, proves the violation on its own, and a
 *    stale read is never turned into "a value nobody wrote".
 * 3. Writes that could not be removed are then weakened to an unknown outcome where the rest still
 *    fails: they may still be the source of any value, at any time after their invocation.
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
  let kept = prefix(operations, cut);
  const culprit = kept.find((o) => o.complete === cut)!;

  // Constraints first: once they are gone, the writes they observed can go too.
  const rank = (o: Operation) => (written(o) === undefined ? 0 : 1);
  const others = kept.filter((o) => o !== culprit).sort((a, b) => rank(a) - rank(b));
  shrink(others, (chunk) => {
    const rest = kept.filter((o) => !chunk.has(o));
    if (!removable(chunk, rest) || !fails(rest)) return false;
    kept = rest;
    return true;
  });
  // Writes that could not go (a failed cas is left, which any other value would explain) may still
  // be taken as unknown: may or may not have taken effect, at any time after their invocation.
  const firmWriters = kept.filter(
    (o) => o !== culprit && o.complete !== undefined && written(o) !== undefined,
  );
  shrink(firmWriters, (chunk) => {
    const weaker = kept.flatMap((o) => (chunk.has(o) ? (weaken(o) ?? []) : [o]));
    if (!fails(weaker)) return false;
    kept = weaker;
    return true;
  });
  const essential = [...kept].sort((a, b) => a.invoke - b.invoke);
  const { kind, sentence } = describe(culprit, essential, operations);
  const lines = essential.map(
    (o) => '  ' + formatOperation(o) + (o === culprit ? '   ← cannot be linearized' : ''),
  );
  const text = [
    `key ${JSON.stringify(key)}: not linearizable: ${sentence}`,
    'These operations of the key, on their own, cannot be put in one order that respects real time',
    '(every value they read is written among them; those of unknown outcome may or may not have taken effect):',
    ...lines,
  ].join('\n');
  return { kind, culprit, operations: essential, text };
}

/** The history as seen at time `t`: what was invoked by then, unfinished operations with unknown outcome. */
function prefix(operations: readonly Operation[], t: number): Operation[] {
  return operations
    .filter((o) => o.invoke <= t)
    .map((o) => (o.complete !== undefined && o.complete > t ? weaken(o) : o))
    .filter((o) => o !== undefined);
}

/**
 * The operation with its outcome forgotten: a write or a successful cas may or may not have taken
 * effect; a read or a failed cas, which change nothing, are left out (the same, and cheaper to search).
 */
/**
 * Delta debugging: offers `tryChunk` chunks of `candidates`, halving their size, until single ones;
 * `tryChunk` applies the change and says true if it kept it.
 */
function shrink(
  candidates: readonly Operation[],
  tryChunk: (chunk: ReadonlySet<Operation>) => boolean,
): void {
  let left = [...candidates];
  for (let size = Math.max(1, left.length >>> 1); ; size = Math.max(1, size >>> 1)) {
    const stay: Operation[] = [];
    for (let start = 0; start < left.length; start += size) {
      const chunk = left.slice(start, start + size);
      if (!tryChunk(new Set(chunk))) stay.push(...chunk);
    }
    // At single operations, go round again while that changes more: each change can free others.
    const done = stay.length === 0 || (size === 1 && stay.length === left.length);
    left = stay;
    if (done) return;
  }
}

/** Whether removing `chunk`, leaving `rest`, cannot turn a linearizable history into a violation. */
function removable(chunk: ReadonlySet<Operation>, rest: readonly Operation[]): boolean {
  const writers = [...chunk].filter((o) => written(o) !== undefined);
  if (writers.length === 0) return true;
  // A failed cas could have seen any other value: a write may go only if one left surely replaced it
  // before the first failed cas began.
  const failed = rest.filter((o) => o.op === 'cas' && o.output === false);
  if (failed.length > 0) {
    const firstFailed = Math.min(...failed.map((o) => o.invoke));
    const fences = rest.filter((o) => o.complete !== undefined && o.complete < firstFailed && written(o));
    const fenced = (w: Operation) => w.complete !== undefined && fences.some((f) => w.complete! < f.invoke);
    if (!writers.every(fenced)) return false;
  }
  const observed = new Set<string>();
  for (const o of rest) {
    if (o.op === 'read') observed.add(JSON.stringify(o.output ?? null));
    if (o.op === 'cas') observed.add(JSON.stringify(o.input.expect));
  }
  return writers.every((o) => !observed.has(JSON.stringify(written(o)!.value)));
}

function weaken(o: Operation): Operation | undefined {
  if (o.op === 'write') return { ...o, complete: undefined };
  if (o.op === 'read' || o.output === false) return undefined;
  return { op: o.op, process: o.process, key: o.key, invoke: o.invoke, complete: undefined, input: o.input };
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
