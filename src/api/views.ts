/**
 * Views of a job computed from its allocations and evaluations, shared by the server's answers, the
 * CLI and the web UI, so that every surface counts and names states the same way.
 */
import { isCurrent } from '../core/alloc.ts';
import { stableStringify } from '../core/json.ts';
import type { Allocation, Evaluation, Job, PlacementFailure } from '../core/types.ts';
import type { FieldDiff, JobSummary } from './types.ts';

/** How many instances the job wants and how many of its current allocations are in each state. */
export function summarize(job: Job, allocs: readonly Allocation[]): JobSummary {
  const s: JobSummary = {
    desired: job.stop ? 0 : job.spec.groups.reduce((n, g) => n + g.count, 0),
    pending: 0,
    running: 0,
    complete: 0,
    failed: 0,
    lost: 0,
  };
  for (const a of allocs) if (isCurrent(a)) s[a.clientStatus]++;
  return s;
}

/**
 * The job's status: running while any instance runs; a batch job is complete when every instance
 * completed, and dead once an instance failed with no evaluation left to retry it.
 */
export function jobStatus(
  job: Job,
  allocs: readonly Allocation[],
  evaluations: readonly Evaluation[],
): Job['status'] {
  const s = summarize(job, allocs);
  if (s.running > 0 || s.pending > 0) return job.stop ? 'running' : s.running > 0 ? 'running' : 'pending';
  if (job.stop) return 'dead';
  if (job.spec.type === 'batch') {
    if (s.desired > 0 && s.complete >= s.desired) return 'complete';
    const waiting = evaluations.some(
      (e) =>
        e.namespace === job.namespace &&
        e.jobId === job.id &&
        (e.status === 'pending' || e.status === 'blocked'),
    );
    if (s.failed > 0 && !waiting) return 'dead';
  }
  return 'pending';
}

/** Why instances are not placed: the groups of the job's latest evaluation, if it is blocked. */
export function placementFailures(
  job: Job,
  evaluations: readonly Evaluation[],
): Record<string, PlacementFailure> {
  let latest: Evaluation | undefined;
  for (const e of evaluations) {
    if (e.namespace !== job.namespace || e.jobId !== job.id) continue;
    if (e.status !== 'complete' && e.status !== 'blocked') continue;
    if (!latest || e.modifiedAt > latest.modifiedAt) latest = e;
  }
  return latest?.status === 'blocked' ? (latest.failedGroups ?? {}) : {};
}

/** Allocations in a stable order for listings: job, group, index, age. */
export function sortAllocs(allocs: readonly Allocation[]): Allocation[] {
  return [...allocs].sort(
    (a, b) =>
      a.jobId.localeCompare(b.jobId) ||
      a.group.localeCompare(b.group) ||
      a.index - b.index ||
      a.createdAt - b.createdAt,
  );
}

/** Field-by-field differences between two documents (`unum plan`'s diff). */
export function diffObjects(before: unknown, after: unknown, path = ''): FieldDiff[] {
  if (stableStringify(before) === stableStringify(after)) return [];
  const isObj = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object';
  if (isObj(before) && isObj(after) && Array.isArray(before) === Array.isArray(after)) {
    const out: FieldDiff[] = [];
    const keysOf = new Set([...Object.keys(before), ...Object.keys(after)]);
    for (const k of keysOf) {
      const p = Array.isArray(after) ? `${path}[${k}]` : path ? `${path}.${k}` : k;
      if (!(k in before)) out.push({ path: p, type: 'added', after: after[k] });
      else if (!(k in after)) out.push({ path: p, type: 'removed', before: before[k] });
      else out.push(...diffObjects(before[k], after[k], p));
    }
    return out;
  }
  return [{ path, type: 'changed', before, after }];
}
