/**
 * Picks the scheduler for an evaluation by its job's type, from an explicit factory map (as
 * drivers and store backends are chosen): adding a job type means adding an entry here.
 */
import type { JobType } from '../core/job-spec.ts';
import type { Evaluation, Plan } from '../core/types.ts';
import { emptyPlan, genericScheduler } from './generic.ts';
import type { Scheduler, SchedulerContext, Snapshot } from './types.ts';

/** The scheduler of each job type. Service and batch jobs differ only in reconcile's rules. */
export const schedulers: Readonly<Record<JobType, Scheduler>> = {
  service: genericScheduler,
  batch: genericScheduler,
};

/**
 * The plan for `evaluation`. A removed job is handed to the generic scheduler, which stops what is
 * left of it. A job type with no scheduler gives a plan with `error` set, never a throw.
 */
export function schedule(
  snapshot: Snapshot,
  evaluation: Evaluation,
  ctx: SchedulerContext,
  registry: Readonly<Partial<Record<string, Scheduler>>> = schedulers,
): Plan {
  const job = snapshot.job(evaluation.namespace, evaluation.jobId);
  if (!job) return genericScheduler(snapshot, evaluation, ctx);
  const scheduler = Object.hasOwn(registry, job.spec.type) ? registry[job.spec.type] : undefined;
  if (!scheduler)
    return { ...emptyPlan(evaluation, job), error: `no scheduler for job type "${job.spec.type}"` };
  return scheduler(snapshot, evaluation, ctx);
}
