/**
 * Pure judgement of a node drain, used by `unum node drain` while it follows one: from the node and
 * its allocations, is the drain over (and how), and what one progress line says where it stands.
 */
import { isActive } from '../core/alloc.ts';
import { formatDuration } from '../core/duration.ts';
import type { Allocation, Node } from '../core/types.ts';

export interface DrainState {
  /** `draining`: under way; `drained`: nothing left, the node ineligible; `canceled`: it was made eligible again. */
  status: 'draining' | 'drained' | 'canceled';
  /** Allocations still on the node, and what they are doing. */
  left: number;
  stopping: number;
  migrating: number;
  waiting: number;
  /** `vm1: draining, 3 allocations left (1 stopping, 1 migrating, 1 waiting), deadline in 59m` */
  line: string;
}

/** Judges the drain of `node` from the allocations placed on it (others are ignored). */
export function assessDrain(node: Node, allocations: readonly Allocation[], now: number): DrainState {
  const active = allocations.filter((a) => a.nodeId === node.id && isActive(a));
  const stopping = active.filter((a) => a.desiredStatus === 'stop').length;
  const migrating = active.filter((a) => a.desiredStatus === 'run' && a.desiredTransition?.migrate).length;
  const waiting = active.length - stopping - migrating;
  const status = node.drain ? 'draining' : node.eligibility === 'ineligible' ? 'drained' : 'canceled';
  const state = { status, left: active.length, stopping, migrating, waiting } as const;
  return { ...state, line: drainLine(node, state, now) };
}

function drainLine(node: Node, s: Omit<DrainState, 'line'>, now: number): string {
  if (s.status === 'drained') return `${node.name}: drained`;
  if (s.status === 'canceled') return `${node.name}: drain canceled`;
  const parts = [
    s.stopping && `${s.stopping} stopping`,
    s.migrating && `${s.migrating} migrating`,
    s.waiting && `${s.waiting} waiting`,
  ];
  const detail = parts.filter((p) => typeof p === 'string');
  const left =
    s.left === 0
      ? 'no allocation left'
      : `${s.left} allocation${s.left === 1 ? '' : 's'} left${detail.length ? ` (${detail.join(', ')})` : ''}`;
  const deadline = node.drainStrategy?.deadline;
  const when =
    deadline === undefined
      ? ''
      : deadline > now
        ? `, deadline in ${formatDuration(Math.ceil((deadline - now) / 1000) * 1000)}`
        : ', deadline passed';
  return `${node.name}: draining, ${left}${when}`;
}
