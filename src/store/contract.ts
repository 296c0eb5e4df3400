/**
 * The Store contract: every backend runs this suite (`runStoreContract('sqlite', () => open())`).
 * Each test gets a fresh store from `newStore` and closes it. Tests wait for conditions with a
 * deadline (`waitFor`), never on a fixed delay, and assert no timings.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CompactedError, InvalidError, NotFoundError, UnavailableError } from '../core/errors.ts';
import { waitFor } from '../testing/wait.ts';
import type { KeyValue, Store, TxnResult, WatchEvent, WatchOptions, Watcher } from './types.ts';

interface Recorder {
  events: WatchEvent[];
  /** The arrays onEvents was called with, as received. */
  batches: WatchEvent[][];
  errors: Error[];
  watcher: Watcher;
}

function record(store: Store, options: WatchOptions): Recorder {
  const recorder: Omit<Recorder, 'watcher'> = { events: [], batches: [], errors: [] };
  const watcher = store.watch(options, {
    onEvents(events) {
      recorder.batches.push(events);
      recorder.events.push(...events);
    },
    onError(err) {
      recorder.errors.push(err);
    },
  });
  return { ...recorder, watcher };
}

/** `put k@3`, `delete k@4`: compact and readable in assertion diffs. */
function describeEvent(event: WatchEvent): string {
  return `${event.type} ${event.kv.key}@${event.kv.modRevision}`;
}

async function waitForEvents(recorder: Recorder, count: number, what: string): Promise<void> {
  await waitFor(() => recorder.events.length >= count || recorder.errors.length > 0, {
    timeoutMs: 15_000,
    description: `${what}: ${count} events (have ${recorder.events.length})`,
  });
  assert.deepEqual(recorder.errors, [], `${what}: watch failed`);
}

function codePointOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export function runStoreContract(name: string, newStore: () => Promise<Store>): void {
  async function withStore(fn: (store: Store) => Promise<void>): Promise<void> {
    const store = await newStore();
    try {
      await fn(store);
    } finally {
      await store.close();
    }
  }

  void describe(`Store contract: ${name}`, () => {
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

    void describe('transactions', () => {
      void test('compares choose the branch; each branch returns its op results', () =>
        withStore(async (store) => {
          const { revision } = await store.put('acct', '100');
          const ok = await store.txn({
            compare: [
              { key: 'acct', target: 'mod', op: '=', value: revision },
              { key: 'acct', target: 'value', op: '=', value: '100' },
            ],
            success: [
              { type: 'put', key: 'acct', value: '90' },
              { type: 'put', key: 'log/1', value: 'debit 10' },
            ],
            failure: [{ type: 'get', key: 'acct' }],
          });
          assert.equal(ok.succeeded, true);
          assert.equal(ok.revision, revision + 1);
          assert.equal(ok.results.length, 2);
          assert.deepEqual(ok.results[0], {
            type: 'put',
            prevKv: { key: 'acct', value: '100', createRevision: 1, modRevision: 1, version: 1, lease: 0 },
          });
          assert.deepEqual(ok.results[1], { type: 'put' });

          const stale = await store.txn({
            compare: [{ key: 'acct', target: 'mod', op: '=', value: revision }],
            success: [{ type: 'put', key: 'acct', value: '80' }],
            failure: [
              { type: 'get', key: 'acct' },
              { type: 'get', prefix: 'log/' },
            ],
          });
          assert.equal(stale.succeeded, false);
          assert.equal(stale.revision, revision + 1);
          const [acct, logs] = stale.results as Array<{ type: 'get'; kvs: KeyValue[] }>;
          assert.deepEqual(
            acct?.kvs.map((kv) => kv.value),
            ['90'],
          );
          assert.deepEqual(
            logs?.kvs.map((kv) => kv.key),
            ['log/1'],
          );
          assert.equal((await store.get('acct'))?.value, '90');
        }));

      void test('a missing key compares as mod, create, version and lease 0 and no value', () =>
        withStore(async (store) => {
          const holds = async (compare: Parameters<Store['txn']>[0]['compare']): Promise<boolean> =>
            (await store.txn(compare === undefined ? { success: [] } : { compare, success: [] })).succeeded;
          for (const target of ['mod', 'create', 'version', 'lease'] as const) {
            assert.equal(await holds([{ key: 'ghost', target, op: '=', value: 0 }]), true, `${target} = 0`);
            assert.equal(await holds([{ key: 'ghost', target, op: '>', value: 0 }]), false, `${target} > 0`);
          }
          assert.equal(await holds([{ key: 'ghost', target: 'value', op: '=', value: '' }]), false);
          assert.equal(await holds([{ key: 'ghost', target: 'value', op: '!=', value: 'x' }]), true);
          // The usual "create if absent".
          const created = await store.txn({
            compare: [{ key: 'ghost', target: 'create', op: '=', value: 0 }],
            success: [{ type: 'put', key: 'ghost', value: 'boo' }],
          });
          assert.equal(created.succeeded, true);
          assert.equal(await holds([{ key: 'ghost', target: 'create', op: '=', value: 0 }]), false);
        }));

      void test('compares on create, version, value and lease with every operator', () =>
        withStore(async (store) => {
          const lease = await store.grantLease(60);
          await store.put('other', '0'); // 1
          await store.put('k', 'a', { lease: lease.id }); // 2
          await store.put('k', 'b', { lease: lease.id }); // 3
          const holds = async (
            compare: NonNullable<Parameters<Store['txn']>[0]['compare']>,
          ): Promise<boolean> => (await store.txn({ compare, success: [] })).succeeded;
          assert.equal(await holds([{ key: 'k', target: 'create', op: '=', value: 2 }]), true);
          assert.equal(await holds([{ key: 'k', target: 'create', op: '<', value: 3 }]), true);
          assert.equal(await holds([{ key: 'k', target: 'create', op: '>', value: 2 }]), false);
          assert.equal(await holds([{ key: 'k', target: 'mod', op: '>', value: 2 }]), true);
          assert.equal(await holds([{ key: 'k', target: 'mod', op: '!=', value: 3 }]), false);
          assert.equal(await holds([{ key: 'k', target: 'version', op: '=', value: 2 }]), true);
          assert.equal(await holds([{ key: 'k', target: 'version', op: '<', value: 2 }]), false);
          assert.equal(await holds([{ key: 'k', target: 'value', op: '=', value: 'b' }]), true);
          assert.equal(await holds([{ key: 'k', target: 'value', op: '!=', value: 'b' }]), false);
          assert.equal(await holds([{ key: 'k', target: 'lease', op: '=', value: lease.id }]), true);
          assert.equal(await holds([{ key: 'k', target: 'lease', op: '!=', value: 0 }]), true);
          assert.equal(await holds([{ key: 'other', target: 'lease', op: '=', value: 0 }]), true);
          // All compares must hold.
          assert.equal(
            await holds([
              { key: 'k', target: 'version', op: '=', value: 2 },
              { key: 'other', target: 'version', op: '=', value: 2 },
            ]),
            false,
          );
        }));

      void test('a get inside a transaction sees the earlier writes of the same transaction', () =>
        withStore(async (store) => {
          await store.put('g/old', 'x');
          const result = await store.txn({
            success: [
              { type: 'put', key: 'g/new', value: 'y' },
              { type: 'delete', key: 'g/old' },
              { type: 'get', prefix: 'g/' },
            ],
          });
          const get = result.results[2] as { type: 'get'; kvs: KeyValue[] };
          assert.deepEqual(
            get.kvs.map((kv) => [kv.key, kv.modRevision]),
            [['g/new', 2]],
          );
          assert.deepEqual(result.results[1], { type: 'delete', deleted: 1 });
        }));

      void test('of 20 compare-and-swaps launched at once on one modRevision, exactly one wins', () =>
        withStore(async (store) => {
          const { revision } = await store.put('cas', 'v0');
          const attempts = await Promise.all(
            Array.from({ length: 20 }, (_, i) =>
              store.txn({
                compare: [{ key: 'cas', target: 'mod', op: '=', value: revision }],
                success: [{ type: 'put', key: 'cas', value: `writer-${i}` }],
                failure: [{ type: 'get', key: 'cas' }],
              }),
            ),
          );
          const winners = attempts.flatMap((result, i) => (result.succeeded ? [i] : []));
          assert.equal(winners.length, 1, `winners: ${winners.join(', ')}`);
          const winner = `writer-${winners[0]}`;
          assert.equal((await store.get('cas'))?.value, winner);
          assert.equal((await store.get('cas'))?.modRevision, revision + 1);
          assert.equal((await store.status()).revision, revision + 1);
          for (const result of attempts) {
            if (result.succeeded) continue;
            const seen = (result.results[0] as { type: 'get'; kvs: KeyValue[] }).kvs[0];
            assert.equal(seen?.value, winner, 'a loser sees the winner');
          }
        }));

      void test('concurrent read-modify-write loops with compare-and-swap lose no increment', () =>
        withStore(async (store) => {
          await store.put('counter', '0');
          const increment = async (): Promise<number> => {
            for (let attempt = 0; attempt < 1000; attempt++) {
              const current = (await store.get('counter'))!;
              const result: TxnResult = await store.txn({
                compare: [{ key: 'counter', target: 'mod', op: '=', value: current.modRevision }],
                success: [{ type: 'put', key: 'counter', value: String(Number(current.value) + 1) }],
              });
              if (result.succeeded) return result.revision;
            }
            throw new Error('increment: too many conflicts');
          };
          const workers = Array.from({ length: 8 }, async () => {
            const revisions: number[] = [];
            for (let i = 0; i < 10; i++) revisions.push(await increment());
            return revisions;
          });
          const revisions = (await Promise.all(workers)).flat();
          assert.equal((await store.get('counter'))?.value, '80');
          assert.equal((await store.get('counter'))?.version, 81);
          assert.equal(new Set(revisions).size, 80, 'each successful increment has its own revision');
        }));

      void test('a put naming an unknown lease fails with NotFoundError and writes nothing', () =>
        withStore(async (store) => {
          await store.put('before', '1');
          await assert.rejects(store.put('k', 'v', { lease: 987_654 }), NotFoundError);
          await assert.rejects(
            store.txn({
              success: [
                { type: 'put', key: 'k1', value: 'v' },
                { type: 'put', key: 'k2', value: 'v', lease: 987_654 },
              ],
            }),
            NotFoundError,
          );
          assert.equal(await store.get('k'), undefined);
          assert.equal(await store.get('k1'), undefined);
          assert.equal((await store.status()).revision, 1);
          // The store keeps working, and writes that came along with the refused one were applied.
          const [a, refused, b] = await Promise.allSettled([
            store.put('x', '1'),
            store.put('y', '1', { lease: 987_654 }),
            store.put('z', '1'),
          ]);
          assert.equal(a.status, 'fulfilled');
          assert.equal(refused.status, 'rejected');
          assert.equal(b.status, 'fulfilled');
          assert.deepEqual(
            (await store.range({ prefix: '' })).kvs.map((kv) => kv.key),
            ['before', 'x', 'z'],
          );
          assert.equal((await store.status()).revision, 3);
        }));
    });

    void describe('watch', () => {
      void test('a key watch sees puts and deletes of that key only, with full metadata', () =>
        withStore(async (store) => {
          const watch = record(store, { key: 'w/a' });
          await store.put('w/a', '1'); // 1
          await store.put('w/ab', 'x'); // 2
          await store.put('w/a', '2'); // 3
          await store.delete({ key: 'w/a' }); // 4
          await store.put('w/a', '3'); // 5
          await waitForEvents(watch, 4, 'key watch');
          assert.deepEqual(watch.events, [
            {
              type: 'put',
              kv: { key: 'w/a', value: '1', createRevision: 1, modRevision: 1, version: 1, lease: 0 },
            },
            {
              type: 'put',
              kv: { key: 'w/a', value: '2', createRevision: 1, modRevision: 3, version: 2, lease: 0 },
            },
            {
              type: 'delete',
              kv: { key: 'w/a', value: '', createRevision: 0, modRevision: 4, version: 0, lease: 0 },
            },
            {
              type: 'put',
              kv: { key: 'w/a', value: '3', createRevision: 5, modRevision: 5, version: 1, lease: 0 },
            },
          ]);
          watch.watcher.cancel();
        }));

      void test('a prefix watch sees every key under the prefix and nothing else', () =>
        withStore(async (store) => {
          const watch = record(store, { prefix: 'svc/' });
          const sentinel = record(store, { key: 'sentinel' });
          await store.put('svc/a', '1');
          await store.put('svcx', '1');
          await store.put('other/svc/a', '1');
          await store.txn({
            success: [
              { type: 'put', key: 'svc/b', value: '1' },
              { type: 'put', key: 'svc/c', value: '1' },
            ],
          });
          await store.delete({ prefix: 'svc/' });
          await store.put('sentinel', 'done');
          await waitForEvents(sentinel, 1, 'sentinel');
          await waitForEvents(watch, 6, 'prefix watch');
          assert.deepEqual(watch.events.map(describeEvent), [
            'put svc/a@1',
            'put svc/b@4',
            'put svc/c@4',
            'delete svc/a@5',
            'delete svc/b@5',
            'delete svc/c@5',
          ]);
        }));

      void test('events are never delivered from inside watch() or the write call', () =>
        withStore(async (store) => {
          await store.put('s/1', 'a');
          let inside = false;
          let synchronous = 0;
          const events: WatchEvent[] = [];
          const listener = {
            onEvents(batch: WatchEvent[]) {
              if (inside) synchronous++;
              events.push(...batch);
            },
          };
          inside = true;
          const fromHistory = store.watch({ prefix: 's/', fromRevision: 1 }, listener);
          const live = store.watch({ prefix: 's/' }, listener);
          inside = false;
          await waitFor(() => events.length === 1);
          inside = true;
          const write = store.put('s/2', 'b');
          inside = false;
          await write;
          await waitFor(() => events.length === 3);
          assert.equal(synchronous, 0);
          fromHistory.cancel();
          live.cancel();
        }));

      void test('a watch resumed from revision R receives every later change in order, then live ones', () =>
        withStore(async (store) => {
          const expected: string[] = [];
          const present = new Set<string>();
          // A mix of creates, updates, deletes, multi-key transactions and unrelated keys.
          for (let i = 0; i < 60; i++) {
            const key = `r/${i % 7}`;
            if (i % 10 === 9) {
              const keys = [`r/t${i}a`, `r/t${i}b`, `r/t${i}c`];
              const { revision } = await store.txn({
                success: [
                  ...keys.map((k) => ({ type: 'put' as const, key: k, value: `${i}` })),
                  { type: 'put', key: 'z/other', value: `${i}` },
                ],
              });
              for (const k of keys) expected.push(`put ${k}@${revision}`);
            } else if (i % 5 === 4 && present.has(key)) {
              const { revision } = await store.delete({ key });
              present.delete(key);
              expected.push(`delete ${key}@${revision}`);
            } else {
              const { revision } = await store.put(key, `${i}`);
              present.add(key);
              expected.push(`put ${key}@${revision}`);
            }
            if (i % 4 === 0) await store.put(`unrelated/${i}`, 'x');
          }
          const from = 17;
          const resumed = expected.filter((line) => Number(line.split('@')[1]) >= from);
          const watch = record(store, { prefix: 'r/', fromRevision: from });
          await waitForEvents(watch, resumed.length, 'catch-up');
          assert.deepEqual(watch.events.map(describeEvent), resumed);

          // Live changes follow, without a gap or a duplicate.
          const live: string[] = [];
          for (let i = 0; i < 5; i++) {
            const { revision } = await store.put(`r/live${i}`, `${i}`);
            live.push(`put r/live${i}@${revision}`);
          }
          const { revision: deleted } = await store.delete({ prefix: 'r/live' });
          for (let i = 0; i < 5; i++) live.push(`delete r/live${i}@${deleted}`);
          await waitForEvents(watch, resumed.length + live.length, 'live after catch-up');
          const sentinel = record(store, { key: 'sentinel' });
          await store.put('sentinel', 'x');
          await waitForEvents(sentinel, 1, 'sentinel');
          assert.deepEqual(watch.events.map(describeEvent), [...resumed, ...live]);

          // Each onEvents call holds whole revisions.
          const batchOf = new Map<number, number>();
          watch.batches.forEach((batch, index) => {
            for (const event of batch) {
              const seen = batchOf.get(event.kv.modRevision);
              assert.ok(
                seen === undefined || seen === index,
                `revision ${event.kv.modRevision} split across calls`,
              );
              batchOf.set(event.kv.modRevision, index);
            }
          });
          watch.watcher.cancel();
        }));

      void test('a watch catching up over many revisions while writes continue has no gap or duplicate', () =>
        withStore(async (store) => {
          const total = 1500;
          const writers = 16;
          const writeRange = async (from: number, to: number): Promise<void> => {
            let next = from;
            await Promise.all(
              Array.from({ length: writers }, async () => {
                while (next < to) {
                  const i = next++;
                  await store.put(`m/${i % 50}`, `${i}`);
                }
              }),
            );
          };
          await writeRange(0, total);
          // A revision with more keys than one read step of a backend is still delivered whole.
          await Promise.all(Array.from({ length: 1200 }, (_, i) => store.put(`m/big/${i}`, 'x')));
          const bigDelete = await store.delete({ prefix: 'm/big/' });
          const watch = record(store, { prefix: 'm/', fromRevision: 1 });
          await writeRange(total, total + 300);
          const end = (await store.status()).revision;
          const expectedCount = end - 1 + 1200; // one event per revision, plus the 1200-key delete
          await waitForEvents(watch, expectedCount, 'long catch-up');
          const revisions = watch.events.map((event) => event.kv.modRevision);
          const perRevision = new Map<number, number>();
          for (const revision of revisions) perRevision.set(revision, (perRevision.get(revision) ?? 0) + 1);
          assert.equal(perRevision.get(bigDelete.revision), 1200);
          assert.deepEqual(
            [...perRevision.keys()],
            Array.from({ length: end }, (_, i) => i + 1),
          );
          for (let i = 1; i < revisions.length; i++)
            assert.ok(revisions[i]! >= revisions[i - 1]!, 'in order');
          assert.equal(revisions.length, expectedCount);
          const bigBatch = watch.batches.find((batch) =>
            batch.some((e) => e.kv.modRevision === bigDelete.revision),
          );
          assert.equal(bigBatch?.filter((e) => e.kv.modRevision === bigDelete.revision).length, 1200);
          watch.watcher.cancel();
        }));

      void test('prevKv carries the previous value, live and when resumed, only when asked', () =>
        withStore(async (store) => {
          const live = record(store, { key: 'p', prevKv: true });
          const plain = record(store, { key: 'p' });
          await store.put('p', 'v1'); // 1
          await store.put('p', 'v2'); // 2
          await store.delete({ key: 'p' }); // 3
          await waitForEvents(live, 3, 'prevKv live');
          await waitForEvents(plain, 3, 'plain');
          const expected: WatchEvent[] = [
            {
              type: 'put',
              kv: { key: 'p', value: 'v1', createRevision: 1, modRevision: 1, version: 1, lease: 0 },
            },
            {
              type: 'put',
              kv: { key: 'p', value: 'v2', createRevision: 1, modRevision: 2, version: 2, lease: 0 },
              prevKv: { key: 'p', value: 'v1', createRevision: 1, modRevision: 1, version: 1, lease: 0 },
            },
            {
              type: 'delete',
              kv: { key: 'p', value: '', createRevision: 0, modRevision: 3, version: 0, lease: 0 },
              prevKv: { key: 'p', value: 'v2', createRevision: 1, modRevision: 2, version: 2, lease: 0 },
            },
          ];
          assert.deepEqual(live.events, expected);
          assert.deepEqual(
            plain.events.map((event) => event.prevKv),
            [undefined, undefined, undefined],
          );
          const resumed = record(store, { key: 'p', prevKv: true, fromRevision: 1 });
          await waitForEvents(resumed, 3, 'prevKv resumed');
          assert.deepEqual(resumed.events, expected);
        }));

      void test('cancel stops delivery', () =>
        withStore(async (store) => {
          const cancelled = record(store, { key: 'c/k' });
          const witness = record(store, { prefix: 'c/' });
          cancelled.watcher.cancel();
          cancelled.watcher.cancel();
          await store.put('c/k', '1');
          await waitForEvents(witness, 1, 'witness');
          assert.deepEqual(cancelled.events, []);
          assert.deepEqual(cancelled.errors, []);
        }));

      void test('several watches on one key each get every event', () =>
        withStore(async (store) => {
          const watches = [
            record(store, { key: 'shared' }),
            record(store, { key: 'shared' }),
            record(store, { prefix: 'sha' }),
          ];
          await store.put('shared', '1');
          await store.put('shared', '2');
          for (const watch of watches) await waitForEvents(watch, 2, 'shared');
          for (const watch of watches)
            assert.deepEqual(watch.events.map(describeEvent), ['put shared@1', 'put shared@2']);
        }));

      void test('a watch from a future revision starts there', () =>
        withStore(async (store) => {
          await store.put('f', '0'); // 1
          const watch = record(store, { key: 'f', fromRevision: 3 });
          await store.put('f', '1'); // 2
          await store.put('f', '2'); // 3
          await store.put('f', '3'); // 4
          await waitForEvents(watch, 2, 'future watch');
          const sentinel = record(store, { key: 'sentinel' });
          await store.put('sentinel', 'x');
          await waitForEvents(sentinel, 1, 'sentinel');
          assert.deepEqual(watch.events.map(describeEvent), ['put f@3', 'put f@4']);
        }));

      void test('a watch from a compacted revision fails with CompactedError', () =>
        withStore(async (store) => {
          for (let i = 1; i <= 5; i++) await store.put('cw', `${i}`);
          await store.compact(4);
          const old = record(store, { key: 'cw', fromRevision: 2 });
          await waitFor(() => old.errors.length > 0);
          assert.equal(old.errors.length, 1);
          assert.ok(old.errors[0] instanceof CompactedError, `got ${String(old.errors[0])}`);
          assert.equal(old.errors[0].compactRevision, 4);
          assert.deepEqual(old.events, []);
          // From the compaction revision itself works, with prevKv from before it.
          const ok = record(store, { key: 'cw', fromRevision: 4, prevKv: true });
          await waitForEvents(ok, 2, 'watch at compact revision');
          assert.deepEqual(ok.events.map(describeEvent), ['put cw@4', 'put cw@5']);
          assert.equal(ok.events[0]?.prevKv?.value, '3');
        }));
    });

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

    void describe('leases', () => {
      void test('grant, attach keys, time to live, keep alive and revoke', () =>
        withStore(async (store) => {
          const lease = await store.grantLease(60);
          assert.equal(lease.ttlSeconds, 60);
          assert.ok(Number.isSafeInteger(lease.id) && lease.id > 0);
          const other = await store.grantLease(60);
          assert.notEqual(other.id, lease.id);
          assert.equal((await store.status()).revision, 0, 'a grant is not a key change');
          await store.put('l/b', '1', { lease: lease.id });
          await store.put('l/a', '1', { lease: lease.id });
          await store.put('l/free', '1');
          assert.equal((await store.get('l/a'))?.lease, lease.id);
          const ttl = await store.leaseTimeToLive(lease.id);
          assert.equal(ttl.id, lease.id);
          assert.equal(ttl.ttlSeconds, 60);
          assert.ok(
            ttl.remainingSeconds > 0 && ttl.remainingSeconds <= 60,
            `remaining ${ttl.remainingSeconds}`,
          );
          assert.deepEqual(ttl.keys, ['l/a', 'l/b']);
          assert.deepEqual(await store.keepAlive(lease.id), { id: lease.id, ttlSeconds: 60 });

          const watch = record(store, { prefix: 'l/' });
          const before = (await store.status()).revision;
          await store.revokeLease(lease.id);
          await waitForEvents(watch, 2, 'revoke events');
          assert.deepEqual(watch.events.map(describeEvent), [
            `delete l/a@${before + 1}`,
            `delete l/b@${before + 1}`,
          ]);
          assert.equal((await store.status()).revision, before + 1, 'one revision for all the keys');
          assert.deepEqual(
            (await store.range({ prefix: 'l/' })).kvs.map((kv) => kv.key),
            ['l/free'],
          );
          await assert.rejects(store.leaseTimeToLive(lease.id), NotFoundError);
          await assert.rejects(store.keepAlive(lease.id), NotFoundError);
          await assert.rejects(store.revokeLease(lease.id), NotFoundError);
          await assert.rejects(store.put('l/c', '1', { lease: lease.id }), NotFoundError);
          // Revoking a lease with no keys moves nothing.
          await store.revokeLease(other.id);
          assert.equal((await store.status()).revision, before + 1);
        }));

      void test('unknown leases are NotFoundError for keep alive, revoke and time to live', () =>
        withStore(async (store) => {
          await assert.rejects(store.keepAlive(424_242), NotFoundError);
          await assert.rejects(store.revokeLease(424_242), NotFoundError);
          await assert.rejects(store.leaseTimeToLive(424_242), NotFoundError);
        }));

      void test('a put without a lease detaches the key from its lease', () =>
        withStore(async (store) => {
          const lease = await store.grantLease(60);
          await store.put('d/k', '1', { lease: lease.id });
          await store.put('d/k', '2');
          assert.equal((await store.get('d/k'))?.lease, 0);
          assert.deepEqual((await store.leaseTimeToLive(lease.id)).keys, []);
          await store.revokeLease(lease.id);
          assert.equal((await store.get('d/k'))?.value, '2');
        }));

      void test('keepAlive renews a lease to its full TTL', () =>
        withStore(async (store) => {
          const lease = await store.grantLease(3);
          // Let some of the TTL pass (observed, not slept on), then renew.
          await waitFor(async () => (await store.leaseTimeToLive(lease.id)).remainingSeconds <= 2.5, {
            timeoutMs: 10_000,
          });
          assert.deepEqual(await store.keepAlive(lease.id), { id: lease.id, ttlSeconds: 3 });
          const renewed = await store.leaseTimeToLive(lease.id);
          assert.ok(renewed.remainingSeconds > 2.5, `remaining after keepAlive: ${renewed.remainingSeconds}`);
        }));

      void test('an expired lease deletes its keys in one revision and watchers see it', () =>
        withStore(async (store) => {
          const lease = await store.grantLease(1);
          await store.put('e/node-1', 'up', { lease: lease.id });
          await store.put('e/node-1/alloc', 'x', { lease: lease.id });
          await store.put('e/static', 'stays');
          const watch = record(store, { prefix: 'e/', prevKv: true });
          await waitForEvents(watch, 2, 'lease expiry');
          assert.deepEqual(
            watch.events.map((event) => [event.type, event.kv.key, event.prevKv?.value]),
            [
              ['delete', 'e/node-1', 'up'],
              ['delete', 'e/node-1/alloc', 'x'],
            ],
          );
          assert.equal(watch.events[0]?.kv.modRevision, watch.events[1]?.kv.modRevision);
          assert.equal(watch.events[0]?.kv.modRevision, 4);
          assert.deepEqual(
            (await store.range({ prefix: 'e/' })).kvs.map((kv) => kv.key),
            ['e/static'],
          );
          await assert.rejects(store.keepAlive(lease.id), NotFoundError);
          await assert.rejects(store.leaseTimeToLive(lease.id), NotFoundError);
        }));
    });

    void describe('close', () => {
      void test('after close every call fails with UnavailableError and watches end', () => {
        return (async () => {
          const store = await newStore();
          await store.put('k', 'v');
          const lease = await store.grantLease(60);
          const watch = record(store, { prefix: '' });
          await store.close();
          await store.close();
          await waitFor(() => watch.errors.length > 0);
          assert.ok(watch.errors[0] instanceof UnavailableError, `got ${String(watch.errors[0])}`);
          const calls: Array<[string, () => Promise<unknown>]> = [
            ['get', () => store.get('k')],
            ['range', () => store.range({ prefix: '' })],
            ['put', () => store.put('k', 'w')],
            ['delete', () => store.delete({ key: 'k' })],
            ['txn', () => store.txn({ success: [] })],
            ['grantLease', () => store.grantLease(10)],
            ['keepAlive', () => store.keepAlive(lease.id)],
            ['revokeLease', () => store.revokeLease(lease.id)],
            ['leaseTimeToLive', () => store.leaseTimeToLive(lease.id)],
            ['compact', () => store.compact(1)],
            ['status', () => store.status()],
          ];
          for (const [what, call] of calls) await assert.rejects(call(), UnavailableError, what);
          let inside = true;
          const late: Array<{ err: Error; inside: boolean }> = [];
          store.watch({ key: 'k' }, { onEvents() {}, onError: (err) => late.push({ err, inside }) });
          inside = false;
          await waitFor(() => late.length > 0);
          assert.ok(late[0]?.err instanceof UnavailableError);
          assert.equal(late[0].inside, false, 'not called from inside watch()');
        })();
      });
    });
  });
}
