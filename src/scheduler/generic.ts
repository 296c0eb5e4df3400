/**
 * The scheduler for service and batch jobs (Nomad's generic scheduler): reconcile says what must
 * change, then each instance to place goes through feasibility (filters) and ranking (scores).
 * Pure: it reads a Snapshot and the context it is given, and returns a Plan.
 */
import { holdsResources } from '../core/alloc.ts';
import { groupResources, type GroupSpec } from '../core/job-spec.ts';
import type { Allocation, Evaluation, Job, PlacementFailure, Plan, PlanStop } from '../core/types.ts';
import { book, unbook } from './fit.ts';
import { CycleState } from './framework.ts';
import { placeOne, summarizeFailure } from './placement.ts';
import { reconcile, type Placement } from './reconcile.ts';
import type { SchedulerContext, Snapshot } from './types.ts';

/** A plan that changes nothing yet, for `evaluation` of `job`. */
export function emptyPlan(evaluation: Evaluation, job: Job | undefined): Plan {
  return {
    evalId: evaluation.id,
    namespace: evaluation.namespace,
    jobId: evaluation.jobId,
    jobVersion: job?.version ?? -1,
    place: [],
    inPlace: [],
    stop: [],
    preempt: [],
    failedGroups: {},
    followups: [],
  };
}

export function genericScheduler(snapshot: Snapshot, evaluation: Evaluation, ctx: SchedulerContext): Plan {
  const job = snapshot.job(evaluation.namespace, evaluation.jobId);
  const plan = emptyPlan(evaluation, job);
  const changes = reconcile(job, snapshot.allocsOfJob(evaluation.namespace, evaluation.jobId), {
    now: ctx.now,
    node: (id) => snapshot.node(id),
  });
  plan.inPlace.push(...changes.inPlace);
  if (!job || job.stop) {
    plan.stop.push(...changes.stop);
    return plan;
  }

  // Usage per node as the plan leaves it, so several placements in one plan pack correctly.
  const state = new CycleState(snapshot);
  const stop = (a: Allocation, description: string): PlanStop => {
    const entry: PlanStop = { allocId: a.id, description };
    plan.stop.push(entry);
    const node = snapshot.node(a.nodeId);
    if (node && holdsResources(a)) unbook(state.usageOf(node), a);
    return entry;
  };
  const byId = new Map(snapshot.allocsOfJob(job.namespace, job.id).map((a) => [a.id, a]));
  const stops = new Map<string, PlanStop>();
  for (const s of changes.stop) {
    const a = byId.get(s.allocId);
    if (a) stops.set(a.id, stop(a, s.description));
  }
  // A destructive update is a stop and a placement that takes the old instance's index.
  const toPlace: Placement[] = [...changes.place];
  for (const d of changes.destructive) {
    stops.set(d.alloc.id, stop(d.alloc, d.description));
    toPlace.push({ group: d.group, index: d.alloc.index, previous: d.alloc, rescheduleEvents: [] });
  }

  const nodes = snapshot.readyNodes();
  for (const group of job.spec.groups) {
    const mine = toPlace.filter((p) => p.group.name === group.name).sort((x, y) => x.index - y.index);
    const resources = groupResources(group);
    let failure: PlacementFailure | undefined;
    for (const p of mine) {
      if (failure) {
        failure.unplaced++;
        continue;
      }
      const outcome = placeOne(nodes, { job: job.spec, group, resources }, state, ctx.random);
      if (!outcome.node || !outcome.ports) {
        const f = outcome.failure ?? { nodesEvaluated: nodes.length, nodesFiltered: {}, nodesExhausted: {} };
        failure = {
          ...f,
          unplaced: 1,
          summary: summarizeFailure(f, resources, nodes, (n) => state.usageOf(n)),
        };
        continue;
      }
      const alloc = newAllocation(
        job,
        group,
        p.index,
        outcome.node.id,
        outcome.ports,
        evaluation.id,
        ctx,
        p.rescheduleEvents,
      );
      if (outcome.devices) alloc.resources.devices = outcome.devices;
      if (p.previous) {
        alloc.previousAllocId = p.previous.id;
        const stopped = stops.get(p.previous.id);
        if (stopped) stopped.nextAllocId = alloc.id;
        else
          plan.stop.push({
            allocId: p.previous.id,
            description: p.replaces ?? 'replaced',
            nextAllocId: alloc.id,
          });
      }
      book(state.usageOf(outcome.node), alloc);
      plan.place.push(alloc);
    }
    if (failure) plan.failedGroups[group.name] = failure;
  }
  for (const f of changes.followups) {
    plan.followups.push({
      id: ctx.newId(),
      namespace: job.namespace,
      jobId: job.id,
      priority: job.spec.priority,
      triggeredBy: 'reschedule',
      status: 'pending',
      statusDescription: f.description,
      waitUntil: f.waitUntil,
      previousEvalId: evaluation.id,
      createdAt: ctx.now,
      modifiedAt: ctx.now,
    });
  }
  return plan;
}

function newAllocation(
  job: Job,
  group: GroupSpec,
  index: number,
  nodeId: string,
  ports: Allocation['resources']['ports'],
  evalId: string,
  ctx: SchedulerContext,
  rescheduleEvents: Allocation['rescheduleEvents'],
): Allocation {
  const resources = groupResources(group);
  return {
    id: ctx.newId(),
    namespace: job.namespace,
    jobId: job.id,
    jobVersion: job.version,
    jobType: job.spec.type,
    name: `${job.id}.${group.name}[${index}]`,
    group: group.name,
    index,
    nodeId,
    groupSpec: group,
    resources: {
      cpu: resources.cpu,
      memory: resources.memory,
      ...(group.ephemeral !== undefined ? { disk: group.ephemeral.sizeMiB } : {}),
      ports,
    },
    desiredStatus: 'run',
    clientStatus: 'pending',
    taskStates: {},
    evalId,
    rescheduleEvents,
    createdAt: ctx.now,
    modifiedAt: ctx.now,
  };
}
