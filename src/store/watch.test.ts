import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CompactedError, UnavailableError } from '../core/errors.ts';
import { createStore } from './index.ts';
import { watchEvents } from './watch.ts';

void describe('watchEvents', () => {
  void test('yields the events of whole revisions in order, history first', async () => {
    const store = await createStore('memory:');
    try {
      await store.put('a/1', 'x'); // 1
      await store.txn({
        success: [
          { type: 'put', key: 'a/2', value: 'y' },
          { type: 'put', key: 'a/3', value: 'z' },
        ],
      }); // 2
      const seen: string[][] = [];
      const events = watchEvents(store, { prefix: 'a/', fromRevision: 1 });
      const writes = (async () => {
        await store.put('b', 'ignored');
        await store.delete({ key: 'a/1' });
      })();
      for await (const batch of events) {
        seen.push(batch.map((e) => `${e.type} ${e.kv.key}@${e.kv.modRevision}`));
        if (seen.flat().length === 4) break;
      }
      await writes;
      assert.deepEqual(seen.flat(), ['put a/1@1', 'put a/2@2', 'put a/3@2', 'delete a/1@4']);
      for (const batch of seen) {
        if (batch.includes('put a/2@2')) assert.ok(batch.includes('put a/3@2'), 'revision 2 in one batch');
      }
    } finally {
      await store.close();
    }
  });

  void test('leaving the loop cancels the watch', async () => {
    const store = await createStore('memory:');
    try {
      const events = watchEvents(store, { key: 'k' });
      await store.put('k', '1');
      for await (const batch of events) {
        assert.equal(batch[0]?.kv.value, '1');
        break;
      }
      await store.put('k', '2');
      assert.deepEqual(await events.next(), { value: undefined, done: true });
    } finally {
      await store.close();
    }
  });

  void test('cancel and abort end a waiting loop', async () => {
    const store = await createStore('memory:');
    try {
      const cancelled = watchEvents(store, { key: 'k' });
      const pending = cancelled.next();
      cancelled.cancel();
      assert.deepEqual(await pending, { value: undefined, done: true });

      const controller = new AbortController();
      const aborted = watchEvents(store, { key: 'k' }, controller.signal);
      const waiting = aborted.next();
      controller.abort();
      assert.deepEqual(await waiting, { value: undefined, done: true });

      const early = watchEvents(store, { key: 'k' }, AbortSignal.abort());
      assert.deepEqual(await early.next(), { value: undefined, done: true });
    } finally {
      await store.close();
    }
  });

  void test('a watch error is thrown from the loop', async () => {
    const store = await createStore('memory:');
    try {
      for (let i = 0; i < 3; i++) await store.put('k', `${i}`);
      await store.compact(3);
      await assert.rejects(async () => {
        for await (const _ of watchEvents(store, { key: 'k', fromRevision: 1 })) {
          assert.fail('no events from a compacted revision');
        }
      }, CompactedError);
    } finally {
      await store.close();
    }
  });

  void test('events received before the store closes are yielded, then UnavailableError', async () => {
    const store = await createStore('memory:');
    const events = watchEvents(store, { key: 'k' });
    await store.put('k', '1');
    await store.close();
    assert.equal((await events.next()).value?.[0]?.kv.value, '1');
    await assert.rejects(events.next(), UnavailableError);
    assert.deepEqual(await events.next(), { value: undefined, done: true });
  });
});
