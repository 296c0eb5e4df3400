/**
 * The agent's own HTTP endpoint (node-local calls the servers proxy to, e.g. `unum logs`):
 *
 *   GET /v1/agent/health
 *   GET /v1/agent/stats                       usage of the running tasks (NodeStats)
 *   GET /v1/agent/allocations/:allocId/logs?task=NAME&stream=stdout|stderr&follow=true|false&offset=N&tail=N
 *
 * Logs answer `text/plain` (chunked), through the rotated files oldest first. The response header
 * `x-unum-log-offset` says at which logical byte of the stream the body starts (logical: counted
 * over everything the task wrote, stable across rotations; see logs.ts), so a client can resume
 * with `offset`. Errors are the API's JSON errors.
 */
import type { Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import { readdir } from 'node:fs/promises';
import { InvalidError, NotFoundError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { NodeStats } from '../api/types.ts';
import { Router, STREAMED, allowAll, booleanParam, countParam, type Authorizer } from '../transport/index.ts';
import { allocDirPaths, isSafeAllocId, taskDirPaths } from './runner/alloc-dir.ts';
import { logBounds, streamLog, tailOffset } from './logs.ts';

/** What the endpoint needs to know of the agent. */
export interface AgentHttpContext {
  nodeId: string;
  allocsDir: string;
  /** The runner of an allocation this agent process knows, finished or not. */
  runner(allocId: string): { finished: boolean; taskNames: string[] } | undefined;
  /** Counts for the health answer. */
  counts(): { allocations: number; running: number };
  /** Usage of the running tasks; absent: the route answers with no allocations. */
  stats?: () => Promise<NodeStats>;
  /** Aborted when the agent shuts down: followed logs end. */
  shutdown?: AbortSignal;
  logger: Logger;
  /** Poll period of followed logs (fallback to fs.watch). */
  logPollMs?: number;
  /** The door every request passes (default: open, as the agent's endpoint has been so far). */
  authorizer?: Authorizer;
}

/** The agent's routes on the shared transport's router (errors are the API's JSON errors). */
export function agentRouter(ctx: AgentHttpContext): Router {
  const router = new Router(ctx.authorizer ?? allowAll, ctx.logger, {
    headForGet: true,
    trimTrailingSlash: true,
    notFound: (method, path) => `no route for ${method} ${path}`,
  });
  router.add(
    {
      method: 'GET',
      path: '/v1/agent/health',
      capability: 'node:read',
      summary: 'The agent is up: its node id and how many allocations it runs.',
      handler: () => ({ status: 'ok', nodeId: ctx.nodeId, ...ctx.counts() }),
    },
    {
      method: 'GET',
      path: '/v1/agent/stats',
      capability: 'node:read',
      summary: 'Usage of the running tasks (NodeStats).',
      handler: async (): Promise<NodeStats> =>
        ctx.stats ? await ctx.stats() : { nodeId: ctx.nodeId, time: Date.now(), allocations: {} },
    },
    {
      method: 'GET',
      path: '/v1/agent/allocations/:allocId/logs',
      capability: 'logs:read',
      summary: 'A task log as text/plain, through its rotated files; follow=true streams new output.',
      stream: 'text',
      handler: async ({ params, query, res }) => {
        await serveLogs(ctx, params['allocId'] ?? '', query, res);
        return STREAMED;
      },
    },
  );
  return router;
}

export function createAgentHttpServer(ctx: AgentHttpContext): Server {
  return createServer(agentRouter(ctx).handle);
}

async function serveLogs(
  ctx: AgentHttpContext,
  allocId: string,
  q: URLSearchParams,
  res: ServerResponse,
): Promise<void> {
  const runner = isSafeAllocId(allocId) ? ctx.runner(allocId) : undefined;
  let tasks = runner?.taskNames;
  if (tasks === undefined && isSafeAllocId(allocId)) tasks = await tasksOnDisk(ctx.allocsDir, allocId);
  if (tasks === undefined) throw new NotFoundError(`allocation ${allocId} not found on node ${ctx.nodeId}`);

  let task = q.get('task') ?? undefined;
  if (task === undefined || task === '') {
    if (tasks.length !== 1 || tasks[0] === undefined)
      throw new InvalidError(`task: required, the allocation has several tasks (${tasks.join(', ')})`);
    task = tasks[0];
  }
  if (!tasks.includes(task))
    throw new NotFoundError(
      `task "${task}" not found in allocation ${allocId} (tasks: ${tasks.join(', ') || 'none'})`,
    );
  const stream = q.get('stream') ?? 'stdout';
  if (stream !== 'stdout' && stream !== 'stderr')
    throw new InvalidError(`stream: expected "stdout" or "stderr", got ${JSON.stringify(stream)}`);
  const follow = booleanParam(q, 'follow');
  const offset = countParam(q, 'offset');
  const tail = countParam(q, 'tail');
  if (offset !== undefined && tail !== undefined)
    throw new InvalidError('offset and tail: give one or the other, not both');

  const dir = taskDirPaths(ctx.allocsDir, allocId, task);
  const file = stream === 'stdout' ? dir.stdout : dir.stderr;
  let start: number;
  if (tail !== undefined) start = await tailOffset(file, tail);
  else {
    // Before the oldest byte kept: from there; past the end: the end.
    const bounds = await logBounds(file);
    start = Math.min(Math.max(offset ?? 0, bounds.start), bounds.end);
  }

  res.writeHead(200, {
    'content-type': 'text/plain; charset=utf-8',
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'x-unum-log-offset': String(start),
  });
  res.flushHeaders();
  if (res.req.method === 'HEAD') {
    res.end();
    return;
  }
  const streamOpts: Parameters<typeof streamLog>[1] = {
    path: file,
    offset: start,
    follow,
    isLive: () => ctx.runner(allocId)?.finished === false,
  };
  if (ctx.logPollMs !== undefined) streamOpts.pollMs = ctx.logPollMs;
  if (ctx.shutdown !== undefined) streamOpts.signal = ctx.shutdown;
  await streamLog(res, streamOpts);
  if (!res.destroyed) res.end();
}

/** Task names of an allocation left on disk by an earlier agent process; undefined when unknown. */
async function tasksOnDisk(allocsDir: string, allocId: string): Promise<string[] | undefined> {
  const root = allocDirPaths(allocsDir, allocId).root;
  try {
    const entries = await readdir(root, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory() && e.name !== 'alloc').map((e) => e.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
