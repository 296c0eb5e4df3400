/**
 * Calls the server makes to a node's agent on a user's behalf (logs, usage figures): one place that
 * finds the node, refuses early when it is silent, and turns network failures into errors that say
 * which agent could not be reached. Mutual TLS between server and agent will go here.
 */
import { NotFoundError, UnavailableError } from '../../core/errors.ts';
import { shortId } from '../../core/ids.ts';
import type { Allocation, Node } from '../../core/types.ts';
import type { NodeStats } from '../../api/types.ts';
import type { StateCache } from '../cache.ts';
import { STREAMED, type RequestContext } from '../../transport/index.ts';

/** How long the stats call waits for a node's agent. */
export const STATS_TIMEOUT_MS = 5_000;

/** The node an allocation runs on, if it heartbeats (its agent keeps the allocation's logs). */
export function agentOfAlloc(cache: StateCache, a: Allocation): Node {
  const node = cache.node(a.nodeId);
  if (!node) throw new NotFoundError(`node ${a.nodeId} of allocation ${shortId(a.id)} is unknown`);
  if (!cache.isAlive(node.id))
    throw new UnavailableError(`node ${node.name} is not heartbeating; the logs of ${a.name} are kept on it`);
  return node;
}

async function call(cache: StateCache, node: Node, path: string, signal: AbortSignal): Promise<Response> {
  // The agent answers only the key the cluster gave it at registration.
  const key = cache.nodeCredential(node.id)?.agentKey;
  try {
    return await fetch(`${node.address}${path}`, {
      signal,
      ...(key !== undefined ? { headers: { authorization: `Bearer ${key}` } } : {}),
    });
  } catch (err) {
    throw new UnavailableError(`cannot reach the agent of node ${node.name} at ${node.address}`, {
      cause: err,
    });
  }
}

/** Streams a task's log from its node's agent to the client, as the agent sends it. */
export async function proxyLogs(
  cache: StateCache,
  node: Node,
  a: Allocation,
  ctx: RequestContext,
): Promise<typeof STREAMED> {
  const upstream = await call(
    cache,
    node,
    `/v1/agent/allocations/${encodeURIComponent(a.id)}/logs?${ctx.query.toString()}`,
    ctx.signal,
  );
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
}

/** The usage figures of a node's running tasks, asked of its agent. */
export async function agentStats(cache: StateCache, node: Node, signal: AbortSignal): Promise<NodeStats> {
  if (!cache.isAlive(node.id))
    throw new UnavailableError(`node ${node.name} is not heartbeating: no usage figures from it`);
  const upstream = await call(
    cache,
    node,
    '/v1/agent/stats',
    AbortSignal.any([signal, AbortSignal.timeout(STATS_TIMEOUT_MS)]),
  );
  const text = await upstream.text();
  if (!upstream.ok)
    throw new UnavailableError(
      `the agent of node ${node.name} answered HTTP ${upstream.status}: ${text.slice(0, 200)}`,
    );
  try {
    return JSON.parse(text) as NodeStats;
  } catch (err) {
    throw new UnavailableError(`the agent of node ${node.name} answered something that is not JSON`, {
      cause: err,
    });
  }
}
