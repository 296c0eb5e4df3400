import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Compare, KeyValue } from '../types.ts';
import { compareHolds, evaluateCompares } from './compare.ts';

const kv: KeyValue = { key: 'k', value: 'v1', createRevision: 3, modRevision: 7, version: 4, lease: 9 };

void describe('store compares', () => {
  void test('each numeric target reads its own field, with =, !=, < and >', () => {
    const cases: Array<[Compare, boolean]> = [
      [{ key: 'k', target: 'mod', op: '=', value: 7 }, true],
      [{ key: 'k', target: 'mod', op: '=', value: 3 }, false],
      [{ key: 'k', target: 'create', op: '=', value: 3 }, true],
      [{ key: 'k', target: 'version', op: '=', value: 4 }, true],
      [{ key: 'k', target: 'lease', op: '=', value: 9 }, true],
      [{ key: 'k', target: 'mod', op: '!=', value: 7 }, false],
      [{ key: 'k', target: 'mod', op: '<', value: 8 }, true],
      [{ key: 'k', target: 'mod', op: '<', value: 7 }, false],
      [{ key: 'k', target: 'version', op: '>', value: 3 }, true],
      [{ key: 'k', target: 'version', op: '>', value: 4 }, false],
    ];
    for (const [compare, expected] of cases) {
      assert.equal(compareHolds(compare, kv), expected, JSON.stringify(compare));
    }
  });

  void test('a value compare is = or !=, on the exact string', () => {
    assert.equal(compareHolds({ key: 'k', target: 'value', op: '=', value: 'v1' }, kv), true);
    assert.equal(compareHolds({ key: 'k', target: 'value', op: '=', value: 'v' }, kv), false);
    assert.equal(compareHolds({ key: 'k', target: 'value', op: '!=', value: 'v' }, kv), true);
  });

  void test('a missing key has mod, create, version and lease 0 and no value', () => {
    // "Create only if absent", the compare locks and elections are built on.
    assert.equal(compareHolds({ key: 'k', target: 'create', op: '=', value: 0 }, undefined), true);
    assert.equal(compareHolds({ key: 'k', target: 'mod', op: '>', value: 0 }, undefined), false);
    assert.equal(compareHolds({ key: 'k', target: 'version', op: '<', value: 1 }, undefined), true);
    assert.equal(compareHolds({ key: 'k', target: 'lease', op: '=', value: 0 }, undefined), true);
    assert.equal(compareHolds({ key: 'k', target: 'value', op: '=', value: '' }, undefined), false);
    assert.equal(compareHolds({ key: 'k', target: 'value', op: '!=', value: '' }, undefined), true);
  });

  void test('all compares must hold; each key is looked up once per run and evaluation stops at the first miss', () => {
    const state = new Map<string, KeyValue>([
      ['a', { ...kv, key: 'a', modRevision: 5 }],
      ['b', { ...kv, key: 'b', value: 'x' }],
    ]);
    const looked: string[] = [];
    const lookup = (key: string): KeyValue | undefined => {
      looked.push(key);
      return state.get(key);
    };
    assert.equal(
      evaluateCompares(
        [
          { key: 'a', target: 'mod', op: '=', value: 5 },
          { key: 'a', target: 'value', op: '=', value: 'v1' },
          { key: 'b', target: 'value', op: '=', value: 'x' },
          { key: 'c', target: 'create', op: '=', value: 0 },
        ],
        lookup,
      ),
      true,
    );
    assert.deepEqual(looked, ['a', 'b', 'c']);

    looked.length = 0;
    assert.equal(
      evaluateCompares(
        [
          { key: 'a', target: 'mod', op: '=', value: 6 },
          { key: 'b', target: 'value', op: '=', value: 'x' },
        ],
        lookup,
      ),
      false,
    );
    assert.deepEqual(looked, ['a'], 'stops at the first compare that fails');
    assert.equal(evaluateCompares([], lookup), true, 'no compares: the success branch');
  });
});
