/** Job transitions: submit a version, stop or purge. Each writes the job, an evaluation and an event together. */
import type { JobSpec } from '../../core/job-spec.ts';
import { stableStringify } from '../../core/json.ts';
import type { Job } from '../../core/types.ts';
import { eventOp, putOp } from '../events.ts';
import { keys } from '../keys.ts';
import { newEvaluation } from './evaluations.ts';
import { unchanged, type StateView } from './view.ts';
import type { Transition } from './write.ts';

/** Idempotency keys a job remembers: enough for any client's retries of its recent submissions. */
export const KEPT_SUBMISSION_KEYS = 16;

/** The job a submission makes: version 0, or one past the current version. */
export function nextVersion(spec: JobSpec, existing: Job | undefined, now: number, key?: string): Job {
  const keys = [...(existing?.submissionKeys ?? []), ...(key === undefined ? [] : [key])];
  return {
    id: spec.job,
    namespace: spec.namespace,
    version: existing ? existing.version + 1 : 0,
    stop: false,
    status: 'pending',
    submittedAt: now,
    spec,
    ...(keys.length > 0 ? { submissionKeys: keys.slice(-KEPT_SUBMISSION_KEYS) } : {}),
  };
}

export interface RegisterResult {
  job: Job;
  /** False when the submission equals the running version: nothing was written. */
  changed: boolean;
  evalId?: string;
}

/**
 * Submit a job or a new version of it. Submitting the same spec again changes nothing, and neither
 * does a submission whose `idempotencyKey` already made a version (a retry after a lost answer: the
 * job as it is now is the answer, even if others changed it since).
 */
export function registerJob(
  view: StateView,
  spec: JobSpec,
  now: number,
  actor: string,
  idempotencyKey?: string,
): Transition<RegisterResult> {
  const key = keys.job(spec.namespace, spec.job);
  const existing = view.job(spec.namespace, spec.job);
  if (idempotencyKey !== undefined && existing?.submissionKeys?.includes(idempotencyKey))
    return { done: { job: existing, changed: false } };
  if (existing && !existing.stop && stableStringify(existing.spec) === stableStringify(spec))
    return { done: { job: existing, changed: false } };
  const job = nextVersion(spec, existing, now, idempotencyKey);
  const evaluation = newEvaluation(job.namespace, job.id, spec.priority, 'job-register', now);
  return {
    compare: [unchanged(view, key)],
    ops: [
      putOp(key, job),
      putOp(keys.evaluation(evaluation.id), evaluation),
      eventOp(
        {
          topic: 'job',
          type: existing ? 'job-updated' : 'job-registered',
          namespace: job.namespace,
          jobId: job.id,
          evalId: evaluation.id,
          message: `job ${job.id} ${existing ? `updated to version ${job.version}` : 'registered'}`,
          actor,
        },
        now,
      ),
    ],
    result: { job, changed: true, evalId: evaluation.id },
  };
}

/** Stop a job (its allocations stop); `purge` also forgets it. */
export function stopJob(
  view: StateView,
  job: Job,
  purge: boolean,
  now: number,
  actor: string,
): Transition<{ evalId: string }> {
  const key = keys.job(job.namespace, job.id);
  const evaluation = newEvaluation(job.namespace, job.id, job.spec.priority, 'job-deregister', now);
  return {
    compare: [unchanged(view, key)],
    ops: [
      purge ? { type: 'delete', key } : putOp(key, { ...job, stop: true }),
      putOp(keys.evaluation(evaluation.id), evaluation),
      eventOp(
        {
          topic: 'job',
          type: purge ? 'job-purged' : 'job-stopped',
          namespace: job.namespace,
          jobId: job.id,
          evalId: evaluation.id,
          message: `job ${job.id} ${purge ? 'purged' : 'stopped'}`,
          actor,
        },
        now,
      ),
    ],
    result: { evalId: evaluation.id },
  };
}
