/**
 * Blocked evaluations: an evaluation that could not place every instance waits in the broker until
 * capacity appears — a node becomes ready or eligible or heartbeats again, or an allocation gives
 * back what it held — and then runs again. One key ("capacity"): a burst of such changes is one unblock.
 */
import { freedResources } from '../../core/alloc.ts';
import { takesNewWork } from '../../core/node.ts';
import type { CacheChange } from '../cache.ts';
import type { EvalBroker } from '../broker.ts';
import type { Controller } from './controller.ts';

export const CAPACITY = 'capacity';

/** The change may let a blocked evaluation place what it could not. */
export function addsCapacity(c: CacheChange): boolean {
  switch (c.kind) {
    case 'heartbeat':
      return c.alive;
    case 'node':
      // Ready and eligible now, and not before: it registered, came back, or was made eligible.
      return c.node !== undefined && takesNewWork(c.node) && (c.prev === undefined || !takesNewWork(c.prev));
    case 'alloc':
      return c.alloc !== undefined && c.prev !== undefined && freedResources(c.prev, c.alloc);
    case 'resync':
      return true;
    default:
      return false;
  }
}

export function blockedEvalsController(d: { broker: EvalBroker }): Controller {
  return {
    name: 'blocked-evaluations',
    initialKeys: () => [],
    keysFor: (change) => (addsCapacity(change) ? [CAPACITY] : []),
    reconcile() {
      d.broker.unblock();
      return Promise.resolve();
    },
  };
}
