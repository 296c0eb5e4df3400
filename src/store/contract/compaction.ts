/**
 * The Store contract: compaction.
 * Part of `runStoreContract` (../contract.ts); every backend runs it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CompactedError, InvalidError } from '../../core/errors.ts';
import { type ContractContext } from './harness.ts';

export function compactionContract({ withStore }: ContractContext): void {
  void describe('compaction', () => {
    void test('compaction keeps current values and every revision from the compaction on', () =>
      withStore(async (store) => {
        await store.put('a', '1'); // 1
        await store.put('a', '2'); // 2
        await store.put('b', '1'); // 3
        await store.delete({ key: 'b' }); // 4
        await store.put('c', '1'); // 5
        await store.put('a', '3'); // 6
        await store.put('d', '1'); // 7
        await store.delete({ key: 'd' }); // 8
        await store.compact(5);
        assert.deepEqual(await store.status(), { revision: 8, compactRevision: 5, backend: store.backend });
        assert.deepEqual(
          (await store.range({ prefix: '' })).kvs.map((kv) => [kv.key, kv.value, kv.modRevision]),
          [
            ['a', '3', 6],
            ['c', '1', 5],
          ],
        );
        assert.deepEqual(
          (await store.range({ prefix: '' }, { revision: 5 })).kvs.map((kv) => [
            kv.key,
            kv.value,
            kv.version,
          ]),
          [
            ['a', '2', 2],
            ['c', '1', 1],
          ],
        );
        assert.deepEqual(
          (await store.range({ prefix: '' }, { revision: 7 })).kvs.map((kv) => kv.key),
          ['a', 'c', 'd'],
        );
        assert.equal((await store.get('a', { revision: 5 }))?.value, '2');
        await assert.rejects(store.get('a', { revision: 4 }), CompactedError);
        await assert.rejects(store.range({ prefix: '' }, { revision: 1 }), (err) => {
          assert.ok(err instanceof CompactedError);
          assert.equal(err.compactRevision, 5);
          return true;
        });
        // Writes go on after a compaction, and a repeated or older compaction changes nothing.
        assert.equal((await store.put('a', '4')).revision, 9);
        await store.compact(5);
        await store.compact(3);
        assert.equal((await store.status()).compactRevision, 5);
        await assert.rejects(store.compact(100), InvalidError);
        await store.compact(9);
        assert.deepEqual(
          (await store.range({ prefix: '' }, { revision: 9 })).kvs.map((kv) => [kv.key, kv.value]),
          [
            ['a', '4'],
            ['c', '1'],
          ],
        );
      }));
  });
}
