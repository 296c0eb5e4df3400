import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration } from '../core/duration.ts';
import { InvalidError } from '../core/errors.ts';
import { nestingDepth } from './body.ts';
import { blockingParams, booleanParam, countParam } from './query.ts';

const q = (s: string) => new URLSearchParams(s);
const invalid = (name: string) => (err: unknown) =>
  err instanceof InvalidError && err.message.startsWith(`${name}: `);

test('a malformed number is an InvalidError naming the parameter, not NaN passed on', () => {
  for (const index of ['abc', '-1', '1.5', '1e3', '0x10', ' 7', '9'.repeat(40)])
    assert.throws(
      () => blockingParams(q(`index=${encodeURIComponent(index)}`), parseDuration),
      invalid('index'),
    );
  assert.throws(() => blockingParams(q('index=1&wait=soon'), parseDuration), invalid('wait'));
  assert.deepEqual(blockingParams(q('index=42&wait=2s'), parseDuration), { index: 42, waitMs: 2000 });
  assert.deepEqual(blockingParams(q('wait=99999999999d'), parseDuration), { index: 0, waitMs: 300_000 });
  assert.throws(() => countParam(q('limit=ten'), 'limit'), invalid('limit'));
  assert.throws(() => booleanParam(q('follow=yes'), 'follow'), invalid('follow'));
  assert.equal(countParam(q('tail=10'), 'tail'), 10);
  assert.equal(countParam(q('tail='), 'tail'), undefined);
});

test('nesting depth is counted outside strings, and stops early', () => {
  assert.equal(nestingDepth('{"a":[1,{"b":[]}]}', 64), 4);
  assert.equal(nestingDepth('{"a":"[[[[{{{{\\"[["}', 64), 1);
  assert.equal(nestingDepth('[]'.repeat(1000), 64), 1);
  assert.equal(nestingDepth('['.repeat(1_000_000), 64), 65);
});
