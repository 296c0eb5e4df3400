/**
 * The plugin framework placement runs on (after the Kubernetes scheduler framework): filter plugins
 * answer with a status value, score plugins with a number, and both may keep per-evaluation data
 * in a `CycleState`.
 */
import type { ComputeResources, GroupSpec, JobSpec } from '../core/job-spec.ts';
import type { Allocation, Node } from '../core/types.ts';
import { usageFromAllocs, type Dimension, type NodeUsage } from './fit.ts';

export interface PlacementRequest {
  job: JobSpec;
  group: GroupSpec;
  /** The group's total; `disk` (MiB) absent or 0 asks none. */
  resources: ComputeResources & { disk?: number };
}

/**
 * A filter's answer for one node. An expected rejection is a value, never a throw:
 * - `unschedulable`: the node cannot take it now, but could once work on it ends (or is preempted);
 * - `unresolvable`: the node could never take it, whatever else runs there (too small, a
 *   constraint it does not match): stopping work on it would not help;
 * - `error`: the plugin itself failed; the node is skipped and the reason kept.
 * `dimension` names the resource the node lacks, counted apart from other reasons.
 */
export type FilterResult =
  | { status: 'ok' }
  | { status: 'unschedulable'; reason: string; dimension?: Dimension }
  | { status: 'unresolvable'; reason: string; dimension?: Dimension }
  | { status: 'error'; reason: string };

export type FilterStatus = FilterResult['status'];

export const OK: FilterResult = { status: 'ok' };

export interface FilterPlugin {
  name: string;
  /** May read and write `state`; must not change `usage` (the caller books placements). */
  filter(node: Node, req: PlacementRequest, usage: NodeUsage, state: CycleState): FilterResult;
}

export interface ScorePlugin {
  name: string;
  weight: number;
  /** 0 (worst) to 1 (best). */
  score(node: Node, req: PlacementRequest, usage: NodeUsage, state: CycleState): number;
}

/** A typed key into a CycleState; the type parameter only ties `read` to `write`. */
export interface StateKey<T> {
  readonly name: string;
  /** Never set: carries T for the type checker. */
  readonly type?: T;
}

export function stateKey<T>(name: string): StateKey<T> {
  return { name };
}

/**
 * Data of one scheduling pass (one evaluation), shared by the plugins and the scheduler and thrown
 * away afterwards. It holds the usage of each node as the plan being built leaves it (computed
 * once from the snapshot, then booked and unbooked as placements and stops are decided), and
 * whatever a plugin wants to hand to a later step.
 */
export class CycleState {
  private readonly usage = new Map<string, NodeUsage>();
  private readonly data = new Map<string, unknown>();
  private readonly allocsOnNode: (nodeId: string) => readonly Allocation[];

  constructor(snapshot: { allocsOnNode(nodeId: string): readonly Allocation[] }) {
    this.allocsOnNode = (id) => snapshot.allocsOnNode(id);
  }

  /** The node's usage as the plan so far leaves it; the same object on every call. */
  usageOf(node: Pick<Node, 'id'>): NodeUsage {
    let u = this.usage.get(node.id);
    if (!u) {
      u = usageFromAllocs(this.allocsOnNode(node.id));
      this.usage.set(node.id, u);
    }
    return u;
  }

  read<T>(key: StateKey<T>): T | undefined {
    return this.data.get(key.name) as T | undefined;
  }

  write<T>(key: StateKey<T>, value: T): void {
    this.data.set(key.name, value);
  }

  delete(key: StateKey<unknown>): void {
    this.data.delete(key.name);
  }
}

/** Runs one filter, turning a throw into an `error` status so one faulty plugin cannot stop a pass. */
export function runFilter(
  plugin: FilterPlugin,
  node: Node,
  req: PlacementRequest,
  usage: NodeUsage,
  state: CycleState,
): FilterResult {
  try {
    return plugin.filter(node, req, usage, state);
  } catch (err) {
    return {
      status: 'error',
      reason: `${plugin.name} failed: ${err instanceof Error ? err.message : String(err)}`,
    };
  }
}
