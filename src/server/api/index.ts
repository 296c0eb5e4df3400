/**
 * The v1 API: thin routes, one module per resource. Reads come from the watch-fed cache; writes
 * are pure state transitions (src/server/state/) committed with compare-and-swap, each waiting
 * until the cache has seen it so that a client reads its own writes from any route afterwards.
 */
import type { ServerStatus, ServersStatus } from '../../api/types.ts';
import { snapshotLines } from '../../store/snapshot.ts';
import { STREAMED, type Route } from '../../transport/index.ts';
import { ROOT } from '../keys.ts';
import { aclRoutes } from './acl.ts';
import { allocRoutes } from './allocs.ts';
import type { ApiDeps } from './context.ts';
import { evalRoutes } from './evals.ts';
import { eventRoutes } from './events.ts';
import { identityRoutes } from './identity.ts';
import { jobRoutes } from './jobs.ts';
import { joinRoutes } from './join.ts';
import { nodeRoutes } from './nodes.ts';

export type { ApiDeps };

export function apiRoutes(d: ApiDeps): Route[] {
  return [
    {
      method: 'GET',
      path: '/v1/status',
      capability: 'operator:read',
      summary: 'Server version, leadership, store revision and backend.',
      async handler(): Promise<ServerStatus> {
        const s = await d.store.status();
        return {
          version: d.version,
          leader: d.leadership.isLeader,
          revision: s.revision,
          backend: s.backend,
          nodes: d.cache.listNodes().length,
          addr: d.addr(),
        };
      },
    },
    {
      method: 'GET',
      path: '/v1/operator/servers',
      capability: 'operator:read',
      summary:
        "The servers that answer now (each keeps its record alive on a lease), the leader, and the Store's health.",
      async handler(): Promise<ServersStatus> {
        const [{ servers, leader }, store] = await Promise.all([
          d.link.servers(),
          d.store.status().then(
            (s) => ({ backend: s.backend, revision: s.revision, compactRevision: s.compactRevision }),
            (err: Error) => ({ error: err.message }),
          ),
        ]);
        return {
          servers: servers
            .map((s) => ({ ...s, leader: s.id === leader }))
            .sort((a, b) => Number(b.leader) - Number(a.leader) || a.addr.localeCompare(b.addr)),
          ...(leader !== undefined ? { leader } : {}),
          store,
        };
      },
    },
    {
      method: 'GET',
      path: '/v1/operator/snapshot',
      capability: 'operator:write',
      summary:
        "Every key of the cluster's state at one revision, as JSON lines (unum operator snapshot save). Holds the cluster CA's key and every credential's hash: management tokens only.",
      stream: 'text',
      async handler(ctx) {
        ctx.res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
        for await (const line of snapshotLines(d.store, ROOT, d.clock.now())) {
          if (ctx.signal.aborted) break;
          // A client that goes away while the socket is full would leave this waiting for good.
          if (!ctx.res.write(`${line}\n`))
            await new Promise<void>((r) => {
              const done = () => {
                ctx.res.off('drain', done);
                ctx.signal.removeEventListener('abort', done);
                r();
              };
              ctx.res.once('drain', done);
              ctx.signal.addEventListener('abort', done, { once: true });
            });
        }
        ctx.res.end();
        return STREAMED;
      },
    },
    ...jobRoutes(d),
    ...allocRoutes(d),
    ...nodeRoutes(d),
    ...evalRoutes(d),
    ...eventRoutes(d),
    ...aclRoutes(d),
    ...identityRoutes(d),
    ...joinRoutes(d),
  ];
}
