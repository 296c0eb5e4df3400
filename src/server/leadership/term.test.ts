import assert from 'node:assert/strict';
import { after, beforeEach, describe, test } from 'node:test';
import { FakeClock } from '../../core/clock.ts';
import { NotLeaderError } from '../../core/errors.ts';
import { silentLogger } from '../../core/log.ts';
import type { Evaluation } from '../../core/types.ts';
import { schedule } from '../../scheduler/schedule.ts';
import { createStore } from '../../store/index.ts';
import type { Store } from '../../store/types.ts';
import { mock } from '../../testing/mock.ts';
import { StateCache } from '../cache.ts';
import { putOp } from '../events.ts';
import { keys, prefixes } from '../keys.ts';
import { PlanApplier } from '../plan-applier.ts';
import { Election } from './election.ts';
import { Term } from './term.ts';

describe('leadership terms fence every write', () => {
  let store: Store;
  let cache: StateCache;
  const clock = new FakeClock();
  const log = silentLogger();
  const stores: Store[] = [];

  const election = (candidate: string) =>
    new Election({ store, prefix: keys.leaders, candidate, ttlSeconds: 30, log });

  async function elect(candidate: string): Promise<{ term: Term; leaseId: number }> {
    const elected = await election(candidate).campaign(new AbortController().signal);
    assert.ok(elected, `${candidate} is elected`);
    return { term: new Term(store, elected.key, candidate, elected.revision), leaseId: elected.leaseId };
  }

  /** A ready node heartbeating, a job wanting one instance, and its pending evaluation. */
  async function seed(): Promise<Evaluation> {
    const node = mock.node();
    const job = mock.job();
    const evaluation = mock.evaluation(job);
    const lease = await store.grantLease(60);
    await store.txn({
      success: [
        putOp(keys.node(node.id), node),
        { type: 'put', key: keys.heartbeat(node.id), value: '0', lease: lease.id },
        putOp(keys.job(job.namespace, job.id), job),
        putOp(keys.evaluation(evaluation.id), evaluation),
      ],
    });
    await cache.waitForIndex((await store.status()).revision);
    return evaluation;
  }

  const placed = async () => (await store.range({ prefix: prefixes.allocs })).kvs.length;
  const plan = (evaluation: Evaluation) =>
    schedule(cache, evaluation, { now: clock.now(), newId: () => crypto.randomUUID(), random: () => 0.5 });

  beforeEach(async () => {
    store = await createStore('memory:');
    stores.push(store);
    cache = new StateCache(store, log);
    await cache.start();
  });

  after(async () => {
    cache.stop();
    for (const s of stores) await s.close();
  });

  test('a plan made in term N and applied after the step-down is refused; the new leader’s plan lands', async () => {
    const evaluation = await seed();
    const applier = new PlanApplier(cache, log, clock);
    const first = await elect('s1');
    const late = plan(evaluation);
    assert.equal(late.place.length, 1, 'the scheduler proposed a placement');

    // s1 steps down (its lease is given up) and s2 is elected.
    first.term.end('stepped down');
    await election('s1').resign({ leaseId: first.leaseId, key: '', revision: first.term.revision });
    const second = await elect('s2');
    assert.ok(second.term.revision > first.term.revision, 'fencing tokens grow');

    const revisionBefore = (await store.status()).revision;
    await assert.rejects(applier.apply(late, evaluation, first.term), NotLeaderError);
    assert.equal((await store.status()).revision, revisionBefore, 'nothing was written');
    assert.equal(await placed(), 0);

    const result = await applier.apply(plan(evaluation), evaluation, second.term);
    assert.equal(result.ok, true);
    assert.equal(await placed(), 1, "the new leader's plan landed");
  });

  test('a deposed leader that does not know it yet is refused by the fence, and its term ends', async () => {
    const evaluation = await seed();
    const applier = new PlanApplier(cache, log, clock);
    const first = await elect('s1');
    const late = plan(evaluation);
    // s1 is paused while its lease runs out: the key goes, s2 takes over; s1's term still looks on.
    await store.revokeLease(first.leaseId);
    const second = await elect('s2');
    assert.equal(first.term.active, true);

    await assert.rejects(applier.apply(late, evaluation, first.term), (err: unknown) => {
      assert.ok(err instanceof NotLeaderError);
      assert.equal(err.code, 'not_leader');
      assert.match(err.message, /another leader took over/);
      return true;
    });
    assert.equal(first.term.active, false, 'the term ended when its fence failed');
    assert.equal(await placed(), 0);
    assert.equal((await applier.apply(plan(evaluation), evaluation, second.term)).ok, true);
  });

  test("a failed compare of the caller's own is a conflict, not a lost term", async () => {
    const { term } = await elect('s1');
    const res = await term.txn({
      compare: [{ key: '/unum/test', target: 'version', op: '=', value: 7 }],
      success: [{ type: 'put', key: '/unum/test', value: 'x' }],
    });
    assert.equal(res.succeeded, false);
    assert.deepEqual(res.results, [], "the term's own read is not handed back");
    assert.equal(term.active, true);
    const ok = await term.txn({ success: [{ type: 'put', key: '/unum/test', value: 'y' }] });
    assert.equal(ok.succeeded, true);
  });

  test('a write after the term ended is refused before it is sent', async () => {
    const { term } = await elect('s1');
    term.end('lost the leader lease');
    const revision = (await store.status()).revision;
    await assert.rejects(
      term.txn({ success: [{ type: 'put', key: '/unum/x', value: '1' }] }),
      /lost the leader lease/,
    );
    assert.equal((await store.status()).revision, revision);
    assert.equal(term.signal.aborted, true);
  });
});
