/**
 * Allocation transitions on the client side: what an agent reports, and what the leader decides
 * when a node is lost. Both go through `changeAlloc`, so an allocation that becomes failed or lost
 * gets the same events and the same evaluation whoever noticed it.
 */
import { isActive } from '../../core/alloc.ts';
import { shortId } from '../../core/ids.ts';
import { stableStringify } from '../../core/json.ts';
import type { Allocation, Evaluation } from '../../core/types.ts';
import type { ParsedAllocStatusUpdate } from '../../api/schemas.ts';
import type { Compare, TxnOp } from '../../store/types.ts';
import { eventOp, putOp } from '../events.ts';
import { keys } from '../keys.ts';
import { newEvaluation } from './evaluations.ts';
import { unchanged, type StateView } from './view.ts';
import type { Transition } from './write.ts';

/** The writes of one allocation moving from `prev` to `next`: the allocation, its task events, its status event. */
export function changeAlloc(prev: Allocation, next: Allocation, now: number, actor: string): TxnOp[] {
  const ops: TxnOp[] = [putOp(keys.alloc(next.id), next)];
  for (const [task, state] of Object.entries(next.taskStates)) {
    const seen = Math.max(0, ...(prev.taskStates[task]?.events ?? []).map((e) => e.time));
    for (const e of state.events) {
      if (e.time <= seen) continue;
      ops.push(
        eventOp(
          {
            topic: 'task',
            type: `task-${e.type}`,
            namespace: prev.namespace,
            jobId: prev.jobId,
            allocId: prev.id,
            nodeId: prev.nodeId,
            task,
            message: `${prev.name} (${shortId(prev.id)}) ${task}: ${e.message}`,
            time: e.time,
            actor,
          },
          now,
        ),
      );
    }
  }
  if (next.clientStatus !== prev.clientStatus)
    ops.push(
      eventOp(
        {
          topic: 'allocation',
          type: `alloc-${next.clientStatus}`,
          namespace: prev.namespace,
          jobId: prev.jobId,
          allocId: prev.id,
          nodeId: prev.nodeId,
          message: `${prev.name} (${shortId(prev.id)}) is ${next.clientStatus}${next.clientDescription ? `: ${next.clientDescription}` : ''}`,
          actor,
        },
        now,
      ),
    );
  return ops;
}

/** The event of an allocation told to stop (or preempted), with the reason: written once for the applier and the drain. */
export function stoppingEvent(
  a: Allocation,
  description: string,
  now: number,
  actor: string,
  preempted = false,
): TxnOp {
  return eventOp(
    {
      topic: 'allocation',
      type: preempted ? 'alloc-preempted' : 'alloc-stopping',
      namespace: a.namespace,
      jobId: a.jobId,
      allocId: a.id,
      nodeId: a.nodeId,
      message: `${preempted ? 'preempting' : 'stopping'} ${a.name} (${shortId(a.id)}): ${description}`,
      actor,
    },
    now,
  );
}

/** The scheduler must look at the job again: an instance it wants running failed, was lost, or a service exited. */
export function needsEvaluation(prev: Allocation, next: Allocation): boolean {
  return (
    next.clientStatus !== prev.clientStatus &&
    prev.desiredStatus === 'run' &&
    (next.clientStatus === 'failed' ||
      next.clientStatus === 'lost' ||
      (next.clientStatus === 'complete' && prev.jobType === 'service'))
  );
}

/** One evaluation per job among `allocs`, at the job's priority. */
export function evaluationsOf(
  view: StateView,
  allocs: Iterable<Allocation>,
  triggeredBy: Evaluation['triggeredBy'],
  now: number,
  nodeId?: string,
): TxnOp[] {
  const jobs = new Map<string, Allocation>();
  for (const a of allocs) jobs.set(`${a.namespace}/${a.jobId}`, a);
  return [...jobs.values()].map((a) => {
    const e = newEvaluation(
      a.namespace,
      a.jobId,
      view.job(a.namespace, a.jobId)?.spec.priority ?? 50,
      triggeredBy,
      now,
      nodeId,
    );
    return putOp(keys.evaluation(e.id), e);
  });
}

/** The allocation as an agent's report leaves it; undefined when the report changes nothing. */
export function reportedAlloc(
  a: Allocation,
  u: ParsedAllocStatusUpdate,
  now: number,
): Allocation | undefined {
  // A lost allocation stays lost until it finishes: the scheduler has replaced or will replace it.
  const clientStatus = a.clientStatus === 'lost' && isActive(u) ? 'lost' : u.clientStatus;
  const next: Allocation = {
    ...a,
    clientStatus,
    taskStates: u.taskStates as Allocation['taskStates'],
    modifiedAt: now,
  };
  if (u.clientDescription !== undefined) next.clientDescription = u.clientDescription;
  else delete next.clientDescription;
  if (u.healthy !== undefined) next.healthy = u.healthy;
  if (stableStringify({ ...a, modifiedAt: 0 }) === stableStringify({ ...next, modifiedAt: 0 }))
    return undefined;
  return next;
}

/**
 * An agent reports its allocations. Reports of allocations that are not on `nodeId` are ignored:
 * a node speaks only for its own work.
 */
export function reportAllocs(
  view: StateView,
  nodeId: string,
  updates: readonly ParsedAllocStatusUpdate[],
  now: number,
): Transition<void> {
  const compare: Compare[] = [];
  const ops: TxnOp[] = [];
  const evaluate: Allocation[] = [];
  for (const u of updates) {
    const a = view.alloc(u.allocId);
    if (!a || a.nodeId !== nodeId) continue;
    const next = reportedAlloc(a, u, now);
    if (!next) continue;
    compare.push(unchanged(view, keys.alloc(a.id)));
    ops.push(...changeAlloc(a, next, now, `node:${nodeId}`));
    if (needsEvaluation(a, next)) evaluate.push(a);
  }
  if (ops.length === 0) return { done: undefined };
  ops.push(...evaluationsOf(view, evaluate, 'alloc-failure', now));
  return { compare, ops, result: undefined };
}

/** The allocation after its node was lost. */
export function lostAlloc(a: Allocation, description: string, now: number): Allocation {
  return { ...a, clientStatus: 'lost', clientDescription: description, modifiedAt: now };
}
