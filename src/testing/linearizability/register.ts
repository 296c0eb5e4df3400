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
  // The search also assumes that an operation able to take effect in two different states either
  // leaves each as it is (a read) or does not depend on it (a write): true of registers.
  /**
   * Whether `op`, which has a known outcome, leaves every state it can take effect in as it is (a
   * read, a failed cas). Optional: the search then linearizes it as soon as it can, without trying
   * other orders.
   */
  readOnly?(op: Operation): boolean;
  /** Equal states have equal keys: the search caches explored (operations done, state) pairs by it. */
  stateKey(state: State): string;
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
  readOnly: (op) => op.op === 'read' || (op.op === 'cas' && op.output === false),
};
