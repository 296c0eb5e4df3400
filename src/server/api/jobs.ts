/** Job routes: submit, dry-run, list, read, stop; a job's allocations and evaluations. */
import { isTerminal } from '../../core/alloc.ts';
import { InvalidError, NotFoundError } from '../../core/errors.ts';
import { jobSpecJsonSchema } from '../../core/job-spec.ts';
import type { Job } from '../../core/types.ts';
import type { JobDetail, PlanJobResponse } from '../../api/types.ts';
import { diffObjects, jobStatus, placementFailures, sortAllocs, summarize } from '../../api/views.ts';
import { checkPlan } from '../../scheduler/check-plan.ts';
import { schedule } from '../../scheduler/schedule.ts';
import type { Snapshot } from '../../scheduler/types.ts';
import type { Route } from '../../transport/index.ts';
import { newEvaluation } from '../state/evaluations.ts';
import { nextVersion, registerJob, stopJob } from '../state/jobs.ts';
import { actorOf, requireJob, specFromBody, waitIndex, write, type ApiDeps } from './context.ts';

const jobBody = { type: 'object', properties: { job: jobSpecJsonSchema() }, required: ['job'] };

export function jobRoutes(d: ApiDeps): Route[] {
  const { cache } = d;
  /** `evaluations`: the cache's, listed once per request (a job list would copy them per job). */
  const withStatus = (job: Job, evaluations = cache.listEvals()): Job => ({
    ...job,
    status: jobStatus(job, cache.allocsOfJob(job.namespace, job.id), evaluations),
  });
  const detail = (job: Job): JobDetail => {
    const evaluations = cache.listEvals();
    return {
      job: withStatus(job, evaluations),
      summary: summarize(job, cache.allocsOfJob(job.namespace, job.id)),
      placementFailures: placementFailures(job, evaluations),
    };
  };

  return [
    {
      method: 'POST',
      path: '/v1/jobs',
      capability: 'job:write',
      summary:
        'Submit a job or a new version of it. Body: { job: <job document> }. Returns the job and its evaluation.',
      requestSchema: jobBody,
      async handler(ctx) {
        const spec = await specFromBody(d, ctx);
        const key = idempotencyKey(ctx.req.headers['idempotency-key']);
        const r = await write(d, () => registerJob(cache, spec, d.clock.now(), actorOf(ctx), key));
        return r.changed ? r : { job: withStatus(r.job), changed: false };
      },
    },
    {
      method: 'POST',
      path: '/v1/jobs/plan',
      capability: 'job:read',
      summary:
        'Dry run: the diff against the current version and where the scheduler would place instances now.',
      requestSchema: jobBody,
      async handler(ctx): Promise<PlanJobResponse> {
        const spec = await specFromBody(d, ctx);
        const existing = cache.job(spec.namespace, spec.job);
        const now = d.clock.now();
        const job = nextVersion(spec, existing, now);
        const overlay: Snapshot = {
          job: (ns, id) => (ns === job.namespace && id === job.id ? job : cache.job(ns, id)),
          allocsOfJob: (ns, id) => cache.allocsOfJob(ns, id),
          allocsOnNode: (id) => cache.allocsOnNode(id),
          readyNodes: () => cache.readyNodes(),
          node: (id) => cache.node(id),
        };
        let n = 0;
        const plan = schedule(
          overlay,
          newEvaluation(job.namespace, job.id, spec.priority, 'job-register', now),
          {
            now,
            newId: () => `planned-${n++}`,
            random: Math.random,
          },
        );
        // The same re-check the plan applier makes, so a preview never shows what would be refused.
        const check = checkPlan(cache, plan);
        return {
          job,
          isNew: !existing,
          diff: existing ? diffObjects(existing.spec, spec) : [],
          placements: plan.place.map((a) => ({
            group: a.group,
            name: a.name,
            nodeId: a.nodeId,
            nodeName: cache.node(a.nodeId)?.name ?? a.nodeId,
            ports: a.resources.ports,
          })),
          // A finished allocation that is replaced is linked to its successor, not stopped: not shown.
          stops: plan.stop.flatMap((s) => {
            const a = cache.alloc(s.allocId);
            return a && isTerminal(a)
              ? []
              : [{ allocId: s.allocId, name: a?.name ?? s.allocId, description: s.description }];
          }),
          failedGroups: plan.failedGroups,
          ...(check.ok ? {} : { refused: check.reason }),
          ...(plan.error !== undefined ? { refused: plan.error } : {}),
        };
      },
    },
    {
      method: 'GET',
      path: '/v1/jobs',
      capability: 'job:read',
      summary: 'Jobs of a namespace (`namespace=*` for all) with allocation counts.',
      handler(ctx) {
        const ns = ctx.query.get('namespace') ?? 'default';
        const evaluations = cache.listEvals();
        const items = cache.listJobs(ns).map((job) => ({
          job: withStatus(job, evaluations),
          summary: summarize(job, cache.allocsOfJob(job.namespace, job.id)),
        }));
        return { items, index: Math.max(cache.indexOf('jobs'), cache.indexOf('allocs'), 1) };
      },
    },
    {
      method: 'GET',
      path: '/v1/jobs/:id',
      capability: 'job:read',
      summary: 'One job: its spec with defaults applied, status, counts and why instances are pending.',
      handler: (ctx) => detail(requireJob(d, ctx)),
    },
    {
      method: 'DELETE',
      path: '/v1/jobs/:id',
      capability: 'job:write',
      summary: 'Stop a job (every allocation stops). `purge=true` also forgets the job.',
      handler(ctx) {
        const purge = ctx.query.get('purge') === 'true';
        return write(d, () => stopJob(cache, requireJob(d, ctx), purge, d.clock.now(), actorOf(ctx)));
      },
    },
    {
      method: 'GET',
      path: '/v1/jobs/:id/allocations',
      capability: 'job:read',
      summary: 'Allocations of a job. Blocking query: `index` and `wait`.',
      query: [
        { name: 'index', description: 'return when the job changes past this index' },
        { name: 'wait', description: 'longest wait, e.g. 30s (max 5m)' },
      ],
      async handler(ctx) {
        const id = ctx.params['id'] ?? '';
        const index = await waitIndex(d, ctx, () => cache.indexOfJob(ctx.namespace, id));
        if (!cache.job(ctx.namespace, id) && cache.allocsOfJob(ctx.namespace, id).length === 0)
          throw new NotFoundError(`no job "${id}" in namespace "${ctx.namespace}"`);
        return { items: sortAllocs(cache.allocsOfJob(ctx.namespace, id)), index };
      },
    },
    {
      method: 'GET',
      path: '/v1/jobs/:id/evaluations',
      capability: 'job:read',
      summary: 'Evaluations of a job, newest first.',
      handler(ctx) {
        const id = ctx.params['id'] ?? '';
        const items = cache
          .listEvals()
          .filter((e) => e.namespace === ctx.namespace && e.jobId === id)
          .sort((a, b) => b.createdAt - a.createdAt);
        return { items, index: Math.max(cache.indexOfJob(ctx.namespace, id), 1) };
      },
    },
  ];
}

/** The `Idempotency-Key` of a submission: undefined when absent; InvalidError when malformed. */
function idempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (typeof header !== 'string' || !/^[A-Za-z0-9._:-]{1,128}$/.test(header))
    throw new InvalidError(
      'the Idempotency-Key header must be 1 to 128 letters, digits or ._:- (a UUID will do), sent once',
    );
  return header;
}
