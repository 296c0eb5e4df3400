/**
 * The search against its definition: on thousands of small random histories (a few operations on
 * one key, values that collide, unknown outcomes), the verdict equals that of trying every order.
 * The search's shortcuts (read-only operations first, unknown ones only where they enable another,
 * the cache) must never change an answer.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatOperation, type Operation, type Value } from './history.ts';
import { register } from './register.ts';
import { searchKey, seededRandom } from './wgl.ts';

/** Every order that respects real time, unknown outcomes in or out: linearizable if one works. */
function bruteForce(ops: readonly Operation[]): boolean {
  const placed = new Array<boolean>(ops.length).fill(false);
  const go = (state: Value): boolean => {
    if (ops.every((o, i) => placed[i] || o.complete === undefined)) return true;
    for (let i = 0; i < ops.length; i++) {
      if (placed[i]) continue;
      const o = ops[i]!;
      const blocked = ops.some(
        (p, j) => !placed[j] && j !== i && p.complete !== undefined && p.complete < o.invoke,
      );
      if (blocked) continue;
      const after = register.step(state, o);
      if (after === undefined) continue;
      placed[i] = true;
      const found = go(after);
      placed[i] = false;
      if (found) return true;
    }
    return false;
  };
  return go(null);
}

test('the search agrees with trying every order on 3000 small random histories', () => {
  const random = seededRandom(42);
  const pick = (n: number) => random() % n;
  const values: Value[] = [null, 1, 2, 3];
  let violations = 0;
  for (let round = 0; round < 3000; round++) {
    const ops: Operation[] = [];
    for (let i = 0, n = 2 + pick(6); i < n; i++) {
      const invoke = pick(12);
      const complete = pick(4) === 0 ? undefined : invoke + pick(6);
      const base = { process: i, key: 'k', invoke, complete };
      const kind = pick(3);
      if (kind === 0)
        ops.push(
          complete === undefined
            ? { ...base, op: 'read' }
            : { ...base, op: 'read', output: values[pick(4)]! },
        );
      else if (kind === 1) ops.push({ ...base, op: 'write', input: values[1 + pick(3)]! });
      else {
        const input = { expect: values[pick(4)]!, value: values[1 + pick(3)]! };
        ops.push(
          complete === undefined
            ? { ...base, op: 'cas', input }
            : { ...base, op: 'cas', input, output: pick(2) === 0 },
        );
      }
    }
    const expected = bruteForce(ops) ? 'linearizable' : 'violation';
    if (expected === 'violation') violations++;
    const actual = searchKey(register, ops, 1_000_000).verdict;
    assert.equal(actual, expected, `history:\n${ops.map(formatOperation).join('\n')}`);
  }
  // Both answers were exercised, or the comparison proves little.
  assert.ok(violations > 300 && violations < 2700, `${violations} violations in 3000`);
});
