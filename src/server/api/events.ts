/** Event routes: the cluster's history, as a page or as a live Server-Sent Events stream. */
import type { ClusterEvent } from '../../core/types.ts';
import { STREAMED, countParam, openSse, type RequestContext, type Route } from '../../transport/index.ts';
import { authorizeIn, type ApiDeps } from './context.ts';

function eventFilter(ctx: RequestContext): (e: ClusterEvent) => boolean {
  const ns = ctx.query.get('namespace');
  const job = ctx.query.get('job');
  const all = ns === null || ns === '*';
  // Events of no namespace (nodes, ACLs) are the cluster's: only for those allowed in every one.
  return (e) => (all || e.namespace === ns) && (job === null || e.jobId === job);
}

export function eventRoutes(d: ApiDeps): Route[] {
  const { cache } = d;
  return [
    {
      method: 'GET',
      path: '/v1/events',
      capability: 'event:read',
      summary:
        'Cluster events after `index`, oldest first (at most `limit`, default 100; without `index`, the latest ones).',
      async handler(ctx) {
        // Without a namespace, the events of every namespace: that needs the right in all of them.
        await authorizeIn(d, ctx, 'event:read', ctx.query.get('namespace') ?? '*');
        const filter = eventFilter(ctx);
        const limit = Math.min(Math.max(countParam(ctx.query, 'limit') ?? 100, 1), 10_000);
        const hasIndex = ctx.query.has('index');
        const after = countParam(ctx.query, 'index') ?? 0;
        const matching = cache.events.filter((e) => e.index > after && filter(e));
        const events = hasIndex ? matching.slice(0, limit) : matching.slice(-limit);
        return {
          events,
          index: events.length ? events[events.length - 1]!.index : hasIndex ? after : cache.index,
        };
      },
    },
    {
      method: 'GET',
      path: '/v1/events/stream',
      capability: 'event:read',
      summary: 'Server-Sent Events: every cluster event after `index` (default: from now), then live ones.',
      stream: 'sse',
      async handler(ctx) {
        // Without a namespace, the events of every namespace: that needs the right in all of them.
        await authorizeIn(d, ctx, 'event:read', ctx.query.get('namespace') ?? '*');
        const filter = eventFilter(ctx);
        const from = countParam(ctx.query, 'index') ?? cache.index;
        const sse = openSse(ctx.res);
        let last = from;
        const oldest = cache.events[0]?.index;
        if (oldest !== undefined && from + 1 < oldest && ctx.query.has('index'))
          sse.comment(`events before ${oldest} are no longer kept; starting there`);
        for (const e of cache.events) {
          if (e.index > last && filter(e)) sse.send('event', e, e.index);
        }
        last = Math.max(last, cache.events[cache.events.length - 1]?.index ?? last);
        const unsubscribe = cache.subscribe((changes) => {
          for (const c of changes) {
            if (c.kind === 'event' && c.event.index > last) {
              last = c.event.index;
              if (filter(c.event)) sse.send('event', c.event, c.event.index);
            }
          }
        });
        const keepalive = setInterval(() => sse.comment('keepalive'), 15_000);
        ctx.signal.addEventListener('abort', () => {
          clearInterval(keepalive);
          unsubscribe();
        });
        return STREAMED;
      },
    },
  ];
}
