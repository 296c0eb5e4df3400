/**
 * Calls the server makes to a node's agent on a user's behalf (logs, usage figures): one place that
 * finds the node, refuses early when it is silent, and turns network failures into errors that say
 * which agent could not be reached.
 *
 * Two ways to the agent, as the node proves itself to the server: over mutual TLS (a server with a
 * CA: the server presents its server certificate, and the agent's certificate must be the node's
 * own, by id and role, whatever address answers), or with the agent key issued with a node secret
 * (`unum up`'s plain loopback).
 */
import type { PeerCertificate } from 'node:tls';
import { NotFoundError, UnavailableError } from '../../core/errors.ts';
import { shortId } from '../../core/ids.ts';
import type { Allocation, Node } from '../../core/types.ts';
import { TlsFetcher, isCertificateError, type ClientTls } from '../../api/https.ts';
import type { NodeStats } from '../../api/types.ts';
import type { StateCache } from '../cache.ts';
import { STREAMED, subjectIdentity, type RequestContext } from '../../transport/index.ts';

/** How the server calls agents (made once per server: it keeps TLS connections alive). */
export interface AgentCaller {
  fetch(node: Node, path: string, signal: AbortSignal): Promise<Response>;
  close(): void;
}

/** Calls agents with their agent key (plain HTTP), or over mutual TLS when `tls` is given. */
export function agentCaller(cache: StateCache, tls?: ClientTls): AgentCaller {
  const fetcher = tls !== undefined ? new TlsFetcher(tls) : undefined;
  return {
    async fetch(node, path, signal) {
      if (fetcher === undefined || !node.address.startsWith('https:')) {
        // The agent answers only the key the cluster gave it at registration.
        const key = cache.nodeCredential(node.id)?.agentKey;
        return fetch(`${node.address}${path}`, {
          signal,
          ...(key !== undefined ? { headers: { authorization: `Bearer ${key}` } } : {}),
        });
      }
      return fetcher.fetch(`${node.address}${path}`, {
        signal,
        expectName: node.id,
        checkPeer: (cert) => nodeCertificateProblem(cert, node),
      });
    },
    close: () => fetcher?.close(),
  };
}

/** Whatever answers at a node's address must hold that node's certificate. */
function nodeCertificateProblem(cert: PeerCertificate, node: Node): Error | undefined {
  const who = subjectIdentity(cert.subject);
  if (who?.role === 'node' && who.name === node.id) return undefined;
  return new Error(
    `the agent at ${node.address} presented the certificate of ${who ? `${who.role} ${who.name}` : 'no member of the cluster'}, not of node ${node.id}`,
  );
}

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

async function call(agents: AgentCaller, node: Node, path: string, signal: AbortSignal): Promise<Response> {
  try {
    return await agents.fetch(node, path, signal);
  } catch (err) {
    const why =
      isCertificateError(err) || (err as Error).message.includes('presented the certificate')
        ? `: ${(err as Error).message}`
        : '';
    throw new UnavailableError(`cannot reach the agent of node ${node.name} at ${node.address}${why}`, {
      cause: err,
    });
  }
}

/** Streams a task's log from its node's agent to the client, as the agent sends it. */
export async function proxyLogs(
  agents: AgentCaller,
  node: Node,
  a: Allocation,
  ctx: RequestContext,
): Promise<typeof STREAMED> {
  const upstream = await call(
    agents,
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
export async function agentStats(
  d: { cache: StateCache; agents: AgentCaller },
  node: Node,
  signal: AbortSignal,
): Promise<NodeStats> {
  if (!d.cache.isAlive(node.id))
    throw new UnavailableError(`node ${node.name} is not heartbeating: no usage figures from it`);
  const upstream = await call(
    d.agents,
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
