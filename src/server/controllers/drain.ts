/**
 * Drain: moves the allocations of a draining node to other nodes (state/drain.ts `advanceDrain`):
 * a group's `migrate.maxParallel` at a time, each batch once the previous one's replacements run;
 * stops what is left at the deadline; ends the drain once nothing runs there.
 * Key: node id. Level: every node whose `drain` is set. A node is looked at again when it changes,
 * when an allocation of a job it holds changes (a replacement starts, a check passes), when such a
 * job changes, and at its deadline.
 */
import type { Clock } from '../../core/clock.ts';
import type { Logger } from '../../core/log.ts';
import type { Allocation } from '../../core/types.ts';
import type { StateCache } from '../cache.ts';
import { advanceDrain } from '../state/drain.ts';
import { commit } from '../state/write.ts';
import type { Controller } from './controller.ts';

export function drainController(d: { cache: StateCache; clock: Clock; log: Logger }): Controller {
  const { cache } = d;
  /** Draining nodes as the changes seen so far left them: few, so every alloc change can ask them. */
  const draining = new Set<string>();
  const refresh = () => {
    draining.clear();
    for (const n of cache.listNodes()) if (n.drain) draining.add(n.id);
    return [...draining];
  };
  const holdingJob = (namespace: string, jobId: string, also?: Allocation) =>
    [...draining].filter(
      (id) =>
        also?.nodeId === id ||
        cache.allocsOnNode(id).some((x) => x.namespace === namespace && x.jobId === jobId),
    );
  return {
    name: 'drain',
    initialKeys: refresh,
    keysFor(change) {
      switch (change.kind) {
        case 'node': {
          const id = (change.node ?? change.prev)?.id;
          if (id === undefined) return [];
          if (change.node?.drain) {
            draining.add(id);
            return [id];
          }
          draining.delete(id);
          return [];
        }
        case 'alloc': {
          const a = change.alloc ?? change.prev;
          return a && draining.size > 0 ? holdingJob(a.namespace, a.jobId, a) : [];
        }
        case 'job': {
          const j = change.job ?? change.prev;
          return j && draining.size > 0 ? holdingJob(j.namespace, j.id) : [];
        }
        case 'resync':
          return refresh();
        default:
          return [];
      }
    },
    async reconcile(nodeId, term) {
      const step = await commit(term, cache, () => advanceDrain(cache, nodeId, d.clock.now(), term.actor));
      switch (step.state) {
        case 'migrating':
          if (step.migrated > 0)
            d.log.info({ nodeId, migrating: step.migrated }, 'drain: migrating allocations');
          // Nothing else may wake this node before its deadline (no room elsewhere): the clock does.
          return Number.isFinite(step.deadline)
            ? { requeueAfterMs: Math.max(0, step.deadline - d.clock.now()) }
            : undefined;
        case 'deadline':
          if (step.stopped > 0)
            d.log.warn({ nodeId, stopped: step.stopped }, 'drain deadline: stopping what is left');
          return undefined;
        case 'complete':
          d.log.info({ nodeId }, 'drain complete');
          return undefined;
        case 'idle':
          return undefined;
      }
    },
  };
}
