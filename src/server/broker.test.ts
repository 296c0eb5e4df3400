import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../core/clock.ts';
import { mock } from '../testing/mock.ts';
import { EvalBroker } from './broker.ts';

const now = () => AbortSignal.timeout(1000);

test('evaluations come out by priority, then age; one per job in flight', async () => {
  const clock = new FakeClock();
  const broker = new EvalBroker(clock);
  broker.setEnabled(true);
  const [a, b] = [mock.job(), mock.job()];
  const low = mock.evaluation(a, { priority: 10, createdAt: 1 });
  const high = mock.evaluation(b, { priority: 90, createdAt: 2 });
  const sameJob = mock.evaluation(b, { priority: 90, createdAt: 3 });
  for (const e of [low, high, sameJob]) broker.enqueue(e);
  broker.enqueue(high); // again: ignored until acked
  assert.equal((await broker.dequeue(now()))?.id, high.id);
  assert.equal((await broker.dequeue(now()))?.id, low.id, "the job's second waits for its first");
  broker.ack(high);
  assert.equal((await broker.dequeue(now()))?.id, sameJob.id);
  assert.deepEqual(broker.stats(), { ready: 0, inflight: 2, delayed: 0, blocked: 0 });
});

test('an evaluation with waitUntil sleeps until the clock reaches it', async () => {
  const clock = new FakeClock();
  const broker = new EvalBroker(clock);
  broker.setEnabled(true);
  const e = mock.evaluation(mock.job(), { waitUntil: clock.now() + 30_000 });
  broker.enqueue(e);
  assert.equal(broker.stats().delayed, 1);
  const taken = broker.dequeue(AbortSignal.timeout(5000));
  clock.advance(29_999);
  assert.equal(broker.stats().delayed, 1);
  clock.advance(1);
  assert.equal((await taken)?.id, e.id);
});

test('blocked evaluations wait for unblock; disabling drops everything and releases takers', async () => {
  const clock = new FakeClock();
  const broker = new EvalBroker(clock);
  broker.setEnabled(true);
  const job = mock.job();
  const e = mock.evaluation(job, { status: 'blocked' });
  broker.block(e);
  assert.equal(broker.blockedFor(job.namespace, job.id)?.id, e.id);
  broker.unblock();
  assert.equal((await broker.dequeue(now()))?.id, e.id);
  broker.enqueue(mock.evaluation(mock.job(), { waitUntil: clock.now() + 1000 }));
  const waiting = broker.dequeue();
  broker.setEnabled(false);
  assert.equal(await waiting, undefined);
  assert.deepEqual(broker.stats(), { ready: 0, inflight: 0, delayed: 0, blocked: 0 });
  assert.equal(clock.pending, 0, 'the delayed timer was cancelled');
  broker.enqueue(mock.evaluation(job));
  assert.equal(broker.stats().ready, 0, 'a disabled broker takes nothing');
});
