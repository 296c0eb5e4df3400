/**
 * The Store contract: watches: key and prefix, history catch-up, ordering, prevKv, compaction, cancel.
 * Part of `runStoreContract` (../contract.ts); every backend runs it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CompactedError } from '../../core/errors.ts';
import type { WatchEvent } from '../types.ts';
import { type ContractContext, describeEvent, record } from './harness.ts';

export function watchContract({ withStore, waitForEvents, waitFor }: ContractContext): void {
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
        for (let i = 1; i < revisions.length; i++) assert.ok(revisions[i]! >= revisions[i - 1]!, 'in order');
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
}
