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
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readdir } from 'node:fs/promises';
import { STATUS_BY_CODE } from '../api/errors.ts';
import type { ErrorCode } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { allocDirPaths, isSafeAllocId, taskDirPaths } from './alloc-dir.ts';
import type { NodeStats } from '../api/types.ts';
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
}

class HttpError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

export function createAgentHttpServer(ctx: AgentHttpContext): Server {
  const server = createServer((req, res) => {
    handle(ctx, req, res).catch((err: unknown) => {
      if (err instanceof HttpError) return sendError(res, err.code, err.message);
      ctx.logger.error({ err, url: req.url }, 'agent http request failed');
      if (!res.headersSent) sendError(res, 'internal', 'internal error in the agent');
      else res.destroy();
    });
  });
  return server;
}

async function handle(ctx: AgentHttpContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://agent');
  const path = url.pathname.replace(/\/+$/, '');
  if (req.method !== 'GET' && req.method !== 'HEAD')
    throw new HttpError('invalid', `${req.method ?? '?'} ${path}: only GET is served here`);
  if (path === '/v1/agent/health') {
    sendJson(res, 200, { status: 'ok', nodeId: ctx.nodeId, ...ctx.counts() });
    return;
  }
  if (path === '/v1/agent/stats') {
    const stats: NodeStats = ctx.stats
      ? await ctx.stats()
      : { nodeId: ctx.nodeId, time: Date.now(), allocations: {} };
    sendJson(res, 200, stats);
    return;
  }
  const m = /^\/v1\/agent\/allocations\/([^/]+)\/logs$/.exec(path);
  if (m?.[1] !== undefined) {
    await serveLogs(ctx, decodeURIComponent(m[1]), url.searchParams, res);
    return;
  }
  throw new HttpError('not_found', `no route for GET ${path}`);
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
  if (tasks === undefined)
    throw new HttpError('not_found', `allocation ${allocId} not found on node ${ctx.nodeId}`);

  let task = q.get('task') ?? undefined;
  if (task === undefined || task === '') {
    if (tasks.length !== 1 || tasks[0] === undefined)
      throw new HttpError(
        'invalid',
        `task: required, the allocation has several tasks (${tasks.join(', ')})`,
      );
    task = tasks[0];
  }
  if (!tasks.includes(task))
    throw new HttpError(
      'not_found',
      `task "${task}" not found in allocation ${allocId} (tasks: ${tasks.join(', ') || 'none'})`,
    );
  const stream = q.get('stream') ?? 'stdout';
  if (stream !== 'stdout' && stream !== 'stderr')
    throw new HttpError('invalid', `stream: expected "stdout" or "stderr", got ${JSON.stringify(stream)}`);
  const follow = parseBool(q.get('follow'), 'follow');
  const offset = parseCount(q.get('offset'), 'offset');
  const tail = parseCount(q.get('tail'), 'tail');
  if (offset !== undefined && tail !== undefined)
    throw new HttpError('invalid', 'offset and tail: give one or the other, not both');

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

function parseBool(v: string | null, name: string): boolean {
  if (v === null || v === '' || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  throw new HttpError('invalid', `${name}: expected true or false, got ${JSON.stringify(v)}`);
}

function parseCount(v: string | null, name: string): number | undefined {
  if (v === null || v === '') return undefined;
  if (!/^\d{1,15}$/.test(v))
    throw new HttpError('invalid', `${name}: expected a whole number, 0 or more, got ${JSON.stringify(v)}`);
  return Number(v);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, code: ErrorCode, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, STATUS_BY_CODE[code], { error: { code, message } });
}
