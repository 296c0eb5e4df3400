/**
 * The reconcile step (after Nomad's allocation reconciler): compares what a job wants with the
 * allocations it has and says what must change — place, update in place, replace, stop, look again
 * later — without deciding where anything goes. Pure: no snapshot, no ids, no randomness.
 */
import { isActive } from '../core/alloc.ts';
import type { GroupSpec, ReschedulePolicy } from '../core/job-spec.ts';
import type { Allocation, Job, Node, PlanStop, RescheduleEvent } from '../core/types.ts';

/** An instance to place on some node. */
export interface Placement {
  group: GroupSpec;
  index: number;
  /**
   * The allocation this one replaces. When it still runs, `stop` already holds its stop — except for
   * a migration off a draining node, stopped only once its replacement is placed (generic.ts).
   */
  previous?: Allocation;
  /** Why `previous` is replaced, when the plan stops it with its placement (its stop description). */
  replaces?: string;
  rescheduleEvents: RescheduleEvent[];
}

/** A running instance whose group changed in a way only a new instance can take up. */
export interface DestructiveUpdate {
  group: GroupSpec;
  alloc: Allocation;
  /** Recorded on the old instance when it is stopped. */
  description: string;
}

export interface ReconcileResult {
  /** New instances: missing indexes and replacements of finished or lost ones. */
  place: Placement[];
  /** Running instances carried over to the job's version as they are. */
  inPlace: Allocation[];
  /** Running instances to stop and replace with a new one. */
  destructive: DestructiveUpdate[];
  stop: PlanStop[];
  /** When the job must be looked at again (a failed instance waits for its reschedule delay). */
  followups: { waitUntil: number; description: string }[];
}

export interface ReconcileContext {
  now: number;
  /** The node an allocation runs on, as the snapshot has it. */
  node(id: string): Node | undefined;
}

/**
 * What must change for `job` (undefined: removed) given its allocations. Allocations already told
 * to stop are ignored: they are on their way out.
 */
export function reconcile(
  job: Job | undefined,
  allocs: readonly Allocation[],
  ctx: ReconcileContext,
): ReconcileResult {
  const out: ReconcileResult = { place: [], inPlace: [], destructive: [], stop: [], followups: [] };
  const live = allocs.filter((a) => a.desiredStatus === 'run');
  const stop = (a: Allocation, description: string) => out.stop.push({ allocId: a.id, description });

  if (!job || job.stop) {
    for (const a of live) stop(a, job ? 'job stopped' : 'job removed');
    return out;
  }

  const specGroups = new Set(job.spec.groups.map((g) => g.name));
  for (const a of live) if (!specGroups.has(a.group)) stop(a, `group ${a.group} removed from the job`);

  let earliestRetry: number | undefined;
  for (const group of job.spec.groups) {
    const byIndex = new Map<number, Allocation[]>();
    for (const a of live) {
      if (a.group !== group.name) continue;
      if (a.index >= group.count) {
        stop(a, `scaled down to ${group.count}`);
        continue;
      }
      const list = byIndex.get(a.index) ?? [];
      list.push(a);
      byIndex.set(a.index, list);
    }

    for (let index = 0; index < group.count; index++) {
      const holders = (byIndex.get(index) ?? []).sort((x, y) => y.createdAt - x.createdAt);
      // Two holders of one index can only come from a race: keep the newest.
      for (const extra of holders.slice(1)) stop(extra, 'duplicate instance');
      const a = holders[0];
      if (!a) {
        out.place.push({ group, index, rescheduleEvents: [] });
        continue;
      }
      const changed = a.jobVersion !== job.version;
      const destructive = changed && needsReplacement(a.groupSpec, group);
      if (isActive(a)) {
        const node = ctx.node(a.nodeId);
        if (!node || node.status === 'down') {
          stop(a, 'node is down');
          out.place.push({ group, index, previous: a, rescheduleEvents: a.rescheduleEvents });
        } else if (a.desiredTransition?.migrate)
          // With no room elsewhere it keeps running where it is (the drain's deadline stops it).
          out.place.push({
            group,
            index,
            previous: a,
            replaces: `node ${node.name} is draining`,
            rescheduleEvents: a.rescheduleEvents,
          });
        else if (destructive)
          out.destructive.push({ group, alloc: a, description: `updated to job version ${job.version}` });
        else if (changed)
          // Only count or metadata changed: the running instance carries over untouched.
          out.inPlace.push({ ...a, jobVersion: job.version, groupSpec: group, modifiedAt: ctx.now });
        continue;
      }
      switch (a.clientStatus) {
        case 'complete':
          if (job.spec.type === 'batch' && !destructive) break; // done
          out.place.push({
            group,
            index,
            previous: a,
            replaces: job.spec.type === 'batch' ? 'job updated' : 'service exited',
            rescheduleEvents: a.rescheduleEvents,
          });
          break;
        case 'lost':
          out.place.push({
            group,
            index,
            previous: a,
            replaces: 'node lost',
            rescheduleEvents: a.rescheduleEvents,
          });
          break;
        case 'failed': {
          if (destructive) {
            out.place.push({
              group,
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
          out.place.push({
            group,
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
  }

  if (earliestRetry !== undefined)
    out.followups.push({
      waitUntil: earliestRetry,
      description: 'waiting for the reschedule delay of a failed allocation',
    });
  return out;
}

/**
 * A change other than count means the instance must be replaced to take effect. `migrate` is how
 * the scheduler moves instances, not what they run: changing it replaces nothing.
 */
export function needsReplacement(before: GroupSpec, after: GroupSpec): boolean {
  const running = (g: GroupSpec) => JSON.stringify({ ...g, count: 0, migrate: undefined });
  return running(before) !== running(after);
}

export type RescheduleDecision =
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
