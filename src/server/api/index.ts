/**
 * The v1 API: thin routes, one module per resource. Reads come from the watch-fed cache; writes
 * are pure state transitions (src/server/state/) committed with compare-and-swap, each waiting
 * until the cache has seen it so that a client reads its own writes from any route afterwards.
 */
import type { ServerStatus, ServersStatus } from '../../api/types.ts';
import type { Route } from '../../transport/index.ts';
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
