/**
 * The Store contract: keys, revisions, key metadata, get and range.
 * Part of `runStoreContract` (../contract.ts); every backend runs it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidError } from '../../core/errors.ts';
import type { Store } from '../types.ts';
import { type ContractContext, codePointOrder } from './harness.ts';

export function kvContract({ withStore }: ContractContext): void {
  void describe('revisions', () => {
    void test('an empty store is at revision 0 and the first write makes it 1', () =>
      withStore(async (store) => {
        assert.deepEqual(await store.status(), { revision: 0, compactRevision: 0, backend: store.backend });
        assert.equal((await store.range({ prefix: '' })).revision, 0);
        assert.equal((await store.put('a', '1')).revision, 1);
        assert.equal((await store.put('b', '2')).revision, 2);
        assert.equal((await store.status()).revision, 2);
      }));

    void test('a transaction with several puts commits them all at one revision', () =>
      withStore(async (store) => {
        await store.put('x', '0');
        const result = await store.txn({
          success: [
            { type: 'put', key: 't/1', value: 'a' },
            { type: 'put', key: 't/2', value: 'b' },
            { type: 'delete', key: 'x' },
            { type: 'put', key: 't/3', value: 'c' },
          ],
        });
        assert.equal(result.revision, 2);
        const { kvs } = await store.range({ prefix: 't/' });
        assert.deepEqual(
          kvs.map((kv) => [kv.key, kv.modRevision, kv.createRevision]),
          [
            ['t/1', 2, 2],
            ['t/2', 2, 2],
            ['t/3', 2, 2],
          ],
        );
        assert.equal(await store.get('x'), undefined);
        assert.equal((await store.status()).revision, 2);
      }));

    void test('reads, empty deletes, read-only and failed transactions do not move the revision', () =>
      withStore(async (store) => {
        await store.put('k', 'v');
        await store.get('k');
        await store.range({ prefix: '' }, { countOnly: true });
        assert.deepEqual(await store.delete({ key: 'missing' }), { revision: 1, deleted: 0 });
        assert.deepEqual(await store.delete({ prefix: 'nothing/' }), { revision: 1, deleted: 0 });
        const readOnly = await store.txn({ success: [{ type: 'get', key: 'k' }] });
        assert.equal(readOnly.revision, 1);
        const failed = await store.txn({
          compare: [{ key: 'k', target: 'value', op: '=', value: 'other' }],
          success: [{ type: 'put', key: 'k', value: 'w' }],
        });
        assert.equal(failed.succeeded, false);
        assert.equal(failed.revision, 1);
        assert.deepEqual(failed.results, []);
        assert.equal((await store.status()).revision, 1);
      }));

    void test('writes launched together each get their own revision, all visible once acknowledged', () =>
      withStore(async (store) => {
        await store.put('start', '0');
        const results = await Promise.all(
          Array.from({ length: 30 }, (_, i) => store.put(`c/${String(i).padStart(2, '0')}`, `${i}`)),
        );
        const revisions = results.map((r) => r.revision).sort((a, b) => a - b);
        assert.deepEqual(
          revisions,
          Array.from({ length: 30 }, (_, i) => i + 2),
        );
        const { kvs, revision } = await store.range({ prefix: 'c/' });
        assert.equal(kvs.length, 30);
        assert.equal(revision, 31);
        for (const [i, kv] of kvs.entries()) {
          assert.equal(kv.value, `${i}`);
          assert.equal(kv.modRevision, results[i]!.revision);
        }
      }));
  });

  void describe('key metadata', () => {
    void test('create, mod and version follow puts, and a delete then recreate starts over', () =>
      withStore(async (store) => {
        await store.put('other', 'x'); // 1
        await store.put('k', 'v1'); // 2
        assert.deepEqual(await store.get('k'), {
          key: 'k',
          value: 'v1',
          createRevision: 2,
          modRevision: 2,
          version: 1,
          lease: 0,
        });
        const second = await store.put('k', 'v2'); // 3
        assert.equal(second.revision, 3);
        assert.deepEqual(second.prevKv, {
          key: 'k',
          value: 'v1',
          createRevision: 2,
          modRevision: 2,
          version: 1,
          lease: 0,
        });
        assert.deepEqual(await store.get('k'), {
          key: 'k',
          value: 'v2',
          createRevision: 2,
          modRevision: 3,
          version: 2,
          lease: 0,
        });
        assert.deepEqual(await store.delete({ key: 'k' }), { revision: 4, deleted: 1 });
        assert.equal(await store.get('k'), undefined);
        const recreated = await store.put('k', 'v3'); // 5
        assert.equal(recreated.prevKv, undefined);
        assert.deepEqual(await store.get('k'), {
          key: 'k',
          value: 'v3',
          createRevision: 5,
          modRevision: 5,
          version: 1,
          lease: 0,
        });
      }));

    void test('values are stored verbatim, including empty and non-ASCII strings', () =>
      withStore(async (store) => {
        const values = ['', ' ', '{"a":[1,2]}', 'ünïcødé ✓ 😀', 'line\nbreak', 'x'.repeat(100_000)];
        for (const [i, value] of values.entries()) await store.put(`v/${i}`, value);
        const { kvs } = await store.range({ prefix: 'v/' });
        assert.deepEqual(
          kvs.map((kv) => kv.value),
          values,
        );
      }));
  });

  void describe('get and range', () => {
    const keys = ['a', 'a/1', 'a/2', 'a/3', 'a0', 'ab', 'b', 'é/1', 'é/2', 'ê', '😀/x'];

    async function fill(store: Store): Promise<void> {
      for (const key of keys) await store.put(key, `value of ${key}`);
    }

    void test('get returns one key or undefined', () =>
      withStore(async (store) => {
        await fill(store);
        assert.equal((await store.get('a/2'))?.value, 'value of a/2');
        assert.equal(await store.get('a/'), undefined);
        assert.equal(await store.get('zzz'), undefined);
        const byKey = await store.range({ key: 'a' });
        assert.deepEqual(
          byKey.kvs.map((kv) => kv.key),
          ['a'],
        );
        assert.equal(byKey.count, 1);
      }));

    void test('a prefix selects exactly the keys that start with it, sorted', () =>
      withStore(async (store) => {
        await fill(store);
        const prefixed = await store.range({ prefix: 'a/' });
        assert.deepEqual(
          prefixed.kvs.map((kv) => kv.key),
          ['a/1', 'a/2', 'a/3'],
        );
        assert.equal(prefixed.count, 3);
        assert.equal(prefixed.more, false);
        assert.deepEqual(
          (await store.range({ prefix: 'é' })).kvs.map((kv) => kv.key),
          ['é/1', 'é/2'],
        );
        assert.deepEqual(
          (await store.range({ prefix: '😀' })).kvs.map((kv) => kv.key),
          ['😀/x'],
        );
        const all = await store.range({ prefix: '' });
        assert.deepEqual(
          all.kvs.map((kv) => kv.key),
          [...keys].sort(codePointOrder),
        );
        assert.equal(all.revision, keys.length);
      }));

    void test('limit returns the first keys and says there are more; count covers them all', () =>
      withStore(async (store) => {
        await fill(store);
        const limited = await store.range({ prefix: 'a' }, { limit: 2 });
        assert.deepEqual(
          limited.kvs.map((kv) => kv.key),
          ['a', 'a/1'],
        );
        assert.equal(limited.more, true);
        assert.equal(limited.count, 6);
        const exact = await store.range({ prefix: 'a/' }, { limit: 3 });
        assert.equal(exact.more, false);
        assert.equal(exact.kvs.length, 3);
        assert.equal((await store.range({ prefix: 'a/' }, { limit: 0 })).kvs.length, 3);
      }));

    void test('paging with after visits every key exactly once, in order', () =>
      withStore(async (store) => {
        for (let i = 0; i < 23; i++) await store.put(`page/${String(i).padStart(3, '0')}`, `${i}`);
        await store.put('pagf', 'outside');
        const seen: string[] = [];
        let after: string | undefined;
        for (let pages = 0; pages < 20; pages++) {
          const page = await store.range(
            { prefix: 'page/' },
            after === undefined ? { limit: 5 } : { limit: 5, after },
          );
          seen.push(...page.kvs.map((kv) => kv.key));
          if (!page.more) break;
          after = page.kvs[page.kvs.length - 1]!.key;
        }
        assert.deepEqual(
          seen,
          Array.from({ length: 23 }, (_, i) => `page/${String(i).padStart(3, '0')}`),
        );
        assert.deepEqual((await store.range({ key: 'page/001' }, { after: 'page/001' })).kvs, []);
      }));

    void test('countOnly counts without returning values', () =>
      withStore(async (store) => {
        await fill(store);
        const counted = await store.range({ prefix: 'a' }, { countOnly: true });
        assert.deepEqual(counted.kvs, []);
        assert.equal(counted.count, 6);
        assert.equal((await store.range({ key: 'b' }, { countOnly: true })).count, 1);
        assert.equal((await store.range({ key: 'nope' }, { countOnly: true })).count, 0);
      }));

    void test('delete by prefix removes only the matching keys, at one revision', () =>
      withStore(async (store) => {
        await fill(store);
        const before = (await store.status()).revision;
        assert.deepEqual(await store.delete({ prefix: 'a/' }), { revision: before + 1, deleted: 3 });
        assert.deepEqual(
          (await store.range({ prefix: 'a' })).kvs.map((kv) => kv.key),
          ['a', 'a0', 'ab'],
        );
      }));

    void test('a range at a past revision sees the values of that revision', () =>
      withStore(async (store) => {
        await store.put('h/a', '1'); // 1
        await store.put('h/b', '1'); // 2
        await store.put('h/a', '2'); // 3
        await store.delete({ key: 'h/b' }); // 4
        await store.put('h/c', '1'); // 5
        const at2 = await store.range({ prefix: 'h/' }, { revision: 2 });
        assert.deepEqual(
          at2.kvs.map((kv) => [kv.key, kv.value, kv.modRevision, kv.version]),
          [
            ['h/a', '1', 1, 1],
            ['h/b', '1', 2, 1],
          ],
        );
        assert.equal(at2.revision, 5, 'the result carries the current revision');
        const at4 = await store.range({ prefix: 'h/' }, { revision: 4 });
        assert.deepEqual(
          at4.kvs.map((kv) => [kv.key, kv.value, kv.modRevision, kv.version]),
          [['h/a', '2', 3, 2]],
        );
        assert.equal((await store.get('h/a', { revision: 1 }))?.value, '1');
        assert.equal(await store.get('h/b', { revision: 4 }), undefined);
        assert.equal(await store.get('h/c', { revision: 4 }), undefined);
        const paged = await store.range({ prefix: 'h/' }, { revision: 3, limit: 1 });
        assert.deepEqual(
          paged.kvs.map((kv) => kv.key),
          ['h/a'],
        );
        assert.equal(paged.more, true);
        assert.equal(paged.count, 2);
        const next = await store.range({ prefix: 'h/' }, { revision: 3, after: 'h/a' });
        assert.deepEqual(
          next.kvs.map((kv) => kv.key),
          ['h/b'],
        );
        assert.equal((await store.range({ prefix: 'h/' }, { revision: 3, countOnly: true })).count, 2);
      }));

    void test('a read at a future revision is refused', () =>
      withStore(async (store) => {
        await store.put('k', 'v');
        await assert.rejects(store.get('k', { revision: 5 }), InvalidError);
        await assert.rejects(store.range({ prefix: '' }, { revision: 2 }), InvalidError);
      }));

    void test('bad input is refused with InvalidError', () =>
      withStore(async (store) => {
        await assert.rejects(store.put('', 'v'), InvalidError);
        await assert.rejects(store.get(''), InvalidError);
        await assert.rejects(store.range({ prefix: '' }, { limit: -1 }), InvalidError);
        await assert.rejects(
          store.txn({
            success: [
              { type: 'put', key: 'd', value: '1' },
              { type: 'put', key: 'd', value: '2' },
            ],
          }),
          InvalidError,
        );
        await assert.rejects(store.grantLease(0), InvalidError);
        assert.equal((await store.status()).revision, 0);
      }));
  });
}
