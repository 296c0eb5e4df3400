/** Evaluations: how a reason to look at a job again is made, and how one ends. */
import { newId, shortId } from '../../core/ids.ts';
import type { Evaluation } from '../../core/types.ts';
import type { TxnOp } from '../../store/types.ts';
import { eventOp, putOp } from '../events.ts';
import { keys } from '../keys.ts';

export function newEvaluation(
  namespace: string,
  jobId: string,
  priority: number,
  triggeredBy: Evaluation['triggeredBy'],
  now: number,
  nodeId?: string,
): Evaluation {
  return {
    id: newId(),
    namespace,
    jobId,
    priority,
    triggeredBy,
    status: 'pending',
    createdAt: now,
    modifiedAt: now,
    ...(nodeId ? { nodeId } : {}),
  };
}

/** The writes that end an evaluation as failed, with the event saying why. */
export function failEvaluation(evaluation: Evaluation, reason: string, now: number, actor: string): TxnOp[] {
  return [
    putOp(keys.evaluation(evaluation.id), {
      ...evaluation,
      status: 'failed',
      statusDescription: reason,
      modifiedAt: now,
    }),
    eventOp(
      {
        topic: 'evaluation',
        type: 'eval-failed',
        namespace: evaluation.namespace,
        jobId: evaluation.jobId,
        evalId: evaluation.id,
        message: `evaluation ${shortId(evaluation.id)} failed: ${reason}`,
        actor,
      },
      now,
    ),
  ];
}
