/**
 * Node-down: a node silent for the heartbeat grace is marked down, its liveness key deleted, its
 * pending and running allocations lost, and their jobs evaluated again (so the scheduler replaces
 * them on other nodes) — one transaction. Key: node id. Level: a live node is looked at again when
 * its grace would run out (`requeueAfterMs`), so beats themselves touch neither the queue nor the
 * Store; a node already without its liveness key that is still `ready` or still holds active work
 * is taken down at once.
 */
import { isActive } from '../../core/alloc.ts';
import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import type { StateCache } from '../cache.ts';
import type { Heartbeats } from '../heartbeats.ts';
import { markNodeDown } from '../state/nodes.ts';
import { commit } from '../state/write.ts';
import type { Controller } from './controller.ts';

export function nodeDownController(d: {
  cache: StateCache;
  clock: Clock;
  log: Logger;
  heartbeats: Pick<Heartbeats, 'overdueIn' | 'silenceOf'>;
}): Controller {
  const { cache, heartbeats } = d;
  const needsLook = (nodeId: string) => {
    const node = cache.node(nodeId);
    if (!node) return false;
    // A live node is watched for its grace; a silent one only while it still looks up or busy.
    return cache.isAlive(nodeId) || node.status === 'ready' || cache.allocsOnNode(nodeId).some(isActive);
  };
  const initialKeys = () => cache.listNodes().flatMap((n) => (needsLook(n.id) ? [n.id] : []));
  return {
    name: 'node-down',
    initialKeys,
    keysFor(change) {
      if (change.kind === 'heartbeat') return [change.nodeId];
      if (change.kind === 'resync') return initialKeys();
      return [];
    },
    async reconcile(nodeId, term) {
      if (cache.isAlive(nodeId)) {
        const due = heartbeats.overdueIn(nodeId);
        if (due > 0) return { requeueAfterMs: due };
      }
      const { lost } = await commit(term, cache, () => {
        // Decided again on each attempt: a registration that raced this write is a beat.
        if (!cache.isAlive(nodeId)) return markNodeDown(cache, nodeId, d.clock.now(), term.actor);
        if (heartbeats.overdueIn(nodeId) > 0) return { done: { lost: 0 } };
        const silentMs = heartbeats.silenceOf(nodeId);
        return markNodeDown(cache, nodeId, d.clock.now(), term.actor, { silentMs });
      });
      if (lost > 0) d.log.warn({ nodeId, lostAllocs: lost }, 'node down');
      // Registered again meanwhile: watch its grace.
      if (cache.isAlive(nodeId)) return { requeueAfterMs: Math.max(1, heartbeats.overdueIn(nodeId)) };
      return {};
    },
  };
}
