/**
 * What an allocation's statuses mean, written once. Every layer (scheduler, plan applier,
 * controllers, API views, agent) asks these instead of comparing status strings itself.
 */
import type { AllocClientStatus, Allocation } from './types.ts';

const TERMINAL: ReadonlySet<AllocClientStatus> = new Set(['complete', 'failed', 'lost']);

/** The client status is final: the allocation's tasks have ended (or its node was lost). */
export function isTerminalStatus(status: AllocClientStatus): boolean {
  return TERMINAL.has(status);
}

/** The allocation has ended on its node (complete, failed or lost). */
export function isTerminal(a: Pick<Allocation, 'clientStatus'>): boolean {
  return TERMINAL.has(a.clientStatus);
}

/** Its node still runs, or is about to run, its tasks: pending or running. */
export function isActive(a: Pick<Allocation, 'clientStatus'>): boolean {
  return !TERMINAL.has(a.clientStatus);
}

/** It counts against its node's resources: desired to run and not finished. */
export function holdsResources(a: Pick<Allocation, 'clientStatus' | 'desiredStatus'>): boolean {
  return a.desiredStatus === 'run' && isActive(a);
}

/** It gave back what it held between two versions: it finished, or was told to stop. */
export function freedResources(
  prev: Pick<Allocation, 'clientStatus' | 'desiredStatus'>,
  next: Pick<Allocation, 'clientStatus' | 'desiredStatus'>,
): boolean {
  return holdsResources(prev) && !holdsResources(next);
}

/** It stands for its job now: not replaced by a newer allocation. */
export function isCurrent(a: Pick<Allocation, 'nextAllocId'>): boolean {
  return a.nextAllocId === undefined;
}
