/**
 * The model the history is checked against: one register per key, initially `null`.
 * - read returns the current value;
 * - write sets it;
 * - cas sets it to `value` only if the current value equals `expect`, and says whether it did.
 */
import type { Operation, Value } from './history.ts';

/** How the search sees a sequential specification (`wgl.ts`). */
export interface Model<State> {
  init(): State;
  /**
   * The state after `op` takes effect in `state`, or `undefined` if it cannot take effect there and
   * return what was recorded. For an operation with an unknown outcome (no output), `undefined` also
   * where taking effect would change nothing, as a cas whose compare fails: that is the same as never.
   */
  step(state: State, op: Operation): State | undefined;
  /** Equal states have equal keys: the search caches explored (operations done, state) pairs by it. */
  stateKey(state: State): string;
  /** Optional pruning of unknown-outcome operations, for the operations of one key. */
  relevance?(operations: readonly Operation[]): Relevance;
}

/**
 * Which unknown-outcome operations could still matter, given which operations are not yet
 * linearized. An unknown write that no remaining operation could observe is left out: if a
 * linearization exists with it, the same one without it is valid too. This keeps the search from
 * trying every subset of the writes that timed out and never took effect.
 */
export interface Relevance {
  /** Whether linearizing operation `index` (unknown outcome) now could matter. */
  mayMatter(index: number): boolean;
  /** Operation `index` was linearized (`done`) or un-linearized when the search backtracked. */
  update(index: number, done: boolean): void;
}

export const register: Model<Value> = {
  init: () => null,
  step(state, op) {
    switch (op.op) {
      case 'read':
        if (op.complete === undefined) return state;
        return op.output === state ? state : undefined;
      case 'write':
        return op.input;
      case 'cas': {
        const matches = op.input.expect === state;
        if (op.complete === undefined) return matches ? op.input.value : undefined;
        if (op.output !== matches) return undefined;
        return matches ? op.input.value : state;
      }
    }
  },
  stateKey: (state) => JSON.stringify(state),
  relevance: registerRelevance,
};

/**
 * An unknown write of `v` matters while some operation not yet linearized could see `v`: a read
 * returning `v`, a cas expecting `v` (successful, or with unknown outcome), or a failed cas that
 * expected something other than `v` (which state `v` would explain). Once none is left, the state
 * `v` would be followed only by another write, so taking effect then is the same as never.
 */
function registerRelevance(operations: readonly Operation[]): Relevance {
  const observers = new Map<string, number>();
  const failedByExpect = new Map<string, number>();
  let failed = 0;
  const add = (map: Map<string, number>, value: Value, by: number) => {
    const k = JSON.stringify(value);
    map.set(k, (map.get(k) ?? 0) + by);
  };
  const count = (index: number, by: number) => {
    const op = operations[index]!;
    if (op.op === 'read' && op.complete !== undefined) add(observers, op.output ?? null, by);
    if (op.op === 'cas') {
      if (op.output === false) {
        failed += by;
        add(failedByExpect, op.input.expect, by);
      } else add(observers, op.input.expect, by);
    }
  };
  operations.forEach((_, i) => count(i, 1));
  return {
    mayMatter(index) {
      const op = operations[index]!;
      if (op.op === 'read') return false;
      const v = JSON.stringify(op.op === 'write' ? op.input : op.input.value);
      return (observers.get(v) ?? 0) > 0 || failed - (failedByExpect.get(v) ?? 0) > 0;
    },
    update(index, done) {
      count(index, done ? -1 : 1);
    },
  };
}
