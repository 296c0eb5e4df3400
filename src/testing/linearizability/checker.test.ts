/** Small histories written by hand, whose answers are known. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkHistory } from './checker.ts';
import { parseJsonLines, Recorder, toJsonLines, type Operation, type Value } from './history.ts';

// [invoke, complete]: complete undefined for an unknown outcome. Process and key default to 1 and 'k'.
type Span = [number, number | undefined];
const read = (output: Value, [invoke, complete]: Span, process: number = 1, key = 'k'): Operation =>
  complete === undefined
    ? { op: 'read', process, key, invoke, complete }
    : { op: 'read', output, process, key, invoke, complete };
const write = (input: Value, [invoke, complete]: Span, process: number = 1, key = 'k'): Operation => ({
  op: 'write',
  input,
  process,
  key,
  invoke,
  complete,
});
const cas = (
  expect: Value,
  value: Value,
  output: boolean | undefined,
  [invoke, complete]: Span,
  process = 1,
): Operation =>
  output === undefined
    ? { op: 'cas', input: { expect, value }, process, key: 'k', invoke, complete: undefined }
    : { op: 'cas', input: { expect, value }, output, process, key: 'k', invoke, complete: complete! };

function verdict(history: Operation[]): string {
  return checkHistory(history).verdict;
}

describe('sequential histories', () => {
  test('reads see the last write; an empty key reads null', () => {
    assert.equal(
      verdict([read(null, [1, 2]), write(1, [3, 4]), read(1, [5, 6]), write(2, [7, 8]), read(2, [9, 10])]),
      'linearizable',
    );
  });
  test('a read of the value before the last write is a violation', () => {
    assert.equal(verdict([write(1, [1, 2]), write(2, [3, 4]), read(1, [5, 6])]), 'violation');
  });
  test('an empty history is linearizable', () => {
    assert.equal(verdict([]), 'linearizable');
  });
});

describe('concurrent operations', () => {
  test('a read concurrent with a write may see either value', () => {
    const base = [write(1, [1, 2]), write(2, [3, 10], 2)];
    assert.equal(verdict([...base, read(1, [4, 6], 3)]), 'linearizable');
    assert.equal(verdict([...base, read(2, [4, 6], 3)]), 'linearizable');
  });
  test('two concurrent writes may land in either order, but reads must agree on one', () => {
    const writes = [write(1, [1, 10], 1), write(2, [2, 10], 2)];
    assert.equal(verdict([...writes, read(1, [11, 12], 3)]), 'linearizable');
    assert.equal(verdict([...writes, read(2, [11, 12], 3)]), 'linearizable');
    // Once one reader saw 2 after 1 was replaced, a later reader cannot see 1 again... unless 1 came last.
    assert.equal(verdict([...writes, read(1, [11, 12], 3), read(2, [13, 14], 4)]), 'violation');
    assert.equal(verdict([...writes, read(2, [3, 4], 3), read(1, [13, 14], 4)]), 'linearizable');
    assert.equal(
      verdict([...writes, read(1, [3, 4], 3), read(2, [13, 14], 4), read(1, [15, 16], 5)]),
      'violation',
    );
  });
  test('the stale read: a read that starts after a write completed returns the old value', () => {
    const result = checkHistory([write(1, [1, 2], 1), write(2, [3, 4], 2), read(1, [5, 6], 3)]);
    assert.equal(result.verdict, 'violation');
    assert.ok(result.verdict === 'violation');
    assert.equal(result.key, 'k');
    assert.equal(result.explanation.kind, 'stale-read');
    assert.match(
      result.explanation.text,
      /stale read: the read by client 3 returned 1 .* write of 2 by client 2 had completed at 4/,
    );
    assert.deepEqual(
      result.explanation.operations.map((o) => o.invoke),
      [1, 3, 5],
    );
  });
  test('a read of a value never written is a violation', () => {
    const result = checkHistory([write(1, [1, 2]), read(7, [3, 4], 2)]);
    assert.ok(result.verdict === 'violation');
    assert.equal(result.explanation.kind, 'value-never-written');
    assert.deepEqual(result.explanation.operations, [read(7, [3, 4], 2)]);
  });
  test('a read that sees a value written by an operation invoked after the read completed', () => {
    const result = checkHistory([read(1, [1, 2], 1), write(1, [3, 4], 2)]);
    assert.ok(result.verdict === 'violation');
    assert.equal(result.explanation.kind, 'value-from-the-future');
    // Concurrent with the write instead, the same read is fine.
    assert.equal(verdict([read(1, [1, 3], 1), write(1, [2, 4], 2)]), 'linearizable');
  });
  test('equal times are concurrent: a write completing when a read is invoked may follow it', () => {
    assert.equal(verdict([write(1, [1, 5]), read(null, [5, 6], 2)]), 'linearizable');
  });
});

describe('cas', () => {
  test('cas sets only when the value matches, and says whether it did', () => {
    assert.equal(verdict([write(1, [1, 2]), cas(1, 2, true, [3, 4]), read(2, [5, 6])]), 'linearizable');
    assert.equal(verdict([write(1, [1, 2]), cas(3, 2, false, [3, 4]), read(1, [5, 6])]), 'linearizable');
    assert.equal(verdict([cas(null, 5, true, [1, 2]), read(5, [3, 4])]), 'linearizable');
  });
  test('a cas that succeeded on the wrong value, or failed on the right one, is a violation', () => {
    assert.equal(verdict([write(1, [1, 2]), cas(3, 2, true, [3, 4])]), 'violation');
    const failed = checkHistory([write(1, [1, 2]), cas(1, 2, false, [3, 4])]);
    assert.ok(failed.verdict === 'violation');
    assert.equal(failed.explanation.kind, 'impossible-cas');
  });
  test('a failed cas is a read: it cannot see a value that was not there', () => {
    // 1 was overwritten by 2 before; the cas expecting 2 saw something else: only fine if a write came between.
    assert.equal(verdict([write(2, [1, 2]), cas(2, 3, false, [3, 4])]), 'violation');
    assert.equal(verdict([write(2, [1, 2]), cas(2, 3, false, [3, 6]), write(9, [4, 5], 2)]), 'linearizable');
  });
  test('a successful cas did not set a value a later read misses', () => {
    assert.equal(verdict([write(1, [1, 2]), cas(1, 2, true, [3, 4]), read(1, [5, 6])]), 'violation');
  });
});

describe('unknown outcomes', () => {
  test('an unknown write that took effect, as a later read shows, is fine', () => {
    assert.equal(verdict([write(1, [1, 2]), write(2, [3, undefined], 2), read(2, [10, 11])]), 'linearizable');
  });
  test('an unknown write that did not take effect is fine', () => {
    assert.equal(
      verdict([write(1, [1, 2]), write(2, [3, undefined], 2), read(1, [10, 11]), read(1, [12, 13])]),
      'linearizable',
    );
  });
  test('an unknown write takes effect at most once: it cannot be seen, then not, then again', () => {
    const history = [
      write(1, [1, 2]),
      write(2, [3, undefined], 2),
      read(2, [10, 11]),
      write(1, [12, 13]),
      read(2, [14, 15]),
    ];
    assert.equal(verdict(history), 'violation');
  });
  test('an unknown write may take effect long after its client gave up', () => {
    const history = [
      write(2, [1, undefined], 2),
      read(null, [10, 11]),
      write(1, [12, 13]),
      read(2, [20, 21]),
    ];
    assert.equal(verdict(history), 'linearizable');
  });
  test('an unknown write cannot take effect before it was invoked', () => {
    assert.equal(verdict([read(2, [1, 2]), write(2, [3, undefined], 2)]), 'violation');
  });
  test('an unknown cas applies only if its compare matched', () => {
    assert.equal(
      verdict([write(1, [1, 2]), cas(1, 5, undefined, [3, undefined], 2), read(5, [10, 11])]),
      'linearizable',
    );
    assert.equal(
      verdict([write(1, [1, 2]), cas(7, 5, undefined, [3, undefined], 2), read(5, [10, 11])]),
      'violation',
    );
  });
  test('an unknown write may explain a failed cas', () => {
    assert.equal(
      verdict([write(1, [1, 2]), write(9, [3, undefined], 2), cas(1, 3, false, [5, 6])]),
      'linearizable',
    );
  });
  test('an unknown read constrains nothing', () => {
    assert.equal(verdict([write(1, [1, 2]), read(null, [3, undefined], 2)]), 'linearizable');
  });
});

describe('keys are checked independently', () => {
  test('a violation on one key is reported with that key', () => {
    const history = [write(1, [1, 2], 1, 'a'), read(1, [3, 4], 2, 'b'), read(1, [5, 6], 2, 'a')];
    const result = checkHistory(history);
    assert.ok(result.verdict === 'violation');
    assert.equal(result.key, 'b');
    assert.deepEqual(result.violations, ['b']);
    assert.equal(result.keys, 2);
    assert.equal(result.operations, 3);
  });
});

describe('the step budget', () => {
  test('a search that needs more steps than allowed is undecided, not a guess', () => {
    const history = [write(1, [1, 2]), write(2, [3, 4]), read(1, [5, 6])];
    const result = checkHistory(history, { maxStepsPerKey: 2 });
    assert.equal(result.verdict, 'undecided');
    assert.ok(result.verdict === 'undecided');
    assert.deepEqual(result.undecided, ['k']);
  });
});

describe('Recorder', () => {
  test('records outcomes on its clock, leaves refusals out, and round-trips through JSON lines', () => {
    const recorder = new Recorder();
    const w = recorder.invoke(1, 'a', 'write', 'x');
    const r = recorder.invoke(2, 'a', 'read');
    w.ok();
    r.ok('x');
    const refused = recorder.invoke(3, 'a', 'write', 'y');
    refused.fail();
    const c = recorder.invoke(3, 'a', 'cas', { expect: 'x', value: 'z' });
    c.ok(false);
    const lost = recorder.invoke(1, 'a', 'write', 'q');
    lost.unknown();
    recorder.invoke(2, 'a', 'read'); // still waiting: counts as unknown
    const history = recorder.history();
    assert.equal(recorder.failed, 1);
    assert.deepEqual(history, [
      { process: 1, key: 'a', op: 'write', input: 'x', invoke: 1, complete: 3 },
      { process: 2, key: 'a', op: 'read', output: 'x', invoke: 2, complete: 4 },
      {
        process: 3,
        key: 'a',
        op: 'cas',
        input: { expect: 'x', value: 'z' },
        output: false,
        invoke: 6,
        complete: 7,
      },
      { process: 1, key: 'a', op: 'write', input: 'q', invoke: 8, complete: undefined },
      { process: 2, key: 'a', op: 'read', invoke: 9, complete: undefined },
    ]);
    assert.deepEqual(parseJsonLines(toJsonLines(history)), history);
    // The cas expecting 'x' failed while 'x' was there ('q' was invoked only after it): a violation.
    const result = checkHistory(history);
    assert.ok(result.verdict === 'violation');
    assert.equal(result.explanation.kind, 'impossible-cas');
  });
  test('an operation completed twice is a bug in the client, said at once', () => {
    const done = new Recorder().invoke(1, 'a', 'read');
    done.ok(null);
    assert.throws(() => done.unknown(), /read of a by 1: completed twice \(then unknown\)/);
  });
  test('a read of a missing key may be recorded as undefined; it is null', () => {
    const recorder = new Recorder();
    recorder.invoke(1, 'a', 'read').ok(undefined);
    assert.deepEqual(recorder.history(), [
      { process: 1, key: 'a', op: 'read', output: null, invoke: 1, complete: 2 },
    ]);
  });
});

describe('parseJsonLines', () => {
  test('names the line and field of what is wrong', () => {
    assert.throws(
      () => parseJsonLines('{"process":1,"key":"a","op":"put","invoke":1,"complete":2}'),
      /line 1: op: expected "read", "write" or "cas", got "put"/,
    );
    assert.throws(
      () => parseJsonLines('\n{"process":1,"key":"a","op":"read","invoke":5,"complete":2,"output":1}'),
      /line 2: complete: expected null .* ≥ invoke \(5\), got 2/,
    );
    assert.throws(
      () => parseJsonLines('{"process":1,"key":"a","op":"cas","input":{"expect":1},"invoke":1,"complete":2}'),
      /line 1: input: expected \{ expect, value \}/,
    );
    assert.throws(() => parseJsonLines('nope'), /line 1: not JSON/);
  });
});
