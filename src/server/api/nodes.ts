/**
 * Node routes: what operators read (nodes, usage figures) and what agents call (register,
 * heartbeat, the allocations watch, status reports).
 */
import { isTerminal } from '../../core/alloc.ts';
import type { Node } from '../../core/types.ts';
import {
  AllocStatusUpdatesSchema,
  NodeRegistrationSchema,
  bodyJsonSchema,
  parseBody,
} from '../../api/schemas.ts';
import type { HeartbeatAnswer, NodeStats, RegisterNodeResponse } from '../../api/types.ts';
import { ForbiddenError } from '../../core/errors.ts';
import { issueCredential, requireNode, type IssuedCredential } from '../node-credentials.ts';
import { sortAllocs } from '../../api/views.ts';
import type { Route } from '../../transport/index.ts';
import { FORWARDED_HEADER } from '../leadership/leader-link.ts';
import { reportAllocs } from '../state/allocs.ts';
import { registerNode } from '../state/nodes.ts';
import { agentStats } from './agents.ts';
import { actorOf, findNode, waitIndex, write, type ApiDeps } from './context.ts';

export function nodeRoutes(d: ApiDeps): Route[] {
  const { cache } = d;

  /** A node as users see it: down as soon as its liveness key is gone, with its last heartbeat. */
  const nodeView = (n: Node): Node => ({
    ...n,
    status: n.status === 'ready' && !cache.isAlive(n.id) ? 'down' : n.status,
    lastHeartbeat: d.heartbeats.lastSeen(n.id) ?? n.lastHeartbeat,
  });

  return [
    {
      method: 'GET',
      path: '/v1/nodes',
      capability: 'node:read',
      summary: 'Nodes with their resources and status. Blocking query.',
      async handler(ctx) {
        const index = await waitIndex(d, ctx, () => cache.indexOf('nodes'));
        return { items: cache.listNodes().map(nodeView), index };
      },
    },
    {
      method: 'GET',
      path: '/v1/nodes/:id',
      capability: 'node:read',
      summary: 'One node, by id, id prefix or name.',
      handler(ctx) {
        return nodeView(findNode(d, ctx.params['id'] ?? ''));
      },
    },
    {
      method: 'GET',
      path: '/v1/nodes/:id/stats',
      capability: 'node:read',
      summary:
        "CPU, memory and process count of the running tasks on a node (by node id, id prefix or name). Asked of the node's agent.",
      handler(ctx): Promise<NodeStats> {
        return agentStats(cache, findNode(d, ctx.params['id'] ?? ''), ctx.signal);
      },
    },
    {
      method: 'POST',
      path: '/v1/nodes/register',
      capability: 'node:write',
      summary:
        'An agent registers its node (again after a restart, or after it was marked down); returns how often to heartbeat and the grace.',
      requestSchema: bodyJsonSchema(NodeRegistrationSchema),
      async handler(ctx): Promise<RegisterNodeResponse> {
        const reg = parseBody(NodeRegistrationSchema, ctx.body, 'node registration');
        if (ctx.identity.kind === 'agent' && ctx.identity.name !== reg.id)
          throw new ForbiddenError(`node ${ctx.identity.name} may not register node ${reg.id}`);
        requireNode(ctx.identity, reg.id, cache.nodeCredential(reg.id));
        let made: ReturnType<typeof issueCredential> | undefined;
        let issued: IssuedCredential | undefined;
        const node = await write(d, () => {
          const now = d.clock.now();
          const existing = cache.nodeCredential(reg.id);
          // A registration that raced another one for a new node id: only the winner is that node.
          if (existing !== undefined && made !== undefined && existing.secretHash !== made.stored.secretHash)
            throw new ForbiddenError(`node ${reg.id} was registered by someone else just now`);
          if (existing === undefined) made ??= issueCredential(reg.id, now);
          issued = existing === undefined ? made?.issued : undefined;
          return registerNode(
            cache,
            reg,
            now,
            actorOf(ctx),
            existing === undefined ? made?.stored : undefined,
          );
        });
        const { intervalMs, graceMs, ttlSeconds } = d.heartbeats.answer;
        return {
          node,
          heartbeatTtlSeconds: ttlSeconds,
          heartbeatIntervalMs: intervalMs,
          heartbeatGraceMs: graceMs,
          ...(issued !== undefined ? { credential: issued } : {}),
        };
      },
    },
    {
      method: 'POST',
      path: '/v1/nodes/:id/heartbeat',
      capability: 'node:write',
      summary:
        "An agent's heartbeat: kept in the leader's memory, never written (a follower hands it to the leader). Answers how often to beat and the grace; 404 not_found when the node must register again.",
      handler(ctx): Promise<HeartbeatAnswer> {
        const id = ctx.params['id'] ?? '';
        requireNode(ctx.identity, id, cache.nodeCredential(id));
        return d.heartbeats.beat(id, {
          authorization: ctx.req.headers.authorization,
          forwarded: ctx.req.headers[FORWARDED_HEADER] !== undefined,
        });
      },
    },
    {
      method: 'GET',
      path: '/v1/nodes/:id/allocations',
      capability: 'node:read',
      summary: 'Allocations assigned to a node that it must run or stop. Blocking query (used by agents).',
      async handler(ctx) {
        const id = ctx.params['id'] ?? '';
        requireNode(ctx.identity, id, cache.nodeCredential(id));
        const index = await waitIndex(d, ctx, () => cache.indexOfNodeAllocs(id));
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
        requireNode(ctx.identity, nodeId, cache.nodeCredential(nodeId));
        const { updates } = parseBody(AllocStatusUpdatesSchema, ctx.body, 'allocation status');
        await write(d, () => reportAllocs(cache, nodeId, updates, d.clock.now()));
        return { index: cache.index };
      },
    },
  ];
}
