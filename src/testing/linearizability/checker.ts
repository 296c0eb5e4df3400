/**
 * Checks a whole history: registers are independent, so the history is linearizable if and only if
 * the operations of each key are (linearizability is compositional), and each key is searched alone.
 */
import type { Operation, Value } from './history.ts';
import { explainViolation, type Explanation } from './explain.ts';
import { register, type Model } from './register.ts';
import { searchKey } from './wgl.ts';

export interface CheckOptions<S> {
  /** The sequential specification; default the register of `register.ts`. */
  model?: Model<S>;
  /**
   * The search of one key gives up, and the verdict is "undecided", after this many steps (model
   * steps, backtracks and operations looked at); default 20 000 000, well under a second of a core.
   */
  maxStepsPerKey?: number;
}

interface Counts {
  /** Operations in the history (unknown outcomes included). */
  operations: number;
  /** Distinct keys. */
  keys: number;
  /** Search steps over all keys (not counting the explanation's). */
  steps: number;
}

export type CheckResult =
  | ({ ok: true; verdict: 'linearizable' } & Counts)
  | ({
      ok: false;
      verdict: 'violation';
      /** The first key, in sorted order, that is not linearizable; explained below. */
      key: string;
      explanation: Explanation;
      /** Every key found not linearizable. */
      violations: string[];
      /** Keys whose search gave up. */
      undecided: string[];
    } & Counts)
  | ({ ok: false; verdict: 'undecided'; undecided: string[] } & Counts);

export const defaultMaxStepsPerKey = 20_000_000;

export function checkHistory<S = Value>(
  history: readonly Operation[],
  options: CheckOptions<S> = {},
): CheckResult {
  const model = (options.model ?? register) as Model<S>;
  const maxSteps = options.maxStepsPerKey ?? defaultMaxStepsPerKey;
  const byKey = new Map<string, Operation[]>();
  for (const o of history) {
    const list = byKey.get(o.key);
    if (list) list.push(o);
    else byKey.set(o.key, [o]);
  }
  const keys = [...byKey.keys()].sort();
  const violations: string[] = [];
  const undecided: string[] = [];
  let steps = 0;
  for (const key of keys) {
    const result = searchKey(model, byKey.get(key)!, maxSteps);
    steps += result.steps;
    if (result.verdict === 'violation') violations.push(key);
    if (result.verdict === 'undecided') undecided.push(key);
  }
  const counts = { operations: history.length, keys: keys.length, steps };
  const key = violations[0];
  if (key !== undefined) {
    const explanation = explainViolation(model, key, byKey.get(key)!, maxSteps);
    return { ok: false, verdict: 'violation', key, explanation, violations, undecided, ...counts };
  }
  if (undecided.length > 0) return { ok: false, verdict: 'undecided', undecided, ...counts };
  return { ok: true, verdict: 'linearizable', ...counts };
}
