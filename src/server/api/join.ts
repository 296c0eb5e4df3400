/**
 * Joining: join tokens (made, listed, revoked by operators), a new machine's join (its token and
 * its certificate request in, its node certificate and the CA out), and a joined node's renewal.
 * Only a server with a cluster CA (`unum server`) has them; `unum up`'s plain listener answers
 * that it has none.
 */
import { parseDuration } from '../../core/duration.ts';
import { ForbiddenError, InvalidError, NotFoundError } from '../../core/errors.ts';
import {
  JoinBodySchema,
  JoinTokenBodySchema,
  RenewBodySchema,
  bodyJsonSchema,
  parseBody,
} from '../../api/schemas.ts';
import type { JoinResponse, MadeJoinToken } from '../../api/types.ts';
import type { RequestContext, Route } from '../../transport/index.ts';
import { requireNode } from '../node-credentials.ts';
import type { ServerPki } from '../pki.ts';
import {
  certificateRenewed,
  checkJoinToken,
  createJoinToken,
  joinNode,
  publicJoinToken,
  revokeJoinToken,
} from '../state/join-tokens.ts';
import { actorOf, write, type ApiDeps } from './context.ts';

/** Lifetime of a join token made without `ttl`. */
export const DEFAULT_JOIN_TOKEN_TTL_MS = 24 * 3_600_000;
/** The longest a join token may live: it lets anyone who holds it become a node. */
export const MAX_JOIN_TOKEN_TTL_MS = 30 * 24 * 3_600_000;

/** The lifetime a `ttl` asks for; InvalidError naming the field otherwise. */
export function joinTokenTtl(ttl: string | undefined): number {
  if (ttl === undefined) return DEFAULT_JOIN_TOKEN_TTL_MS;
  const ms = /^\s*\d+(\.\d+)?\s*[a-z]+\s*$/i.test(ttl) ? parseDuration(ttl) : undefined;
  if (ms === undefined || !Number.isFinite(ms) || ms < 60_000 || ms > MAX_JOIN_TOKEN_TTL_MS)
    throw new InvalidError(
      `ttl: expected a duration from 1m to 720h with its unit, such as "24h" or "30m", got ${JSON.stringify(ttl)}`,
    );
  return ms;
}

export function joinRoutes(d: ApiDeps): Route[] {
  const { cache } = d;
  const needPki = (): ServerPki => {
    if (d.pki === undefined)
      throw new NotFoundError(
        'this server has no cluster CA (unum up serves plain HTTP on loopback): agents join a server started with "unum server"',
      );
    return d.pki;
  };
  // A node holds node:write too: it may not let other machines in.
  const notANode = (ctx: RequestContext): void => {
    if (ctx.identity.kind === 'agent')
      throw new ForbiddenError("a node's certificate does not let it manage join tokens");
  };

  return [
    {
      method: 'POST',
      path: '/v1/join-tokens',
      capability: ['node:write', 'operator:write'],
      summary:
        'Make a join token: { ttl? (default 24h, at most 720h), description? }. Its secret is shown once.',
      requestSchema: bodyJsonSchema(JoinTokenBodySchema),
      async handler(ctx): Promise<MadeJoinToken> {
        notANode(ctx);
        const pki = needPki();
        const body = parseBody(JoinTokenBodySchema, ctx.body, 'join token');
        const ttl = joinTokenTtl(body.ttl);
        const now = d.clock.now();
        const made = await write(d, () =>
          createJoinToken(
            cache,
            {
              expiresAt: now + ttl,
              ...(body.description !== undefined ? { description: body.description } : {}),
            },
            now,
            actorOf(ctx),
          ),
        );
        return { ...made, caHash: pki.caHash };
      },
    },
    {
      method: 'GET',
      path: '/v1/join-tokens',
      capability: ['node:read', 'operator:read'],
      summary: 'Join tokens (ids, expiry, joins; never their secrets).',
      handler(ctx) {
        notANode(ctx);
        return { items: cache.listJoinTokens().map(publicJoinToken) };
      },
    },
    {
      method: 'DELETE',
      path: '/v1/join-tokens/:id',
      capability: ['node:write', 'operator:write'],
      summary:
        'Revoke a join token: no node joins with it any more (nodes that joined keep their certificates).',
      async handler(ctx) {
        notANode(ctx);
        const id = ctx.params['id'] ?? '';
        const token = cache.joinToken(id);
        if (!token) throw new NotFoundError(`no join token ${id}`);
        await write(d, () => revokeJoinToken(cache, token, d.clock.now(), actorOf(ctx)));
        return {};
      },
    },
    {
      method: 'POST',
      path: '/v1/join',
      capability: 'anyone',
      summary:
        "A new machine joins: { token, csr } (a PEM request naming its node id). Answers its node certificate and the CA's. 401 for a wrong, expired or revoked token.",
      requestSchema: bodyJsonSchema(JoinBodySchema),
      async handler(ctx): Promise<JoinResponse> {
        const pki = needPki();
        const body = parseBody(JoinBodySchema, ctx.body, 'join');
        const token = checkJoinToken(cache, body.token, d.clock.now());
        // The request is read (and its signature checked) before anything is written.
        const issued = await pki.signNode(body.csr, d.clock.now());
        const again = cache.node(issued.nodeId) !== undefined;
        await write(d, () =>
          joinNode(cache, { tokenId: token.id, nodeId: issued.nodeId, again }, d.clock.now()),
        );
        d.log.info({ nodeId: issued.nodeId, joinToken: token.id, again }, 'node joined');
        return issued;
      },
    },
    {
      method: 'POST',
      path: '/v1/nodes/:id/certificate',
      capability: 'node:write',
      summary: 'A joined node renews its certificate: { csr } for its own id, with its current certificate.',
      requestSchema: bodyJsonSchema(RenewBodySchema),
      async handler(ctx): Promise<JoinResponse> {
        const pki = needPki();
        const id = ctx.params['id'] ?? '';
        requireNode(ctx.identity, id, undefined, true);
        const body = parseBody(RenewBodySchema, ctx.body, 'certificate renewal');
        const issued = await pki.signNode(body.csr, d.clock.now(), id);
        await write(d, () =>
          certificateRenewed({ nodeId: id, expiresAt: issued.expiresAt }, d.clock.now(), actorOf(ctx)),
        );
        return issued;
      },
    },
  ];
}
