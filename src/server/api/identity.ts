/** Workload identity routes: the public keys, a task's own identity, and a node fetching its tasks' tokens. */
import { isActive } from '../../core/alloc.ts';
import { ForbiddenError, NotFoundError, UnauthenticatedError } from '../../core/errors.ts';
import type { Route } from '../../transport/index.ts';
import { requireNode } from '../node-credentials.ts';
import type { ApiDeps } from './context.ts';

export function identityRoutes(d: ApiDeps): Route[] {
  const { cache } = d;
  return [
    {
      method: 'GET',
      path: '/.well-known/jwks.json',
      capability: 'anyone',
      summary: 'The public keys that sign workload identities (JWK set).',
      handler: () => d.identity.jwks(),
    },
    {
      method: 'GET',
      path: '/v1/identity/self',
      capability: 'anyone',
      summary:
        "A task's own identity, from the workload token it sends: namespace, job, group, alloc, task, node.",
      handler(ctx) {
        if (ctx.identity.kind !== 'workload' || !ctx.identity.claims)
          throw new UnauthenticatedError(
            'send a workload identity (the file UNUM_IDENTITY_FILE names, in a task)',
          );
        return ctx.identity.claims;
      },
    },
    {
      method: 'POST',
      path: '/v1/nodes/:id/allocations/:allocId/identity',
      capability: 'node:write',
      summary: 'A node fetches the workload tokens of the tasks of one of its own running allocations.',
      async handler(ctx) {
        const nodeId = ctx.params['id'] ?? '';
        requireNode(ctx.identity, nodeId, cache.nodeCredential(nodeId), d.pki !== undefined);
        const alloc = cache.alloc(ctx.params['allocId'] ?? '');
        if (!alloc) throw new NotFoundError(`no allocation ${ctx.params['allocId']}`);
        if (alloc.nodeId !== nodeId)
          throw new ForbiddenError(`allocation ${alloc.id} does not run on node ${nodeId}`);
        if (alloc.desiredStatus !== 'run' || !isActive(alloc))
          throw new ForbiddenError(`allocation ${alloc.id} is not running: it gets no identity`);
        const now = d.clock.now();
        const tokens: Record<string, string> = {};
        let expiresAt = Number.POSITIVE_INFINITY;
        for (const task of alloc.groupSpec.tasks) {
          const t = await d.identity.sign(alloc, task.name, now);
          tokens[task.name] = t.token;
          expiresAt = Math.min(expiresAt, t.expiresAt);
        }
        return { tokens, expiresAt };
      },
    },
  ];
}
