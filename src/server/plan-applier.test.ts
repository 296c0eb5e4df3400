import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { Evaluation, Plan } from '../core/types.ts';
import { schedule } from '../scheduler/schedule.ts';
import { mock } from '../testing/mock.ts';
import { startServerCore, type ServerCore } from '../testing/server-core.ts';
import { keys } from './keys.ts';
import { PlanApplier } from './plan-applier.ts';

describe('plan applier', () => {
  let core: ServerCore;
  beforeEach(async () => {
    core = await startServerCore();
  });
  afterEach(() => core.close());

  const planFor = (e: Evaluation): Plan =>
    schedule(core.cache, e, { now: core.clock.now(), newId: () => crypto.randomUUID(), random: () => 0.5 });

  async function setup(count: number, memory = 64) {
    const node = mock.node({ memory: 1024 });
    const job = mock.job({ count, memory });
    const evaluation = mock.evaluation(job);
    await core.seed({ nodes: [node], jobs: [job], evals: [evaluation] });
    await core.heartbeat(node);
    const { term } = await core.elect();
    return { node, job, evaluation, term, applier: new PlanApplier(core.cache, core.log, core.clock) };
  }

  test('commits placements, the evaluation outcome and events in one revision', async () => {
    const { evaluation, term, applier } = await setup(2);
    const before = (await core.store.status()).revision;
    const result = await applier.apply(planFor(evaluation), evaluation, term);
    assert.equal(result.ok, true);
    assert.equal(result.revision, before + 1, 'one transaction');
    const allocs = core.cache.listAllocs();
    assert.equal(allocs.length, 2);
    assert.equal(core.cache.evaluation(evaluation.id)?.status, 'complete');
    assert.equal(core.cache.events.filter((e) => e.type === 'alloc-placed').length, 2);
    assert.ok(allocs.every((a) => core.cache.revisionOf(keys.alloc(a.id)) === result.revision));
  });

  test('a plan that no longer fits is refused with the reason, and nothing is written', async () => {
    const { node, job, evaluation, term, applier } = await setup(1, 600);
    const stale = planFor(evaluation);
    // Something else took most of the node's memory meanwhile.
    await core.seed({ allocs: [mock.alloc(mock.job({ memory: 600 }), node, { clientStatus: 'running' })] });
    const before = (await core.store.status()).revision;
    const result = await applier.apply(stale, evaluation, term);
    assert.equal(result.ok, false);
    assert.match(result.reason ?? '', /no longer has room/);
    assert.equal((await core.store.status()).revision, before);
    assert.equal(core.cache.allocsOfJob(job.namespace, job.id).length, 0);
  });

  test('a plan for a node that went silent after the scheduler ran is refused', async () => {
    const { node, evaluation, term, applier } = await setup(1);
    const plan = planFor(evaluation);
    await core.silence(node);
    const result = await applier.apply(plan, evaluation, term);
    assert.equal(result.ok, false);
    assert.match(result.reason ?? '', /no longer ready/);
    assert.equal(core.cache.listAllocs().length, 0);
  });

  test('a plan that cannot place everything blocks its evaluation and says why', async () => {
    const { job, evaluation, term, applier } = await setup(1, 4096);
    const result = await applier.apply(planFor(evaluation), evaluation, term);
    assert.equal(result.ok, true);
    assert.equal(result.evaluation?.status, 'blocked');
    assert.ok(core.cache.events.some((e) => e.type === 'placement-failed' && e.jobId === job.id));
  });
});
