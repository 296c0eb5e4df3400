/**
 * The scheduler for service and batch jobs: compares what the job wants with the allocations it has
 * and proposes a Plan (placements, stops, follow-up evaluations). Pure: it reads a Snapshot and the
 * context it is given, and returns a value.
 */
import { groupResources, type GroupSpec, type ReschedulePolicy } from '../core/job-spec.ts';
import type { Allocation, Evaluation, Job, Node, PlacementFailure, Plan } from '../core/types.ts';
import { book, placeOne, summarizeFailure, unbook, usageFromAllocs, type NodeUsage } from './placement.ts';
import type { SchedulerContext, Snapshot } from './types.ts';

export function schedule(snapshot: Snapshot, evaluation: Evaluation, ctx: SchedulerContext): Plan {
  const job = snapshot.job(evaluation.namespace, evaluation.jobId);
  const plan: Plan = {
    evalId: evaluation.id,
    namespace: evaluation.namespace,
    jobId: evaluation.jobId,
    jobVersion: job?.version ?? -1,
    place: [],
    stop: [],
    failedGroups: {},
    followups: [],
  };
  const allocs = snapshot.allocsOfJob(evaluation.namespace, evaluation.jobId);
  const live = allocs.filter((a) => a.desiredStatus === 'run');

  if (!job || job.stop) {
    for (const a of live) plan.stop.push({ allocId: a.id, description: job ? 'job stopped' : 'job removed' });
    return plan;
  }

  // Usage per node as the plan would leave it, so several placements in one plan pack correctly.
  const usage = new Map<string, NodeUsage>();
  const usageOf = (node: Node): NodeUsage => {
    let u = usage.get(node.id);
    if (!u) {
      u = usageFromAllocs(snapshot.allocsOnNode(node.id));
      usage.set(node.id, u);
    }
    return u;
  };
  const stop = (a: Allocation, description: string) => {
    plan.stop.push({ allocId: a.id, description });
    const node = snapshot.node(a.nodeId);
    if (node && a.clientStatus !== 'complete' && a.clientStatus !== 'failed' && a.clientStatus !== 'lost')
      unbook(usageOf(node), a);
  };
  const nodes = snapshot.readyNodes();
  let earliestRetry: number | undefined;

  const specGroups = new Set(job.spec.groups.map((g) => g.name));
  for (const a of live) if (!specGroups.has(a.group)) stop(a, `group ${a.group} removed from the job`);

  for (const group of job.spec.groups) {
    const mine = live.filter((a) => a.group === group.name);
    const byIndex = new Map<number, Allocation[]>();
    for (const a of mine) {
      if (a.index >= group.count) {
        stop(a, `scaled down to ${group.count}`);
        continue;
      }
      const list = byIndex.get(a.index) ?? [];
      list.push(a);
      byIndex.set(a.index, list);
    }

    /** `replaces` names a finished allocation this one takes over from once placed. */
    const toPlace: {
      index: number;
      previous?: Allocation;
      replaces?: string;
      rescheduleEvents: Allocation['rescheduleEvents'];
    }[] = [];
    for (let index = 0; index < group.count; index++) {
      const holders = (byIndex.get(index) ?? []).sort((x, y) => y.createdAt - x.createdAt);
      // Two holders of one index can only come from a race: keep the newest.
      for (const extra of holders.slice(1)) stop(extra, 'duplicate instance');
      const a = holders[0];
      if (!a) {
        toPlace.push({ index, rescheduleEvents: [] });
        continue;
      }
      const node = snapshot.node(a.nodeId);
      const nodeGone = !node || node.status === 'down';
      switch (a.clientStatus) {
        case 'pending':
        case 'running':
          if (nodeGone) {
            stop(a, 'node is down');
            toPlace.push({ index, previous: a, rescheduleEvents: a.rescheduleEvents });
          } else if (a.jobVersion !== job.version && needsReplacement(a.groupSpec, group)) {
            stop(a, `updated to job version ${job.version}`);
            toPlace.push({ index, previous: a, rescheduleEvents: [] });
          } else if (a.jobVersion !== job.version) {
            // Only count or metadata changed: the running instance carries over untouched.
            plan.place.push({ ...a, jobVersion: job.version, groupSpec: group, modifiedAt: ctx.now });
          }
          break;
        case 'complete':
          if (
            job.spec.type === 'batch' &&
            !(a.jobVersion !== job.version && needsReplacement(a.groupSpec, group))
          )
            break; // done
          toPlace.push({
            index,
            previous: a,
            replaces: job.spec.type === 'batch' ? 'job updated' : 'service exited',
            rescheduleEvents: a.rescheduleEvents,
          });
          break;
        case 'lost':
          toPlace.push({ index, previous: a, replaces: 'node lost', rescheduleEvents: a.rescheduleEvents });
          break;
        case 'failed': {
          if (a.jobVersion !== job.version && needsReplacement(a.groupSpec, group)) {
            toPlace.push({
              index,
              previous: a,
              replaces: `updated to job version ${job.version}`,
              rescheduleEvents: [],
            });
            break;
          }
          const decision = rescheduleDecision(a, group.reschedule, ctx.now);
          if (decision.kind === 'never') break;
          if (decision.kind === 'later') {
            earliestRetry = Math.min(earliestRetry ?? Infinity, decision.at);
            break;
          }
          toPlace.push({
            index,
            previous: a,
            replaces: 'failed; rescheduled',
            rescheduleEvents: [
              ...a.rescheduleEvents,
              { time: ctx.now, prevAllocId: a.id, delayMs: decision.delayMs },
            ],
          });
          break;
        }
      }
    }

    const resources = groupResources(group);
    let failure: PlacementFailure | undefined;
    for (const p of toPlace) {
      if (failure) {
        failure.unplaced++;
        continue;
      }
      const outcome = placeOne(nodes, { job: job.spec, group, resources }, usageOf, ctx.random);
      if (!outcome.node || !outcome.ports) {
        const f = outcome.failure ?? { nodesEvaluated: nodes.length, nodesFiltered: {}, nodesExhausted: {} };
        failure = { ...f, unplaced: 1, summary: summarizeFailure(f, resources, nodes, usageOf) };
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
        const description =
          p.replaces ?? plan.stop.find((s) => s.allocId === p.previous?.id)?.description ?? 'replaced';
        plan.place.push({
          ...p.previous,
          desiredStatus: 'stop',
          desiredDescription: description,
          nextAllocId: alloc.id,
          modifiedAt: ctx.now,
        });
      }
      book(usageOf(outcome.node), alloc);
      plan.place.push(alloc);
    }
    if (failure) plan.failedGroups[group.name] = failure;
  }

  if (earliestRetry !== undefined) {
    plan.followups.push({
      id: ctx.newId(),
      namespace: job.namespace,
      jobId: job.id,
      priority: job.spec.priority,
      triggeredBy: 'reschedule',
      status: 'pending',
      statusDescription: 'waiting for the reschedule delay of a failed allocation',
      waitUntil: earliestRetry,
      previousEvalId: evaluation.id,
      createdAt: ctx.now,
      modifiedAt: ctx.now,
    });
  }
  return plan;
}

/** A change other than count means the instance must be replaced to take effect. */
export function needsReplacement(before: GroupSpec, after: GroupSpec): boolean {
  return JSON.stringify({ ...before, count: 0 }) !== JSON.stringify({ ...after, count: 0 });
}

type RescheduleDecision =
  { kind: 'now'; delayMs: number } | { kind: 'later'; at: number } | { kind: 'never' };

/** Whether a failed allocation may be replaced, and when (exponential backoff from `delay` to `maxDelay`). */
export function rescheduleDecision(a: Allocation, policy: ReschedulePolicy, now: number): RescheduleDecision {
  const recent = policy.unlimited
    ? a.rescheduleEvents
    : a.rescheduleEvents.filter((e) => e.time > now - policy.interval);
  if (!policy.unlimited && recent.length >= policy.attempts) return { kind: 'never' };
  const delayMs = Math.min(policy.maxDelay, policy.delay * 2 ** Math.min(recent.length, 30));
  const failedAt = Math.max(a.modifiedAt, ...Object.values(a.taskStates).map((t) => t.finishedAt ?? 0));
  const at = failedAt + delayMs;
  return now >= at ? { kind: 'now', delayMs } : { kind: 'later', at };
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
    resources: { cpu: resources.cpu, memory: resources.memory, ports },
    desiredStatus: 'run',
    clientStatus: 'pending',
    taskStates: {},
    evalId,
    rescheduleEvents,
    createdAt: ctx.now,
    modifiedAt: ctx.now,
  };
}
