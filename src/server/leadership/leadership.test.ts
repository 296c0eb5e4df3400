import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CompactedError } from '../../core/errors.ts';
import { silentLogger } from '../../core/log.ts';
import { createStore } from '../../store/index.ts';
import type { Store } from '../../store/types.ts';
import { mock } from '../../testing/mock.ts';
import { waitFor } from '../../testing/wait.ts';
import { StateCache } from '../cache.ts';
import { eventOp, putOp } from '../events.ts';
import { keys } from '../keys.ts';
import { Leadership } from './leadership.ts';

describe('leadership', () => {
  let store: Store;
  let cache: StateCache;
  let leader: Leadership;

  before(async () => {
    store = await createStore('memory:');
    cache = new StateCache(store, silentLogger());
    await cache.start();
    leader = new Leadership({
      store,
      cache,
      log: silentLogger(),
      serverId: 's1',
      retention: {
        events: 10,
        eventAgeMs: 3_600_000,
        evalAgeMs: 60_000,
        revisions: 20,
        intervalMs: 3_600_000,
      },
    });
    leader.start();
    await waitFor(() => leader.isLeader);
  });

  after(async () => {
    await leader.stop();
    cache.stop();
    await store.close();
  });

  test('a second server does not lead while the first holds the lease', async () => {
    const other = new Leadership({ store, cache, log: silentLogger(), serverId: 's2' });
    other.start();
    try {
      // Give the contender a round trip to lose: the key must still be s1's.
      await waitFor(async () => {
        const line = (await store.range({ prefix: keys.leaders })).kvs;
        return (
          line.length === 2 && line.sort((a, b) => a.createRevision - b.createRevision)[0]?.value === 's1'
        );
      });
      assert.equal(other.isLeader, false);
    } finally {
      await other.stop();
    }
    assert.equal(leader.isLeader, true);
  });

  test('the garbage collector trims old events, finished evaluations and history', async () => {
    const now = Date.now();
    for (let i = 0; i < 30; i++)
      await store.txn({
        success: [eventOp({ topic: 'job', type: 'test', message: `event ${i}` }, now - 1000 + i)],
      });
    const job = mock.job();
    const old = mock.evaluation(job, { status: 'complete', modifiedAt: now - 120_000 });
    const newestOfJob = mock.evaluation(job, { status: 'complete', modifiedAt: now - 90_000 });
    const pending = mock.evaluation(job, { status: 'pending', modifiedAt: now - 120_000 });
    // A pending evaluation would be picked up by the broker; keep it for a job that does not exist.
    await store.txn({
      success: [
        putOp(keys.evaluation(old.id), old),
        putOp(keys.evaluation(newestOfJob.id), newestOfJob),
        putOp(keys.evaluation(pending.id), { ...pending, status: 'blocked' }),
      ],
    });
    await cache.waitForIndex((await store.status()).revision);

    const result = await leader.collectGarbage(now);
    assert.equal(result.events, 20, 'only the newest 10 events stay');
    assert.equal(result.evaluations, 1, 'only the old finished evaluation goes');
    const events = await store.range({ prefix: '/unum/events/' });
    assert.equal(events.count, 10);
    assert.ok(events.kvs.every((kv) => JSON.parse(kv.value).message.match(/event (2\d)/)));
    assert.equal(await store.get(keys.evaluation(old.id)), undefined);
    assert.ok(await store.get(keys.evaluation(newestOfJob.id)));
    assert.ok(await store.get(keys.evaluation(pending.id)));
    const status = await store.status();
    assert.equal(status.compactRevision, status.revision - 20, 'the last 20 revisions of history stay');
    assert.equal(result.compactedTo, status.compactRevision);
    await assert.rejects(store.get(keys.evaluation(old.id), { revision: 1 }), CompactedError);
  });
});
