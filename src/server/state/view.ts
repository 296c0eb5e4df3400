/**
 * What a state transition may read: a consistent, read-only view of the cluster (the server's
 * cache implements it; tests pass a plain object). Transitions never write through it.
 */
import type { Allocation, Evaluation, Job, Node } from '../../core/types.ts';
import type { Compare } from '../../store/types.ts';

export interface StateView {
  job(namespace: string, id: string): Job | undefined;
  alloc(id: string): Allocation | undefined;
  node(id: string): Node | undefined;
  allocsOnNode(nodeId: string): readonly Allocation[];
  allocsOfJob(namespace: string, id: string): readonly Allocation[];
  listEvals(): Evaluation[];
  /** The node's heartbeat key exists (its agent renews its lease). */
  isAlive(nodeId: string): boolean;
  /** The Store mod revision of `key` as this view saw it; 0 when absent. */
  revisionOf(key: string): number;
}

/** A compare that holds only while `key` is as the view saw it (compare-and-swap). */
export function unchanged(view: Pick<StateView, 'revisionOf'>, key: string): Compare {
  return { key, target: 'mod', op: '=', value: view.revisionOf(key) };
}
