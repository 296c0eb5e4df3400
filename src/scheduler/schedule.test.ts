import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Plan } from '../core/types.ts';
import { mock } from '../testing/mock.ts';
import { SchedulerHarness } from '../testing/scheduler-harness.ts';
import { emptyPlan } from './generic.ts';
import { schedulers } from './schedule.ts';
import type { Scheduler } from './types.ts';

describe('schedule picks a scheduler by job type', () => {
  test('every job type that exists today has a scheduler', () => {
    assert.deepEqual(Object.keys(schedulers).sort(), ['batch', 'service']);
    for (const type of ['service', 'batch'] as const) {
      const h = new SchedulerHarness();
      h.nodes.push(mock.node());
      const job = mock.job({ type, count: 2 });
      h.jobs.push(job);
      assert.equal(h.run(mock.evaluation(job)).place.length, 2, type);
    }
  });

  test('the job type decides which scheduler runs', () => {
    const h = new SchedulerHarness();
    const calls: string[] = [];
    const recording =
      (name: string): Scheduler =>
      (snapshot, evaluation) => {
        calls.push(name);
        return emptyPlan(evaluation, snapshot.job(evaluation.namespace, evaluation.jobId));
      };
    h.schedulers = { service: recording('service'), batch: recording('batch') };
    const batch = mock.job({ type: 'batch' });
    const service = mock.job({ type: 'service' });
    h.jobs.push(batch, service);
    h.run(mock.evaluation(batch));
    h.run(mock.evaluation(service));
    assert.deepEqual(calls, ['batch', 'service']);
  });

  test('a type without a scheduler gives a failed plan with the reason, not a throw', () => {
    const h = new SchedulerHarness();
    h.nodes.push(mock.node());
    h.schedulers = { batch: schedulers.batch };
    const job = mock.job({ type: 'service' });
    h.jobs.push(job);
    const plan: Plan = h.run(mock.evaluation(job));
    assert.equal(plan.error, 'no scheduler for job type "service"');
    assert.deepEqual([plan.place, plan.stop, plan.inPlace], [[], [], []]);
  });
});
