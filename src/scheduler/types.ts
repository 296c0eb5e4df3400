/**
 * What the scheduler sees and what it needs: a read-only snapshot of the cluster and the few
 * impure things (clock, ids, randomness) handed in, so that a run is a pure function of its inputs.
 */
import type { Allocation, Evaluation, Job, Node, Plan } from '../core/types.ts';

/** A consistent, read-only view of the cluster (Nomad's `State`). The scheduler must not mutate it. */
export interface Snapshot {
  job(namespace: string, id: string): Job | undefined;
  allocsOfJob(namespace: string, id: string): readonly Allocation[];
  allocsOnNode(nodeId: string): readonly Allocation[];
  /** Nodes a new allocation may go to: ready, heartbeating, eligible, not draining (`nodeTakesWork`). */
  readyNodes(): readonly Node[];
  node(id: string): Node | undefined;
}

/** What `checkPlan` reads: the latest state a plan is checked against. Must not be mutated. */
export interface PlanSnapshot {
  node(id: string): Node | undefined;
  alloc(id: string): Allocation | undefined;
  allocsOnNode(nodeId: string): readonly Allocation[];
  /** The node's agent still heartbeats (its lease is alive). */
  isAlive(nodeId: string): boolean;
}

export interface SchedulerContext {
  now: number;
  newId: () => string;
  /** Uniform in [0, 1): used only to spread dynamic ports. */
  random: () => number;
}

/** A scheduler for one kind of job: pure, returns a plan and throws only on a bug. */
export type Scheduler = (snapshot: Snapshot, evaluation: Evaluation, ctx: SchedulerContext) => Plan;

export type { Allocation, Evaluation, Job, Node, Plan };
