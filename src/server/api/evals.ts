/** Evaluation routes: the scheduler's work items and their outcomes. */
import { NotFoundError } from '../../core/errors.ts';
import type { Route } from '../../transport/index.ts';
import { authorizeIn, type ApiDeps } from './context.ts';

export function evalRoutes(d: ApiDeps): Route[] {
  const { cache } = d;
  return [
    {
      method: 'GET',
      path: '/v1/evaluations',
      capability: 'job:read',
      summary: 'Evaluations, newest first; filter by `job` and `namespace`.',
      async handler(ctx) {
        const job = ctx.query.get('job');
        const ns = ctx.query.get('namespace') ?? '*';
        await authorizeIn(d, ctx, 'job:read', ns);
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
      async handler(ctx) {
        const id = ctx.params['id'] ?? '';
        const e =
          cache.evaluation(id) ??
          (id.length >= 4 ? cache.listEvals().find((x) => x.id.startsWith(id)) : undefined);
        if (!e) throw new NotFoundError(`no evaluation ${id}`);
        await authorizeIn(d, ctx, 'job:read', e.namespace);
        return e;
      },
    },
  ];
}
