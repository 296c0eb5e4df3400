/**
 * Node routes: what operators read (nodes, usage figures) and change (drain, eligibility), and what
 * agents call (register, heartbeat, the allocations watch, status reports).
 */
import { isTerminal } from '../../core/alloc.ts';
import type { Node } from '../../core/types.ts';
import {
  AllocStatusUpdatesSchema,
  DEFAULT_DRAIN_DEADLINE_MS,
  NodeDrainBodySchema,
  NodeEligibilityBodySchema,
  NodeRegistrationSchema,
  bodyJsonSchema,
  parseBody,
} from '../../api/schemas.ts';
import type { HeartbeatAnswer, NodeStats, RegisterNodeResponse } from '../../api/types.ts';
import { ForbiddenError } from '../../core/errors.ts';
import { issueCredential, requireNode, type IssuedCredential } from '../node-credentials.ts';
import { sortAllocs } from '../../api/views.ts';
import type { RequestContext, Route } from '../../transport/index.ts';
import { FORWARDED_HEADER } from '../leadership/leader-link.ts';
import { reportAllocs } from '../state/allocs.ts';
import { markEligible, markIneligible, startDrain } from '../state/drain.ts';
import { registerNode } from '../state/nodes.ts';
import { agentStats } from './agents.ts';
import { actorOf, findNode, waitIndex, write, type ApiDeps } from './context.ts';

export function nodeRoutes(d: ApiDeps): Route[] {
  const { cache } = d;

  /** A node as users see it: down as soon as its liveness key is gone, with its last heartbeat. */
  const nodeView = (n: Node): Node => ({
    ...n,
    // A node stored before eligibility existed has none: it was eligible.
    eligibility: n.eligibility === 'ineligible' ? 'ineligible' : 'eligible',
    status: n.status === 'ready' && !cache.isAlive(n.id) ? 'down' : n.status,
    lastHeartbeat: d.heartbeats.lastSeen(n.id) ?? n.lastHeartbeat,
  });

  /** Draining and eligibility are an operator's: a node's credential (which has node:write) may not. */
  const operator = (ctx: RequestContext) => {
    if (ctx.identity.kind === 'agent')
      throw new ForbiddenError(
        `a node's credential may not drain nodes or change their eligibility: use an operator's token`,
      );
  };

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
        return agentStats(d, findNode(d, ctx.params['id'] ?? ''), ctx.signal);
      },
    },
    {
      method: 'POST',
      path: '/v1/nodes/:id/drain',
      capability: 'node:write',
      summary:
        'Drain a node (by id, id prefix or name): `{ deadline: "1h" }` moves its allocations to other nodes and makes it ineligible; what is left at the deadline is stopped. `{ cancel: true }` ends a drain. Answers the node.',
      requestSchema: bodyJsonSchema(NodeDrainBodySchema),
      async handler(ctx) {
        operator(ctx);
        const body = parseBody(NodeDrainBodySchema, ctx.body, 'drain request');
        const { id } = findNode(d, ctx.params['id'] ?? '');
        const node = await write(d, () =>
          body.cancel === true
            ? markEligible(cache, id, d.clock.now(), actorOf(ctx))
            : startDrain(cache, id, body.deadline ?? DEFAULT_DRAIN_DEADLINE_MS, d.clock.now(), actorOf(ctx)),
        );
        return nodeView(node);
      },
    },
    {
      method: 'POST',
      path: '/v1/nodes/:id/eligibility',
      capability: 'node:write',
      summary:
        'Whether new work may be placed on a node: `{ eligible: false }` keeps what runs there; `{ eligible: true }` also ends a drain. Answers the node.',
      requestSchema: bodyJsonSchema(NodeEligibilityBodySchema),
      async handler(ctx) {
        operator(ctx);
        const { eligible } = parseBody(NodeEligibilityBodySchema, ctx.body, 'eligibility');
        const { id } = findNode(d, ctx.params['id'] ?? '');
        const node = await write(d, () =>
          (eligible ? markEligible : markIneligible)(cache, id, d.clock.now(), actorOf(ctx)),
        );
        return nodeView(node);
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
        requireNode(ctx.identity, reg.id, cache.nodeCredential(reg.id), d.pki !== undefined);
        let made: ReturnType<typeof issueCredential> | undefined;
        let issued: IssuedCredential | undefined;
        const node = await write(d, () => {
          const now = d.clock.now();
          const existing = cache.nodeCredential(reg.id);
          // A registration that raced another one for a new node id: only the winner is that node.
          if (existing !== undefined && made !== undefined && existing.secretHash !== made.stored.secretHash)
            throw new ForbiddenError(`node ${reg.id} was registered by someone else just now`);
          // Over TLS the node's certificate is its credential: no secret is made.
          if (existing === undefined && d.pki === undefined) made ??= issueCredential(reg.id, now);
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
        requireNode(ctx.identity, id, cache.nodeCredential(id), d.pki !== undefined);
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
        requireNode(ctx.identity, id, cache.nodeCredential(id), d.pki !== undefined);
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
        requireNode(ctx.identity, nodeId, cache.nodeCredential(nodeId), d.pki !== undefined);
        const { updates } = parseBody(AllocStatusUpdatesSchema, ctx.body, 'allocation status');
        await write(d, () => reportAllocs(cache, nodeId, updates, d.clock.now()));
        return { index: cache.index };
      },
    },
  ];
}
