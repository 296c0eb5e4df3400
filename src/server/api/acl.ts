/**
 * ACL routes: bootstrap the first management token, manage policies and tokens. Changing ACLs needs
 * a management token: a policy or token writer could otherwise grant itself anything.
 */
import { parseDuration } from '../../core/duration.ts';
import {
  ConflictError,
  ForbiddenError,
  InvalidError,
  NotFoundError,
  UnauthenticatedError,
} from '../../core/errors.ts';
import {
  ACL_NAME,
  AclPolicyBodySchema,
  AclTokenBodySchema,
  bodyJsonSchema,
  parseBody,
} from '../../api/schemas.ts';
import type { RequestContext, Route } from '../../transport/index.ts';
import { publicToken } from '../acl/tokens.ts';
import { applyPolicy, bootstrapAcl, createToken, deletePolicy, revokeToken } from '../state/acl.ts';
import { actorOf, write, type ApiDeps } from './context.ts';

export function aclRoutes(d: ApiDeps): Route[] {
  const { cache } = d;
  const requireManagement = (ctx: RequestContext) => {
    const token = ctx.identity.accessor !== undefined ? cache.aclToken(ctx.identity.accessor) : undefined;
    if (!token?.management) throw new ForbiddenError('changing ACLs needs a management token');
  };
  const policyName = (ctx: RequestContext) => {
    const name = ctx.params['name'] ?? '';
    if (!ACL_NAME.test(name))
      throw new InvalidError(
        `"${name}" is not a policy name: 1-63 lower-case letters, digits, ".", "_" or "-"`,
      );
    return name;
  };

  return [
    {
      method: 'POST',
      path: '/v1/acl/bootstrap',
      capability: 'anyone',
      summary: 'Make the first management token (once per cluster). Its secret is shown once.',
      async handler(ctx) {
        const made = await write(d, () =>
          bootstrapAcl(cache, { name: 'bootstrap' }, d.clock.now(), actorOf(ctx)),
        );
        if (!made)
          throw new ConflictError(
            'ACLs are bootstrapped already: ask a holder of a management token for a token (unum acl token create)',
          );
        return made;
      },
    },
    {
      method: 'GET',
      path: '/v1/acl/policies',
      capability: 'operator:read',
      summary: 'ACL policies.',
      handler: () => ({ items: cache.listAclPolicies() }),
    },
    {
      method: 'PUT',
      path: '/v1/acl/policies/:name',
      capability: 'operator:write',
      summary: 'Create or replace a policy: { description?, rules: [{ namespace, capabilities }] }.',
      requestSchema: bodyJsonSchema(AclPolicyBodySchema),
      async handler(ctx) {
        requireManagement(ctx);
        const name = policyName(ctx);
        const body = parseBody(AclPolicyBodySchema, ctx.body, `policy ${name}`);
        return write(d, () =>
          applyPolicy(
            cache,
            cache.aclPolicy(name),
            {
              name,
              rules: body.rules,
              ...(body.description !== undefined ? { description: body.description } : {}),
            },
            d.clock.now(),
            actorOf(ctx),
          ),
        );
      },
    },
    {
      method: 'DELETE',
      path: '/v1/acl/policies/:name',
      capability: 'operator:write',
      summary: 'Delete a policy (tokens that name it lose what it granted).',
      async handler(ctx) {
        requireManagement(ctx);
        const name = policyName(ctx);
        if (!cache.aclPolicy(name)) throw new NotFoundError(`no policy "${name}"`);
        await write(d, () => deletePolicy(cache, name, d.clock.now(), actorOf(ctx)));
        return {};
      },
    },
    {
      method: 'GET',
      path: '/v1/acl/tokens',
      capability: 'operator:read',
      summary: 'ACL tokens (accessors and policies; never their secrets).',
      handler: () => ({ items: cache.listAclTokens().map(publicToken) }),
    },
    {
      method: 'POST',
      path: '/v1/acl/tokens',
      capability: 'operator:write',
      summary: 'Make a token: { name, policies, management?, ttl? }. Its secret is shown once.',
      requestSchema: bodyJsonSchema(AclTokenBodySchema),
      async handler(ctx) {
        requireManagement(ctx);
        const body = parseBody(AclTokenBodySchema, ctx.body, 'token');
        const unknown = body.policies.filter((p) => !cache.aclPolicy(p));
        if (unknown.length > 0)
          throw new NotFoundError(`no policy ${unknown.map((p) => `"${p}"`).join(', ')}: apply it first`);
        const now = d.clock.now();
        let expiresAt: number | undefined;
        if (body.ttl !== undefined) {
          const ms = /^\s*\d+(\.\d+)?\s*[a-z]+\s*$/i.test(body.ttl) ? parseDuration(body.ttl) : undefined;
          // A unit is required ("1" would be 1 ms), and ten years is long enough for any token.
          if (ms === undefined || !Number.isFinite(ms) || ms < 1000 || ms > 10 * 365 * 86_400_000)
            throw new InvalidError(
              `ttl: expected a duration from 1s to 10 years with its unit, such as "24h" or "30m", got ${JSON.stringify(body.ttl)}`,
            );
          expiresAt = now + ms;
        }
        return write(d, () =>
          createToken(
            cache,
            {
              name: body.name,
              policies: body.policies,
              management: body.management,
              ...(expiresAt !== undefined ? { expiresAt } : {}),
            },
            now,
            actorOf(ctx),
          ),
        );
      },
    },
    {
      method: 'DELETE',
      path: '/v1/acl/tokens/:accessor',
      capability: 'operator:write',
      summary: 'Revoke a token: it stops working at once on every server.',
      async handler(ctx) {
        requireManagement(ctx);
        const token = cache.aclToken(ctx.params['accessor'] ?? '');
        if (!token) throw new NotFoundError(`no token with accessor ${ctx.params['accessor']}`);
        await write(d, () => revokeToken(cache, token, d.clock.now(), actorOf(ctx)));
        return {};
      },
    },
    {
      method: 'GET',
      path: '/v1/acl/tokens/self',
      capability: 'anyone',
      summary: 'The token the request is made with.',
      handler(ctx) {
        const token = ctx.identity.accessor !== undefined ? cache.aclToken(ctx.identity.accessor) : undefined;
        if (!token) throw new UnauthenticatedError('this request carries no token');
        return publicToken(token);
      },
    },
  ];
}
