/**
 * Node-down: a node whose heartbeat key expired is marked down, its pending and running allocations
 * lost, and their jobs evaluated again (so the scheduler replaces them on other nodes).
 * Key: node id. Level: any node not heartbeating that is still `ready` or still holds active work.
 */
import { isActive } from '../../core/alloc.ts';
import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import type { StateCache } from '../cache.ts';
import { markNodeDown } from '../state/nodes.ts';
import { commit } from '../state/write.ts';
import type { Controller } from './controller.ts';

export function nodeDownController(d: { cache: StateCache; clock: Clock; log: Logger }): Controller {
  const { cache } = d;
  const needsLook = (nodeId: string) => {
    const node = cache.node(nodeId);
    if (!node || cache.isAlive(nodeId)) return false;
    return node.status === 'ready' || cache.allocsOnNode(nodeId).some(isActive);
  };
  const initialKeys = () => cache.listNodes().flatMap((n) => (needsLook(n.id) ? [n.id] : []));
  return {
    name: 'node-down',
    initialKeys,
    keysFor(change) {
      if (change.kind === 'heartbeat' && !change.alive) return [change.nodeId];
      if (change.kind === 'resync') return initialKeys();
      return [];
    },
    async reconcile(nodeId, term) {
      const { lost } = await commit(term, cache, () =>
        markNodeDown(cache, nodeId, d.clock.now(), term.actor),
      );
      if (lost > 0) d.log.warn({ nodeId, lostAllocs: lost }, 'node down');
    },
  };
}
