/**
 * What the scheduler sees and what it needs: a read-only snapshot of the cluster and the few
 * impure things (clock, ids, randomness) handed in, so that a run is a pure function of its inputs.
 */
import type { Allocation, Evaluation, Job, Node } from '../core/types.ts';

/** A consistent, read-only view of the cluster (Nomad's `State`). The scheduler must not mutate it. */
export interface Snapshot {
  job(namespace: string, id: string): Job | undefined;
  allocsOfJob(namespace: string, id: string): readonly Allocation[];
  allocsOnNode(nodeId: string): readonly Allocation[];
  /** Nodes a new allocation may go to: ready, heartbeating, not draining. */
  readyNodes(): readonly Node[];
  node(id: string): Node | undefined;
}

export interface SchedulerContext {
  now: number;
  newId: () => string;
  /** Uniform in [0, 1): used only to spread dynamic ports. */
  random: () => number;
}

export type { Allocation, Evaluation, Job, Node };
