import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidError } from '../../core/errors.ts';
import type { TxnRequest } from '../types.ts';
import { checkKey, checkSelector, checkTtl, putTxn, validateTxn } from './validate.ts';

/** The field paths an InvalidError names. */
function fieldsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof InvalidError, `expected InvalidError, got ${String(err)}`);
    return err.fields.map((f) => f.path);
  }
  assert.fail('expected InvalidError, nothing thrown');
}

void describe('store validation', () => {
  void test('keys must be non-empty well-formed strings', () => {
    checkKey('a/b', 'key');
    assert.deepEqual(
      fieldsOf(() => checkKey('', 'key')),
      ['key'],
    );
    assert.deepEqual(
      fieldsOf(() => checkKey(7, 'key')),
      ['key'],
    );
    assert.deepEqual(
      fieldsOf(() => checkKey('bad\ud800', 'success[0].key')),
      ['success[0].key'],
    );
  });

  void test('a selector is a key or a prefix, not both; the empty prefix is every key', () => {
    checkSelector({ prefix: '' }, 'selector');
    checkSelector({ key: 'k' }, 'selector');
    assert.deepEqual(
      fieldsOf(() => checkSelector({ key: 'k', prefix: 'p' } as never, 'selector')),
      ['selector'],
    );
    assert.deepEqual(
      fieldsOf(() => checkSelector({} as never, 'selector')),
      ['selector.prefix'],
    );
    assert.deepEqual(
      fieldsOf(() => checkSelector(undefined, 'watch')),
      ['watch'],
    );
  });

  void test('a transaction names the path of its first bad field', () => {
    const bad: Array<[unknown, string]> = [
      [{ success: 'nope' }, 'success'],
      [{ success: [{ type: 'put', key: 'k', value: 1 }] }, 'success[0].value'],
      [{ success: [{ type: 'put', key: 'k', value: 'v', lease: -1 }] }, 'success[0].lease'],
      [{ success: [{ type: 'move', key: 'k' }] }, 'success[0].type'],
      [{ success: [], failure: [{ type: 'get', key: '' }] }, 'failure[0].key'],
      [{ compare: [{ key: 'k', target: 'size', op: '=', value: 1 }], success: [] }, 'compare[0].target'],
      [{ compare: [{ key: 'k', target: 'value', op: '<', value: 'a' }], success: [] }, 'compare[0].op'],
      [{ compare: [{ key: 'k', target: 'mod', op: '=', value: '1' }], success: [] }, 'compare[0].value'],
      [{ compare: [{ key: 'k', target: 'mod', op: '=', value: NaN }], success: [] }, 'compare[0].value'],
    ];
    for (const [request, path] of bad) {
      assert.deepEqual(
        fieldsOf(() => validateTxn(request as TxnRequest)),
        [path],
        JSON.stringify(request),
      );
    }
  });

  void test('one transaction may not write a key twice, or put and delete it', () => {
    assert.deepEqual(
      fieldsOf(() =>
        validateTxn({
          success: [
            { type: 'put', key: 'k', value: '1' },
            { type: 'put', key: 'k', value: '2' },
          ],
        }),
      ),
      ['success[1].key'],
    );
    assert.deepEqual(
      fieldsOf(() =>
        validateTxn({
          success: [
            { type: 'put', key: 'jobs/a', value: '1' },
            { type: 'delete', prefix: 'jobs/' },
          ],
        }),
      ),
      ['success'],
    );
    // The two branches are separate: each may write the key once.
    validateTxn({
      success: [{ type: 'put', key: 'k', value: '1' }],
      failure: [{ type: 'put', key: 'k', value: '2' }],
    });
  });

  void test('absent lists become empty ones; a put of lease 0 is a put without a lease', () => {
    assert.deepEqual(validateTxn({ success: [] }), { compare: [], success: [], failure: [] });
    assert.deepEqual(putTxn('k', 'v', 0).success, [{ type: 'put', key: 'k', value: 'v' }]);
    assert.deepEqual(putTxn('k', 'v', 7).success, [{ type: 'put', key: 'k', value: 'v', lease: 7 }]);
    assert.deepEqual(
      fieldsOf(() => putTxn('', 'v', undefined)),
      ['success[0].key'],
    );
  });

  void test('a TTL is a positive finite number of seconds', () => {
    checkTtl(0.5);
    for (const ttl of [0, -1, Infinity, NaN, '10']) {
      assert.deepEqual(
        fieldsOf(() => checkTtl(ttl)),
        ['ttlSeconds'],
        String(ttl),
      );
    }
  });
});
