/**
 * The one compare-and-swap loop. A state transition is a pure function
 * `(view, input, now) → { compare, ops, result } | { done }`; `commit` runs it against the current
 * view, sends its transaction, and when a compare fails waits for the view to catch up with the
 * write that beat it and runs the transition again on the fresher state.
 */
import { ConflictError, UnavailableError } from '../../core/errors.ts';
import type { Compare, TxnOp, TxnRequest, TxnResult } from '../../store/types.ts';

/** What a transition decides: a write to make, or that nothing needs writing. */
export type Transition<T> = { compare: Compare[]; ops: TxnOp[]; result: T } | { done: T };

/** Where a transaction goes: the Store itself, or a leadership term that fences it. */
export interface TxnTarget {
  txn(request: TxnRequest): Promise<TxnResult>;
}

/** The view a write waits on before it returns or retries. */
export interface IndexedView {
  /** Resolves true once the view has applied `revision`, false if it did not within its timeout. */
  waitForIndex(revision: number): Promise<boolean>;
}

export const WRITE_ATTEMPTS = 20;

/**
 * Runs `build` until its write lands (or it decides nothing is to be written), and returns its
 * result once the view has seen the write, so that a caller reads its own write afterwards.
 * ConflictError after `attempts` lost races; UnavailableError when the view stops following the
 * Store (a write it cannot see would be answered from stale state). Errors of the target (e.g.
 * NotLeaderError from a term) pass through.
 */
export async function commit<T>(
  target: TxnTarget,
  view: IndexedView,
  build: () => Transition<T>,
  attempts = WRITE_ATTEMPTS,
): Promise<T> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const b = build();
    if ('done' in b) return b.done;
    const res = await target.txn({ compare: b.compare, success: b.ops });
    if (!(await view.waitForIndex(res.revision)))
      throw new UnavailableError(
        `this server's view of the store did not reach revision ${res.revision} in time; the write ${res.succeeded ? 'was made' : 'was not made'}, try reading again`,
      );
    if (res.succeeded) return b.result;
  }
  throw new ConflictError('the state kept changing under this write; try again');
}
