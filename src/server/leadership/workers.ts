/**
 * Scheduler workers: each takes an evaluation from the broker, asks the scheduler for a plan on the
 * cache's current state, and hands it to the plan applier under the term it was started in. A plan
 * refused because the state moved is made again on fresher state, a few times; then the evaluation
 * fails with the reason. When the term ends the worker stops; its plan, if late, is refused.
 */
import type { Clock } from '../../core/clock.ts';
import { NotLeaderError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { Evaluation } from '../../core/types.ts';
import { schedule } from '../../scheduler/schedule.ts';
import type { EvalBroker } from '../broker.ts';
import type { StateCache } from '../cache.ts';
import type { PlanApplier } from '../plan-applier.ts';
import { failEvaluation } from '../state/evaluations.ts';
import type { Term } from './term.ts';

export const PLAN_ATTEMPTS = 5;

export interface WorkerDeps {
  broker: EvalBroker;
  cache: StateCache;
  applier: PlanApplier;
  clock: Clock;
  log: Logger;
  newId: () => string;
  random: () => number;
}

export async function runWorker(worker: number, term: Term, d: WorkerDeps): Promise<void> {
  while (term.active) {
    const evaluation = await d.broker.dequeue(term.signal);
    if (!evaluation) break;
    try {
      await processEvaluation(evaluation, term, d);
    } catch (err) {
      if (err instanceof NotLeaderError) d.log.info({ evalId: evaluation.id, worker }, err.message);
      else d.log.error({ err, evalId: evaluation.id, worker }, 'evaluation failed');
    } finally {
      d.broker.ack(evaluation);
    }
  }
}

/** Schedules one evaluation and commits its plan under `term`. NotLeaderError once the term ended. */
export async function processEvaluation(evaluation: Evaluation, term: Term, d: WorkerDeps): Promise<void> {
  let reason = '';
  for (let attempt = 0; attempt < PLAN_ATTEMPTS; attempt++) {
    term.check();
    const plan = schedule(d.cache, evaluation, { now: d.clock.now(), newId: d.newId, random: d.random });
    const result = await d.applier.apply(plan, evaluation, term);
    if (result.ok) {
      if (result.evaluation?.status === 'blocked') d.broker.block(result.evaluation);
      return;
    }
    reason = result.reason ?? 'refused';
    await d.cache.waitForIndex(result.revision);
  }
  await term.txn({
    success: failEvaluation(
      evaluation,
      `plan refused ${PLAN_ATTEMPTS} times: ${reason}`,
      d.clock.now(),
      term.actor,
    ),
  });
}
