/** Allocation routes: list, read, and a task's logs (served by the allocation's agent). */
import { holdsResources } from '../../core/alloc.ts';
import { sortAllocs } from '../../api/views.ts';
import type { Route } from '../../transport/index.ts';
import { agentOfAlloc, proxyLogs } from './agents.ts';
import { authorizeIn, findAlloc, waitIndex, type ApiDeps } from './context.ts';

export function allocRoutes(d: ApiDeps): Route[] {
  const { cache } = d;
  return [
    {
      method: 'GET',
      path: '/v1/allocations',
      capability: 'job:read',
      summary:
        'Allocations, filtered by `job`, `node`, `namespace` (`*` for all); running ones unless `all=true`. Blocking query.',
      async handler(ctx) {
        const ns = ctx.query.get('namespace') ?? '*';
        await authorizeIn(d, ctx, 'job:read', ns);
        const index = await waitIndex(d, ctx, () => cache.indexOf('allocs'));
        const job = ctx.query.get('job');
        const node = ctx.query.get('node');
        const all = ctx.query.get('all') === 'true';
        const items = cache
          .listAllocs()
          .filter(
            (a) =>
              (ns === '*' || a.namespace === ns) &&
              (job === null || a.jobId === job) &&
              (node === null || a.nodeId === node || a.nodeId.startsWith(node)) &&
              (all || holdsResources(a)),
          );
        return { items: sortAllocs(items), index };
      },
    },
    {
      method: 'GET',
      path: '/v1/allocations/:id',
      capability: 'job:read',
      summary: 'One allocation, by id or unique id prefix.',
      async handler(ctx) {
        const a = findAlloc(d, ctx.params['id'] ?? '');
        await authorizeIn(d, ctx, 'job:read', a.namespace);
        return a;
      },
    },
    {
      method: 'GET',
      path: '/v1/allocations/:id/logs',
      capability: 'logs:read',
      summary:
        "A task's stdout or stderr, as text; `follow=true` streams new output. Served by the node's agent.",
      stream: 'text',
      query: [
        { name: 'task', description: 'task name (required)' },
        { name: 'stream', description: 'stdout (default) or stderr' },
        { name: 'follow', description: 'true to keep streaming' },
        { name: 'tail', description: 'only the last N lines' },
        { name: 'offset', description: 'start at this byte' },
      ],
      async handler(ctx) {
        const a = findAlloc(d, ctx.params['id'] ?? '');
        await authorizeIn(d, ctx, 'logs:read', a.namespace);
        return proxyLogs(d.agents, agentOfAlloc(cache, a), a, ctx);
      },
    },
  ];
}
