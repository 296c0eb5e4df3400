/**
 * The Wing–Gong linearizability search with Lowe's cache, for the operations of one key.
 *
 * The history is a list of events in time order: each operation's invocation and, if its outcome
 * is known, its completion. An operation may be linearized next (take effect now) when its
 * invocation is before the first completion still in the list: it is "minimal", no operation still
 * waiting must precede it. The search tries minimal operations in turn, depth first; linearizing one
 * takes its invocation and completion out of the list and moves the model to the next state; when
 * the first event left is a completion, nothing more can be linearized before it, so the search
 * backtracks. Every (set of linearized operations, state) reached is cached: reaching it again by
 * another order cannot lead anywhere new.
 *
 * An operation with an unknown outcome has no completion event: it stays minimal from its
 * invocation to the end, may be linearized at any point, and need not be. The search succeeds as
 * soon as every operation with a known outcome is linearized.
 *
 * Unknown outcomes multiply the orders to try (each may be in or out, anywhere), so the search only
 * linearizes one when it enables something: some other minimal operation that could not take effect
 * in the current state can in the state after it. That loses nothing: in any linearization, look at
 * what follows an unknown operation u. If it is a write, u could as well never have happened. If it
 * is an operation that could also have taken effect before u and leaves the state as it is (a read,
 * a failed cas), swap the two. Repeating this gives a linearization where every unknown operation is
 * followed by one it enabled, which was then minimal: the search finds it.
 */
import type { Operation } from './history.ts';
import type { Model } from './register.ts';

export type Verdict = 'linearizable' | 'violation' | 'undecided';

export interface SearchResult {
  verdict: Verdict;
  /** Model steps and backtracks made; the search gives up as undecided past `maxSteps`. */
  steps: number;
}

/** Checks the operations of one key (all of them on the same register). */
export function searchKey<S>(
  model: Model<S>,
  operations: readonly Operation[],
  maxSteps: number,
): SearchResult {
  // A read whose outcome is unknown changes nothing and promises nothing.
  const ops = operations.filter((o) => o.op !== 'read' || o.complete !== undefined);
  const n = ops.length;

  // Events: node 0 is the head, node `last` the tail; both are barriers to the scan.
  const events: { op: number; time: number; call: boolean }[] = [];
  ops.forEach((o, i) => {
    events.push({ op: i, time: o.invoke, call: true });
    if (o.complete !== undefined) events.push({ op: i, time: o.complete, call: false });
  });
  // Equal times are taken as concurrent: invocations before completions.
  events.sort((a, b) => a.time - b.time || Number(b.call) - Number(a.call) || a.op - b.op);
  const last = events.length + 1;
  const next = new Int32Array(last + 1);
  const prev = new Int32Array(last + 1);
  const opOf = new Int32Array(last + 1).fill(-1);
  const isCall = new Uint8Array(last + 1);
  const returnOf = new Int32Array(n).fill(-1);
  events.forEach((e, i) => {
    const node = i + 1;
    opOf[node] = e.op;
    isCall[node] = e.call ? 1 : 0;
    if (!e.call) returnOf[e.op] = node;
  });
  for (let node = 0; node <= last; node++) {
    next[node] = node + 1;
    prev[node] = node - 1;
  }
  const unlink = (node: number) => {
    next[prev[node]!] = next[node]!;
    prev[next[node]!] = prev[node]!;
  };
  const relink = (node: number) => {
    next[prev[node]!] = node;
    prev[next[node]!] = node;
  };

  // The cache: linearized set as a bitset with an incremental (Zobrist) hash, and the state's id.
  const words = Math.ceil(n / 32) || 1;
  const linearized = new Uint32Array(words);
  const random = seededRandom(0x5eed + n);
  const zobristHigh = Uint32Array.from({ length: n }, random);
  const zobristLow = Uint32Array.from({ length: n }, random);
  let hashHigh = 0;
  let hashLow = 0;
  const stateIds = new Map<string, number>();
  const stateId = (s: S) => {
    const k = model.stateKey(s);
    let id = stateIds.get(k);
    if (id === undefined) stateIds.set(k, (id = stateIds.size));
    return id;
  };
  const seen = new Map<number, { bits: Uint32Array; state: number }[]>();
  /** Adds the current (linearized, state) to the cache; false if it was there already. */
  const remember = (state: number): boolean => {
    const key = ((hashHigh ^ Math.imul(state + 1, 0x9e3779b1)) >>> 0) * 0x200000 + (hashLow & 0x1fffff);
    const bucket = seen.get(key);
    if (bucket) {
      for (const entry of bucket) if (entry.state === state && sameBits(entry.bits, linearized)) return false;
      bucket.push({ bits: linearized.slice(), state });
    } else seen.set(key, [{ bits: linearized.slice(), state }]);
    return true;
  };
  const toggle = (op: number) => {
    linearized[op >>> 5]! ^= 1 << (op & 31);
    hashHigh ^= zobristHigh[op]!;
    hashLow ^= zobristLow[op]!;
  };

  /** Whether, in state `after` that `op` leads to, another minimal operation can take effect that cannot now. */
  const enables = (op: number, after: S): boolean => {
    for (let m = next[0]!; isCall[m]; m = next[m]!) {
      const other = opOf[m]!;
      if (other === op) continue;
      steps++;
      if (model.step(after, ops[other]!) !== undefined && model.step(state, ops[other]!) === undefined)
        return true;
    }
    return false;
  };

  // Depth-first search. Each frame: the invocation node linearized, the state before it, the pass.
  // Any order of trying minimal operations is complete; this one guesses as late as it can. Pass 0
  // looks for a read-only operation that can take effect: it is linearized at once, with no other
  // order tried (its frame's pass is `forced`), because moved to the front of any linearization that
  // works from here it still works (it sees the same state and leaves it as it is). Pass 1 tries the
  // other operations with known outcomes, pass 2 those with unknown outcomes.
  const forced = 3;
  const category = Uint8Array.from(ops, (o) => (o.complete === undefined ? 2 : model.readOnly?.(o) ? 0 : 1));
  const stackNode: number[] = [];
  const stackState: S[] = [];
  const stackPass: number[] = [];
  let state = model.init();
  let remaining = ops.filter((o) => o.complete !== undefined).length;
  let node = next[0]!;
  let pass = 0;
  let steps = 0;
  for (;;) {
    if (remaining === 0) return { verdict: 'linearizable', steps };
    if (++steps > maxSteps) return { verdict: 'undecided', steps };
    if (!isCall[node]) {
      // A completion (or the tail): nothing after it can be linearized before it.
      if (pass < 2) {
        pass++;
        node = next[0]!;
        continue;
      }
      // Past pass 2, or back from a forced frame: backtrack.
      const back = stackNode.pop();
      if (back === undefined) return { verdict: 'violation', steps };
      const op = opOf[back]!;
      state = stackState.pop()!;
      pass = stackPass.pop()!;
      toggle(op);
      const ret = returnOf[op]!;
      if (ret >= 0) {
        relink(ret);
        remaining++;
      }
      relink(back);
      node = pass === forced ? last : next[back]!;
      continue;
    }
    const op = opOf[node]!;
    const ret = returnOf[op]!;
    const known = ret >= 0;
    if (category[op] !== pass) {
      node = next[node]!;
      continue;
    }
    const after = model.step(state, ops[op]!);
    if (after !== undefined && (known || enables(op, after))) {
      toggle(op);
      if (remember(stateId(after))) {
        stackNode.push(node);
        stackState.push(state);
        stackPass.push(pass === 0 ? forced : pass);
        state = after;
        unlink(node);
        if (known) {
          unlink(ret);
          remaining--;
        }
        node = next[0]!;
        pass = 0;
        continue;
      }
      toggle(op);
      if (pass === 0) {
        // This state, with it done, was explored before and led nowhere: neither does this one.
        node = last;
        pass = 1;
        continue;
      }
    }
    node = next[node]!;
  }
}

function sameBits(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A small deterministic generator of 32-bit words (mulberry32). */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}
