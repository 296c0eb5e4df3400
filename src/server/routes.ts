/**
 * The v1 API routes. Reads come from the watch-fed cache; writes are Store transactions with
 * compares (retried on conflict) that also append the events describing them. Each write waits
 * until the cache has seen it, so a client reads its own writes from any route afterwards.
 */
import { parseDuration } from '../core/duration.ts';
import { ConflictError, InvalidError, NotFoundError, UnavailableError } from '../core/errors.ts';
import { shortId } from '../core/ids.ts';
import { jobSpecJsonSchema, parseJobSpec, type JobSpec } from '../core/job-spec.ts';
import type { Logger } from '../core/log.ts';
import type {
  Allocation,
  ClusterEvent,
  Evaluation,
  Job,
  Node,
  NodeDevice,
  PlacementFailure,
} from '../core/types.ts';
import {
  AllocStatusUpdatesSchema,
  JobBodySchema,
  NodeRegistrationSchema,
  bodyJsonSchema,
  parseBody,
} from '../api/schemas.ts';
import type {
  FieldDiff,
  JobDetail,
  JobSummary,
  NodeStats,
  PlanJobResponse,
  ServerStatus,
} from '../api/types.ts';
import { schedule } from '../scheduler/schedule.ts';
import type { Snapshot } from '../scheduler/types.ts';
import type { Compare, Store, TxnOp } from '../store/types.ts';
import type { Authorizer } from './auth.ts';
import type { StateCache } from './cache.ts';
import { eventOp, putOp } from './events.ts';
import { STREAMED, blockingParams, openSse, type RequestContext, type Route } from './http.ts';
import { keys } from './keys.ts';
import { newEvaluation, type Leadership } from './leader.ts';

export const HEARTBEAT_TTL_SECONDS = 10;
/** How long the stats route waits for a node's agent. */
const STATS_TIMEOUT_MS = 5_000;
const WRITE_ATTEMPTS = 20;

export interface RouteDeps {
  store: Store;
  cache: StateCache;
  leadership: Leadership;
  authorizer: Authorizer;
  log: Logger;
  version: string;
  addr: () => string;
}

export function apiRoutes(d: RouteDeps): Route[] {
  const { cache, store } = d;
  const lastHeartbeat = new Map<string, number>();

  /** Runs a compare-and-swap write, rebuilding it from fresh state until it lands. */
  async function write<T>(
    build: () => { compare: Compare[]; ops: TxnOp[]; result: T } | { done: T },
  ): Promise<T> {
    for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
      const b = build();
      if ('done' in b) return b.done;
      const res = await store.txn({ compare: b.compare, success: b.ops });
      await cache.waitForIndex(res.revision);
      if (res.succeeded) return b.result;
    }
    throw new ConflictError('the state kept changing under this write; try again');
  }

  const guard = (key: string): Compare => ({ key, target: 'mod', op: '=', value: cache.revisionOf(key) });

  function requireJob(ctx: RequestContext): Job {
    const job = cache.job(ctx.namespace, ctx.params['id'] ?? '');
    if (!job) throw new NotFoundError(`no job "${ctx.params['id']}" in namespace "${ctx.namespace}"`);
    return job;
  }

  function findAlloc(idOrPrefix: string): Allocation {
    const exact = cache.alloc(idOrPrefix);
    if (exact) return exact;
    if (idOrPrefix.length < 4) throw new InvalidError('an allocation id prefix needs at least 4 characters');
    const matches = cache.listAllocs().filter((a) => a.id.startsWith(idOrPrefix));
    if (matches.length === 0) throw new NotFoundError(`no allocation with id ${idOrPrefix}`);
    if (matches.length > 1)
      throw new InvalidError(
        `allocation id prefix ${idOrPrefix} is ambiguous: ${matches.map((a) => shortId(a.id)).join(', ')}`,
      );
    return matches[0]!;
  }

  function withStatus(job: Job): Job {
    return { ...job, status: jobStatus(job, cache.allocsOfJob(job.namespace, job.id), cache) };
  }

  function detail(job: Job): JobDetail {
    const allocs = cache.allocsOfJob(job.namespace, job.id);
    return {
      job: withStatus(job),
      summary: summarize(job, allocs),
      placementFailures: placementFailures(cache, job),
    };
  }

  function nodeView(n: Node): Node {
    const beat = lastHeartbeat.get(n.id);
    return {
      ...n,
      status: n.status === 'ready' && !cache.isAlive(n.id) ? 'down' : n.status,
      lastHeartbeat: beat ?? n.lastHeartbeat,
    };
  }

  async function waitIndex(ctx: RequestContext, indexOf: () => number): Promise<number> {
    const { index, waitMs } = blockingParams(ctx.query, parseDuration);
    if (index > 0 && waitMs > 0) await cache.waitUntil(() => indexOf() > index, waitMs, ctx.signal);
    return Math.max(indexOf(), 1);
  }

  const routes: Route[] = [
    {
      method: 'GET',
      path: '/v1/status',
      capability: 'operator:read',
      summary: 'Server version, leadership, store revision and backend.',
      async handler(): Promise<ServerStatus> {
        const s = await store.status();
        return {
          version: d.version,
          leader: d.leadership.isLeader,
          revision: s.revision,
          backend: s.backend,
          nodes: cache.listNodes().length,
          addr: d.addr(),
        };
      },
    },

    // --- jobs -----------------------------------------------------------------------------------
    {
      method: 'POST',
      path: '/v1/jobs',
      capability: 'job:write',
      summary:
        'Submit a job or a new version of it. Body: { job: <job document> }. Returns the job and its evaluation.',
      requestSchema: { type: 'object', properties: { job: jobSpecJsonSchema() }, required: ['job'] },
      async handler(ctx) {
        const spec = await specFromBody(ctx);
        const key = keys.job(spec.namespace, spec.job);
        return write(() => {
          const existing = cache.job(spec.namespace, spec.job);
          if (existing && !existing.stop && stableStringify(existing.spec) === stableStringify(spec))
            return { done: { job: withStatus(existing), changed: false } };
          const now = Date.now();
          const job = nextVersion(spec, existing, now);
          const evaluation = newEvaluation(job.namespace, job.id, spec.priority, 'job-register', now);
          return {
            compare: [guard(key)],
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
                },
                now,
              ),
            ],
            result: { job, changed: true, evalId: evaluation.id },
          };
        });
      },
    },
    {
      method: 'POST',
      path: '/v1/jobs/plan',
      capability: 'job:read',
      summary:
        'Dry run: the diff against the current version and where the scheduler would place instances now.',
      requestSchema: { type: 'object', properties: { job: jobSpecJsonSchema() }, required: ['job'] },
      async handler(ctx): Promise<PlanJobResponse> {
        const spec = await specFromBody(ctx);
        const existing = cache.job(spec.namespace, spec.job);
        const job = nextVersion(spec, existing, Date.now());
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
          newEvaluation(job.namespace, job.id, spec.priority, 'job-register', Date.now()),
          {
            now: Date.now(),
            newId: () => `planned-${n++}`,
            random: Math.random,
          },
        );
        return {
          job,
          isNew: !existing,
          diff: existing ? diffObjects(existing.spec, spec) : [],
          placements: plan.place
            .filter((a) => a.desiredStatus === 'run' && a.id.startsWith('planned-'))
            .map((a) => ({
              group: a.group,
              name: a.name,
              nodeId: a.nodeId,
              nodeName: cache.node(a.nodeId)?.name ?? a.nodeId,
              ports: a.resources.ports,
            })),
          stops: plan.stop.map((s) => ({
            allocId: s.allocId,
            name: cache.alloc(s.allocId)?.name ?? s.allocId,
            description: s.description,
          })),
          failedGroups: plan.failedGroups,
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
        const items = cache.listJobs(ns).map((job) => ({
          job: withStatus(job),
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
      handler: (ctx) => detail(requireJob(ctx)),
    },
    {
      method: 'DELETE',
      path: '/v1/jobs/:id',
      capability: 'job:write',
      summary: 'Stop a job (every allocation stops). `purge=true` also forgets the job.',
      async handler(ctx) {
        const purge = ctx.query.get('purge') === 'true';
        return write(() => {
          const job = requireJob(ctx);
          const key = keys.job(job.namespace, job.id);
          const now = Date.now();
          const evaluation = newEvaluation(job.namespace, job.id, job.spec.priority, 'job-deregister', now);
          return {
            compare: [guard(key)],
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
                },
                now,
              ),
            ],
            result: { evalId: evaluation.id },
          };
        });
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
        const index = await waitIndex(ctx, () => cache.indexOfJob(ctx.namespace, id));
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

    // --- allocations ----------------------------------------------------------------------------
    {
      method: 'GET',
      path: '/v1/allocations',
      capability: 'alloc:read',
      summary:
        'Allocations, filtered by `job`, `node`, `namespace` (`*` for all); running ones unless `all=true`. Blocking query.',
      async handler(ctx) {
        const index = await waitIndex(ctx, () => cache.indexOf('allocs'));
        const ns = ctx.query.get('namespace') ?? '*';
        const job = ctx.query.get('job');
        const node = ctx.query.get('node');
        const all = ctx.query.get('all') === 'true';
        const items = cache
          .listAllocs()
          .filter(
            (a) =>
              (ns === '*' || a.namespace === ns) &&
              (job === null || a.jobId === job) &&
              (node === null || a.nodeId === node || a.nodeId.startsWith(node)) &&
              (all ||
                (a.desiredStatus === 'run' &&
                  (a.clientStatus === 'pending' || a.clientStatus === 'running'))),
          );
        return { items: sortAllocs(items), index };
      },
    },
    {
      method: 'GET',
      path: '/v1/allocations/:id',
      capability: 'alloc:read',
      summary: 'One allocation, by id or unique id prefix.',
      handler: (ctx) => findAlloc(ctx.params['id'] ?? ''),
    },
    {
      method: 'GET',
      path: '/v1/allocations/:id/logs',
      capability: 'alloc:logs',
      summary:
        "A task's stdout or stderr, as text; `follow=true` streams new output. Served by the node's agent.",
      stream: 'text',
      query: [
        { name: 'task', description: 'task name (required)' },
        { name: 'stream', description: 'stdout (default) or stderr' },
        { name: 'follow', description: 'true to keep streaming' },
        { name: 'tail', description: 'only the last N lines' },
        { name: 'offset', description: 'start at this byte' },
      ],
      async handler(ctx) {
        const a = findAlloc(ctx.params['id'] ?? '');
        const node = cache.node(a.nodeId);
        if (!node) throw new NotFoundError(`node ${a.nodeId} of allocation ${shortId(a.id)} is unknown`);
        if (!cache.isAlive(node.id))
          throw new UnavailableError(
            `node ${node.name} is not heartbeating; the logs of ${a.name} are kept on it`,
          );
        const url = `${node.address}/v1/agent/allocations/${encodeURIComponent(a.id)}/logs?${ctx.query.toString()}`;
        let upstream: Response;
        try {
          upstream = await fetch(url, { signal: ctx.signal });
        } catch (err) {
          throw new UnavailableError(`cannot reach the agent of node ${node.name} at ${node.address}`, {
            cause: err,
          });
        }
        ctx.res.writeHead(upstream.status, {
          'content-type': upstream.headers.get('content-type') ?? 'text/plain; charset=utf-8',
          'cache-control': 'no-cache',
        });
        ctx.res.flushHeaders();
        try {
          if (upstream.body)
            for await (const chunk of upstream.body) {
              if (!ctx.res.write(chunk)) await new Promise((r) => ctx.res.once('drain', r));
            }
        } catch {
          // The client or the agent went away: end the stream.
        }
        ctx.res.end();
        return STREAMED;
      },
    },

    // --- nodes ----------------------------------------------------------------------------------
    {
      method: 'GET',
      path: '/v1/nodes',
      capability: 'node:read',
      summary: 'Nodes with their resources and status. Blocking query.',
      async handler(ctx) {
        const index = await waitIndex(ctx, () => cache.indexOf('nodes'));
        return { items: cache.listNodes().map(nodeView), index };
      },
    },
    {
      method: 'GET',
      path: '/v1/nodes/:id',
      capability: 'node:read',
      summary: 'One node, by id, id prefix or name.',
      handler(ctx) {
        const id = ctx.params['id'] ?? '';
        const n =
          cache.node(id) ??
          cache.listNodes().find((x) => x.name === id) ??
          (id.length >= 4 ? cache.listNodes().find((x) => x.id.startsWith(id)) : undefined);
        if (!n) throw new NotFoundError(`no node ${id}`);
        return nodeView(n);
      },
    },
    {
      method: 'GET',
      path: '/v1/nodes/:id/stats',
      capability: 'node:read',
      summary:
        "CPU, memory and process count of the running tasks on a node (by node id, id prefix or name). Asked of the node's agent.",
      async handler(ctx): Promise<NodeStats> {
        const id = ctx.params['id'] ?? '';
        const node =
          cache.node(id) ??
          cache.listNodes().find((x) => x.name === id) ??
          (id.length >= 4 ? cache.listNodes().find((x) => x.id.startsWith(id)) : undefined);
        if (!node) throw new NotFoundError(`no node ${id}`);
        if (!cache.isAlive(node.id))
          throw new UnavailableError(`node ${node.name} is not heartbeating: no usage figures from it`);
        let upstream: Response;
        try {
          upstream = await fetch(`${node.address}/v1/agent/stats`, {
            signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(STATS_TIMEOUT_MS)]),
          });
        } catch (err) {
          throw new UnavailableError(`cannot reach the agent of node ${node.name} at ${node.address}`, {
            cause: err,
          });
        }
        const text = await upstream.text();
        if (!upstream.ok)
          throw new UnavailableError(
            `the agent of node ${node.name} answered HTTP ${upstream.status}: ${text.slice(0, 200)}`,
          );
        return JSON.parse(text) as NodeStats;
      },
    },
    {
      method: 'POST',
      path: '/v1/nodes/register',
      capability: 'node:write',
      summary: 'An agent registers its node (again after a restart); returns the heartbeat TTL.',
      requestSchema: bodyJsonSchema(NodeRegistrationSchema),
      async handler(ctx) {
        const reg = parseBody(NodeRegistrationSchema, ctx.body, 'node registration');
        const lease = await store.grantLease(HEARTBEAT_TTL_SECONDS);
        const node = await write(() => {
          const existing = cache.node(reg.id);
          const now = Date.now();
          const { devices, ...rest } = reg;
          const node: Node = {
            ...rest,
            // zod's optional fields admit explicit undefined; the wire JSON never carries one.
            drivers: reg.drivers as Node['drivers'],
            ...(devices !== undefined && devices.length > 0 ? { devices: devices as NodeDevice[] } : {}),
            status: 'ready',
            drain: existing?.drain ?? false,
            registeredAt: existing?.registeredAt ?? now,
            lastHeartbeat: now,
          };
          return {
            compare: [guard(keys.node(reg.id))],
            ops: [
              putOp(keys.node(reg.id), node),
              { type: 'put', key: keys.heartbeat(reg.id), value: String(now), lease: lease.id },
              eventOp(
                {
                  topic: 'node',
                  type: existing ? 'node-reregistered' : 'node-registered',
                  nodeId: reg.id,
                  message: `node ${reg.name} ${existing ? 're-registered' : 'registered'}: ${reg.resources.cpu} millicores, ${reg.resources.memory} MiB`,
                },
                now,
              ),
            ],
            result: node,
          };
        });
        lastHeartbeat.set(node.id, Date.now());
        return { node, heartbeatTtlSeconds: HEARTBEAT_TTL_SECONDS };
      },
    },
    {
      method: 'POST',
      path: '/v1/nodes/:id/heartbeat',
      capability: 'node:write',
      summary: "An agent's heartbeat. 404 not_found when the node must register again.",
      async handler(ctx) {
        const id = ctx.params['id'] ?? '';
        const kv = await store.get(keys.heartbeat(id));
        if (!kv || kv.lease === 0)
          throw new NotFoundError(`node ${id} is not registered or missed its heartbeats; register again`);
        try {
          await store.keepAlive(kv.lease);
        } catch (err) {
          if (err instanceof NotFoundError)
            throw new NotFoundError(`node ${id} missed its heartbeats; register again`, { cause: err });
          throw err;
        }
        lastHeartbeat.set(id, Date.now());
        return { ttlSeconds: HEARTBEAT_TTL_SECONDS };
      },
    },
    {
      method: 'GET',
      path: '/v1/nodes/:id/allocations',
      capability: 'node:read',
      summary: 'Allocations assigned to a node that it must run or stop. Blocking query (used by agents).',
      async handler(ctx) {
        const id = ctx.params['id'] ?? '';
        const index = await waitIndex(ctx, () => cache.indexOfNodeAllocs(id));
        // Finished allocations are the agent's past, not its work: leaving them out keeps this
        // answer the size of what runs on the node, not of everything that ever ran there.
        const items = cache.allocsOnNode(id).filter((a) => !isTerminal(a));
        return { items: sortAllocs(items), index };
      },
    },
    {
      method: 'POST',
      path: '/v1/nodes/:id/allocations/status',
      capability: 'node:write',
      summary: 'An agent reports the state of its allocations and tasks.',
      requestSchema: bodyJsonSchema(AllocStatusUpdatesSchema),
      async handler(ctx) {
        const nodeId = ctx.params['id'] ?? '';
        const { updates } = parseBody(AllocStatusUpdatesSchema, ctx.body, 'allocation status');
        await write(() => {
          const compare: Compare[] = [];
          const ops: TxnOp[] = [];
          const now = Date.now();
          for (const u of updates) {
            const a = cache.alloc(u.allocId);
            if (!a || a.nodeId !== nodeId) continue;
            // A lost allocation stays lost until it finishes: the scheduler has replaced or will replace it.
            const clientStatus =
              a.clientStatus === 'lost' && (u.clientStatus === 'running' || u.clientStatus === 'pending')
                ? 'lost'
                : u.clientStatus;
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
              continue;
            compare.push(guard(keys.alloc(a.id)));
            ops.push(putOp(keys.alloc(a.id), next));
            for (const [task, state] of Object.entries(next.taskStates)) {
              const seen = Math.max(0, ...(a.taskStates[task]?.events ?? []).map((e) => e.time));
              for (const e of state.events) {
                if (e.time <= seen) continue;
                ops.push(
                  eventOp(
                    {
                      topic: 'task',
                      type: `task-${e.type}`,
                      namespace: a.namespace,
                      jobId: a.jobId,
                      allocId: a.id,
                      nodeId,
                      task,
                      message: `${a.name} (${shortId(a.id)}) ${task}: ${e.message}`,
                      time: e.time,
                    },
                    now,
                  ),
                );
              }
            }
            if (next.clientStatus !== a.clientStatus) {
              ops.push(
                eventOp(
                  {
                    topic: 'allocation',
                    type: `alloc-${next.clientStatus}`,
                    namespace: a.namespace,
                    jobId: a.jobId,
                    allocId: a.id,
                    nodeId,
                    message: `${a.name} (${shortId(a.id)}) is ${next.clientStatus}${next.clientDescription ? `: ${next.clientDescription}` : ''}`,
                  },
                  now,
                ),
              );
              const needsLook =
                a.desiredStatus === 'run' &&
                (next.clientStatus === 'failed' ||
                  next.clientStatus === 'lost' ||
                  (next.clientStatus === 'complete' && a.jobType === 'service'));
              if (needsLook) {
                const job = cache.job(a.namespace, a.jobId);
                const e = newEvaluation(a.namespace, a.jobId, job?.spec.priority ?? 50, 'alloc-failure', now);
                ops.push(putOp(keys.evaluation(e.id), e));
              }
            }
          }
          if (ops.length === 0) return { done: undefined };
          return { compare, ops, result: undefined };
        });
        return { index: cache.index };
      },
    },

    // --- evaluations ----------------------------------------------------------------------------
    {
      method: 'GET',
      path: '/v1/evaluations',
      capability: 'job:read',
      summary: 'Evaluations, newest first; filter by `job` and `namespace`.',
      handler(ctx) {
        const job = ctx.query.get('job');
        const ns = ctx.query.get('namespace') ?? '*';
        const items = cache
          .listEvals()
          .filter((e) => (ns === '*' || e.namespace === ns) && (job === null || e.jobId === job))
          .sort((a, b) => b.createdAt - a.createdAt);
        return { items, index: Math.max(cache.indexOf('evals'), 1) };
      },
    },
    {
      method: 'GET',
      path: '/v1/evaluations/:id',
      capability: 'job:read',
      summary: 'One evaluation, with its placement failures.',
      handler(ctx) {
        const id = ctx.params['id'] ?? '';
        const e =
          cache.evaluation(id) ??
          (id.length >= 4 ? cache.listEvals().find((x) => x.id.startsWith(id)) : undefined);
        if (!e) throw new NotFoundError(`no evaluation ${id}`);
        return e;
      },
    },

    // --- events ---------------------------------------------------------------------------------
    {
      method: 'GET',
      path: '/v1/events',
      capability: 'event:read',
      summary:
        'Cluster events after `index`, oldest first (at most `limit`, default 100; without `index`, the latest ones).',
      handler(ctx) {
        const filter = eventFilter(ctx);
        const limit = Math.min(Math.max(Number(ctx.query.get('limit') ?? '100') || 100, 1), 10_000);
        const hasIndex = ctx.query.has('index');
        const after = Number(ctx.query.get('index') ?? '0');
        const matching = cache.events.filter((e) => e.index > after && filter(e));
        const events = hasIndex ? matching.slice(0, limit) : matching.slice(-limit);
        return {
          events,
          index: events.length ? events[events.length - 1]!.index : hasIndex ? after : cache.index,
        };
      },
    },
    {
      method: 'GET',
      path: '/v1/events/stream',
      capability: 'event:read',
      summary: 'Server-Sent Events: every cluster event after `index` (default: from now), then live ones.',
      stream: 'sse',
      handler(ctx) {
        const filter = eventFilter(ctx);
        const sse = openSse(ctx.res);
        const from = ctx.query.has('index') ? Number(ctx.query.get('index')) : cache.index;
        let last = from;
        const oldest = cache.events[0]?.index;
        if (oldest !== undefined && from + 1 < oldest && ctx.query.has('index'))
          sse.comment(`events before ${oldest} are no longer kept; starting there`);
        for (const e of cache.events) {
          if (e.index > last && filter(e)) sse.send('event', e, e.index);
        }
        last = Math.max(last, cache.events[cache.events.length - 1]?.index ?? last);
        const unsubscribe = cache.subscribe((changes) => {
          for (const c of changes) {
            if (c.kind === 'event' && c.event.index > last) {
              last = c.event.index;
              if (filter(c.event)) sse.send('event', c.event, c.event.index);
            }
          }
        });
        const keepalive = setInterval(() => sse.comment('keepalive'), 15_000);
        ctx.signal.addEventListener('abort', () => {
          clearInterval(keepalive);
          unsubscribe();
        });
        return STREAMED;
      },
    },
  ];

  async function specFromBody(ctx: RequestContext): Promise<JobSpec> {
    const { job } = parseBody(JobBodySchema, ctx.body, 'job submission');
    if (job === null || typeof job !== 'object' || Array.isArray(job))
      throw new InvalidError('job: expected a job document (an object with "job" and "groups")');
    const doc = job as Record<string, unknown>;
    // A file without a namespace goes to the one the request names.
    const withNs =
      doc['namespace'] === undefined && ctx.query.has('namespace')
        ? { ...doc, namespace: ctx.namespace }
        : doc;
    const spec = parseJobSpec(withNs);
    if (spec.namespace !== ctx.namespace)
      await d.authorizer.authorize(ctx.identity, 'job:write', spec.namespace);
    return spec;
  }

  return routes;
}

/** The job a submission makes: version 0, or one past the current version. */
function nextVersion(spec: JobSpec, existing: Job | undefined, now: number): Job {
  return {
    id: spec.job,
    namespace: spec.namespace,
    version: existing ? existing.version + 1 : 0,
    stop: false,
    status: 'pending',
    submittedAt: now,
    spec,
  };
}

function eventFilter(ctx: RequestContext): (e: ClusterEvent) => boolean {
  const ns = ctx.query.get('namespace');
  const job = ctx.query.get('job');
  return (e) =>
    (ns === null || ns === '*' || e.namespace === undefined || e.namespace === ns) &&
    (job === null || e.jobId === job);
}

export function isTerminal(a: Allocation): boolean {
  return a.clientStatus === 'complete' || a.clientStatus === 'failed' || a.clientStatus === 'lost';
}

function sortAllocs(allocs: readonly Allocation[]): Allocation[] {
  return [...allocs].sort(
    (a, b) =>
      a.jobId.localeCompare(b.jobId) ||
      a.group.localeCompare(b.group) ||
      a.index - b.index ||
      a.createdAt - b.createdAt,
  );
}

/** Allocations that stand for the job now: not replaced by a newer one. */
function current(allocs: readonly Allocation[]): Allocation[] {
  return allocs.filter((a) => a.nextAllocId === undefined);
}

export function summarize(job: Job, allocs: readonly Allocation[]): JobSummary {
  const s: JobSummary = {
    desired: job.stop ? 0 : job.spec.groups.reduce((n, g) => n + g.count, 0),
    pending: 0,
    running: 0,
    complete: 0,
    failed: 0,
    lost: 0,
  };
  for (const a of current(allocs)) s[a.clientStatus]++;
  return s;
}

export function jobStatus(job: Job, allocs: readonly Allocation[], cache: StateCache): Job['status'] {
  const s = summarize(job, allocs);
  if (s.running > 0 || s.pending > 0) return job.stop ? 'running' : s.running > 0 ? 'running' : 'pending';
  if (job.stop) return 'dead';
  if (job.spec.type === 'batch') {
    if (s.desired > 0 && s.complete >= s.desired) return 'complete';
    const waiting = cache
      .listEvals()
      .some(
        (e) =>
          e.namespace === job.namespace &&
          e.jobId === job.id &&
          (e.status === 'pending' || e.status === 'blocked'),
      );
    if (s.failed > 0 && !waiting) return 'dead';
  }
  return 'pending';
}

export function placementFailures(cache: StateCache, job: Job): Record<string, PlacementFailure> {
  let latest: Evaluation | undefined;
  for (const e of cache.listEvals()) {
    if (e.namespace !== job.namespace || e.jobId !== job.id) continue;
    if (e.status !== 'complete' && e.status !== 'blocked') continue;
    if (!latest || e.modifiedAt > latest.modifiedAt) latest = e;
  }
  return latest?.status === 'blocked' ? (latest.failedGroups ?? {}) : {};
}

/** JSON with object keys sorted, so that equal values compare equal whatever their key order. */
export function stableStringify(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) =>
    value && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(
          Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : value,
  );
}

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
