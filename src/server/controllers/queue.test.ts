import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../../core/clock.ts';
import { WorkQueue } from './queue.ts';

const signal = new AbortController().signal;

test('a key added many times is handed out once', async () => {
  const q = new WorkQueue(new FakeClock());
  q.add('a');
  q.add('b');
  q.add('a');
  assert.equal(q.length, 2);
  assert.equal(await q.get(signal), 'a');
  assert.equal(await q.get(signal), 'b');
});

test('a key added while it is processed runs once more after, never twice at once', async () => {
  const q = new WorkQueue(new FakeClock());
  q.add('n1');
  const key = await q.get(signal);
  q.add('n1');
  q.add('n1');
  assert.equal(q.length, 0, 'not handed out while in process');
  q.done(key!);
  assert.equal(q.length, 1);
  assert.equal(await q.get(signal), 'n1');
});

test('a waiting worker gets the next key; abort and shut-down release it', async () => {
  const q = new WorkQueue(new FakeClock());
  const waiting = q.get(signal);
  q.add('x');
  assert.equal(await waiting, 'x');
  const abort = new AbortController();
  const aborted = q.get(abort.signal);
  abort.abort();
  assert.equal(await aborted, undefined);
  const closed = q.get(signal);
  q.shutDown();
  assert.equal(await closed, undefined);
  q.add('y');
  assert.equal(q.length, 0, 'a shut-down queue takes nothing');
});

test('addAfter waits on the clock, and the earliest delay of a key wins', async () => {
  const clock = new FakeClock();
  const q = new WorkQueue(clock);
  q.addAfter('k', 1000);
  q.addAfter('k', 5000);
  clock.advance(999);
  assert.equal(q.length, 0);
  clock.advance(1);
  assert.equal(q.length, 1);
  assert.equal(await q.get(signal), 'k');
  q.done('k');
  clock.advance(10_000);
  assert.equal(q.length, 0, 'the later delay was dropped');
});

test('failures back off exponentially up to the cap; forget starts over', async () => {
  const clock = new FakeClock();
  const q = new WorkQueue(clock, { baseMs: 100, maxMs: 350 });
  /** Fails the key once and returns how long it took to come back. */
  const fail = async (): Promise<number> => {
    q.addRateLimited('k');
    let waited = 0;
    while (q.length === 0 && waited < 10_000) {
      clock.advance(1);
      waited++;
    }
    q.done((await q.get(signal))!);
    return waited;
  };
  assert.deepEqual([await fail(), await fail(), await fail(), await fail()], [100, 200, 350, 350]);
  q.forget('k');
  assert.equal(await fail(), 100);
});
