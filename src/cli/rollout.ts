/**
 * Pure judgement of a rollout, used by `unum run` while it follows one: from a job version and its
 * allocations, is it done, has it failed, and what one progress line says where it stands.
 *
 * Done: for a service, every instance of the new version runs (and is healthy, when its group has
 * health checks); for a batch job, every instance of the version completed. Failed: an instance of
 * the version failed.
 */
import { isActive } from '../core/alloc.ts';
import type { Allocation, Job, TaskEvent } from '../core/types.ts';

export interface RolloutCounts {
  /** Instances the version asks for. */
  desired: number;
  /** Instances of the version that are done: running (and healthy) for a service, complete for batch. */
  ready: number;
  running: number;
  pending: number;
  complete: number;
  failed: number;
  lost: number;
  /** Running instances whose group has health checks and reported healthy. */
  healthy: number;
  /** Instances whose group has health checks. */
  checked: number;
}

export interface FailedInstance {
  alloc: Allocation;
  /** The task that failed, and its last event: what a person needs to see first. */
  task?: string;
  event?: TaskEvent;
}

export interface RolloutState {
  done: boolean;
  failed: FailedInstance | undefined;
  counts: RolloutCounts;
  /** `web v2: 2/3 running, 1 pending` */
  line: string;
}

function groupHasChecks(job: Job, group: string): boolean {
  const g = job.spec.groups.find((x) => x.name === group);
  return g?.services.some((s) => s.check !== undefined) ?? false;
}

/** Judges the allocations of `job.version` (others are ignored). */
export function assessRollout(job: Job, allocations: readonly Allocation[]): RolloutState {
  const batch = job.spec.type === 'batch';
  const mine = allocations.filter((a) => a.jobVersion === job.version);
  const counts: RolloutCounts = {
    desired: 0,
    ready: 0,
    running: 0,
    pending: 0,
    complete: 0,
    failed: 0,
    lost: 0,
    healthy: 0,
    checked: 0,
  };
  for (const group of job.spec.groups) {
    const checks = groupHasChecks(job, group.name);
    const inGroup = mine.filter((a) => a.group === group.name);
    counts.desired += group.count;
    let ready = 0;
    for (const a of inGroup) {
      // Instances being stopped (scale down, replaced) no longer count towards the version.
      const live = a.desiredStatus === 'run';
      switch (a.clientStatus) {
        case 'running':
          if (!live) break;
          counts.running++;
          if (checks) {
            counts.checked++;
            if (a.healthy === true) counts.healthy++;
          }
          if (!batch && (!checks || a.healthy === true)) ready++;
          break;
        case 'pending':
          if (live) counts.pending++;
          break;
        case 'complete':
          counts.complete++;
          if (batch) ready++;
          break;
        case 'failed':
          counts.failed++;
          break;
        case 'lost':
          counts.lost++;
          break;
      }
    }
    counts.ready += Math.min(ready, group.count);
  }
  const failedAlloc = mine
    .filter((a) => a.clientStatus === 'failed')
    .sort((a, b) => a.modifiedAt - b.modifiedAt)[0];
  return {
    done: counts.ready >= counts.desired && failedAlloc === undefined,
    failed: failedAlloc ? describeFailure(failedAlloc) : undefined,
    counts,
    line: progressLine(job, counts),
  };
}

/** Events that say why a task stopped, rather than what unum did about it. */
const CAUSES = new Set(['terminated', 'driver-failure', 'killed']);

/**
 * The failed task of an allocation (or the last task to change) and the event that explains it: the
 * last termination or driver failure (exit code, signal) when there is one, else its last event.
 */
export function describeFailure(alloc: Allocation): FailedInstance {
  const tasks = Object.entries(alloc.taskStates);
  const lastTime = (events: readonly TaskEvent[]) => events[events.length - 1]?.time ?? 0;
  const pick =
    tasks.filter(([, t]) => t.failed).sort((a, b) => lastTime(b[1].events) - lastTime(a[1].events))[0] ??
    tasks.sort((a, b) => lastTime(b[1].events) - lastTime(a[1].events))[0];
  if (!pick) return { alloc };
  const [task, state] = pick;
  const event = state.events.findLast((e) => CAUSES.has(e.type)) ?? state.events[state.events.length - 1];
  return event ? { alloc, task, event } : { alloc, task };
}

function progressLine(job: Job, c: RolloutCounts): string {
  const parts: string[] = [];
  if (job.spec.type === 'batch') {
    parts.push(`${c.complete}/${c.desired} complete`);
    if (c.running) parts.push(`${c.running} running`);
  } else {
    parts.push(`${c.running}/${c.desired} running`);
    if (c.checked) parts.push(`${c.healthy}/${c.checked} healthy`);
  }
  if (c.pending) parts.push(`${c.pending} pending`);
  if (c.failed) parts.push(`${c.failed} failed`);
  if (c.lost) parts.push(`${c.lost} lost`);
  return `${job.id} v${job.version}: ${parts.join(', ')}`;
}

export interface StopState {
  done: boolean;
  line: string;
}

/** `unum stop` waits until no allocation of the job runs any more. */
export function assessStop(jobId: string, allocations: readonly Allocation[]): StopState {
  const live = allocations.filter(isActive);
  const stopped = allocations.length - live.length;
  return {
    done: live.length === 0,
    line: `${jobId}: ${live.length} still running, ${stopped} stopped`,
  };
}
