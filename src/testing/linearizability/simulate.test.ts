/**
 * Long histories from a simulated store whose answer is known: correct, or with a planted bug that
 * a linearizability check must find. Seeded, so every run sees the same histories.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkHistory } from './checker.ts';
import { parseJsonLines, toJsonLines } from './history.ts';
import { simulate } from './simulate.ts';

const base = { operations: 10_000, clients: 8, keys: 30 };

describe('a correct store', () => {
  for (const seed of [1, 2, 3]) {
    test(`10 000 operations, 8 clients, 30 keys, some outcomes unknown (seed ${seed}): linearizable`, (t) => {
      const { history, refused } = simulate({ seed, ...base });
      const unknown = history.filter((o) => o.complete === undefined).length;
      // The history exercises what it should: thousands of operations, unknown outcomes, refusals.
      assert.ok(history.length + refused === base.operations, `${history.length} + ${refused}`);
      assert.ok(unknown > 100, `only ${unknown} unknown outcomes`);
      assert.ok(refused > 10, `only ${refused} refusals`);
      const started = performance.now();
      const result = checkHistory(history);
      const ms = (performance.now() - started).toFixed(0);
      t.diagnostic(
        `checked ${result.operations} operations (${unknown} unknown) on ${result.keys} keys in ${ms} ms, ${result.steps} steps`,
      );
      assert.equal(
        result.verdict,
        'linearizable',
        result.verdict === 'violation' ? result.explanation.text : '',
      );
    });
  }
  test('few keys, many clients, one in ten outcomes unknown: linearizable', (t) => {
    const { history } = simulate({ seed: 7, operations: 3000, clients: 10, keys: 2, unknownRate: 0.1 });
    const started = performance.now();
    const result = checkHistory(history);
    t.diagnostic(
      `checked ${result.operations} operations on 2 keys in ${(performance.now() - started).toFixed(0)} ms`,
    );
    assert.equal(
      result.verdict,
      'linearizable',
      result.verdict === 'violation' ? result.explanation.text : '',
    );
  });
});

describe('a planted bug', () => {
  test('reads served from a replica lagging a few writes behind: stale reads found and explained', (t) => {
    const { history, bugged } = simulate({ seed: 11, ...base, bug: { kind: 'stale-reads', lag: 5 } });
    assert.ok(bugged > 0, 'the replica never served a stale value: the test would prove nothing');
    const result = checkHistory(history);
    assert.ok(result.verdict === 'violation', `expected a violation, got ${result.verdict}`);
    t.diagnostic(result.explanation.text);
    assert.equal(result.explanation.kind, 'stale-read');
    assert.match(result.explanation.text, /not linearizable: stale read: the read by client \d+ returned/);
    // The explanation is a handful of operations, the stale read last, with the write it missed.
    const ops = result.explanation.operations;
    assert.ok(ops.length <= 5, `${ops.length} operations in the explanation`);
    assert.equal(ops.at(-1), result.explanation.culprit);
    assert.equal(result.explanation.culprit.op, 'read');
  });
  test('acknowledged writes silently dropped: found, and the explanation shows a dropped write', (t) => {
    for (const seed of [12, 13, 14]) {
      const { history, dropped } = simulate({ seed, ...base, bug: { kind: 'lost-writes', rate: 0.005 } });
      assert.ok(dropped.length > 0, 'no write was dropped: the test would prove nothing');
      const result = checkHistory(history);
      assert.ok(result.verdict === 'violation', `seed ${seed}: expected a violation, got ${result.verdict}`);
      t.diagnostic(result.explanation.text);
      // Seen by a later read of the value it should have replaced, or by a cas expecting it that failed.
      assert.ok(['stale-read', 'impossible-cas'].includes(result.explanation.kind), result.explanation.kind);
      const shown = result.explanation.operations.filter(
        (o) => o.op === 'write' && dropped.includes(o.input),
      );
      assert.ok(shown.length > 0, `seed ${seed}: no dropped write in\n${result.explanation.text}`);
    }
  });
  test('a saved failing history gives the same verdict when read back', () => {
    const { history } = simulate({
      seed: 11,
      operations: 2000,
      clients: 8,
      keys: 10,
      bug: { kind: 'stale-reads', lag: 5 },
    });
    const before = checkHistory(history);
    const after = checkHistory(parseJsonLines(toJsonLines(history)));
    assert.equal(before.verdict, 'violation');
    assert.deepEqual(after, before);
  });
});

describe('the step budget', () => {
  test('a search too large for its budget ends, undecided', () => {
    const { history } = simulate({ seed: 7, operations: 3000, clients: 10, keys: 1, unknownRate: 0.1 });
    const result = checkHistory(history, { maxStepsPerKey: 10_000 });
    assert.equal(result.verdict, 'undecided');
  });
});
