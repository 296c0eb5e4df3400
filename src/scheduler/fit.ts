/**
 * The one fit check: what a node has in use, and whether an ask (cpu, memory, disk, concrete ports
 * and devices) still fits beside it. The resources and ports filters use it while a plan is built; the
 * plan applier uses it again (through `checkPlan`) against the latest state before committing.
 */
import { holdsResources } from '../core/alloc.ts';
import type { ComputeResources } from '../core/job-spec.ts';
import type { Allocation, Node } from '../core/types.ts';

/** Resources in use on one node, kept up to date while a plan is being built or checked. */
export interface NodeUsage {
  cpu: number;
  memory: number;
  /** MiB of the allocations' disks (`ephemeral.sizeMiB`). */
  disk: number;
  ports: Set<number>;
  /** Device ids given to allocations. */
  devices: Set<string>;
  /** Allocations of each job group already on the node (for spreading). */
  groupCount: Map<string, number>;
}

/** The dimensions a node can run out of; `PlacementFailure.nodesExhausted` counts by these. */
export type Dimension = 'cpu' | 'memory' | 'disk' | 'ports' | 'devices';

/** What an allocation asks of a node in concrete terms. A missing field asks nothing. */
export interface ResourceAsk {
  cpu?: number;
  memory?: number;
  disk?: number;
  /** Port numbers that must be free. */
  ports?: readonly number[];
  /** Device ids that must be free. */
  devices?: readonly string[];
}

export type FitResult =
  | { fits: true }
  | {
      fits: false;
      dimension: Dimension;
      /** For people: `memory exhausted`, `port 8080 in use`. */
      reason: string;
      /** The node could not take it even empty: its capacity is too small. */
      beyondCapacity: boolean;
    };

const FITS: FitResult = { fits: true };

/** Sizes the scheduler packs: cpu and memory, and disk (MiB). */
export type Capacity = ComputeResources & { disk: number };

/**
 * What the scheduler may hand out on a node: its resources less what is kept for the host. Disk is
 * what its agent found free in its data dir's file system when it registered.
 */
export function capacity(node: Node): Capacity {
  return {
    cpu: node.resources.cpu - node.reserved.cpu,
    memory: node.resources.memory - node.reserved.memory,
    disk: node.resources.disk,
  };
}

export function freeResources(node: Node, usage: NodeUsage): Capacity {
  const cap = capacity(node);
  return { cpu: cap.cpu - usage.cpu, memory: cap.memory - usage.memory, disk: cap.disk - usage.disk };
}

/**
 * Whether `ask` fits on `node` beside `usage`; the first dimension that does not, in the order
 * cpu, memory, disk, devices, ports. Does not change `usage`: the caller books what it places.
 */
export function fitOnNode(node: Node, usage: NodeUsage, ask: ResourceAsk): FitResult {
  const free = freeResources(node, usage);
  const cap = capacity(node);
  for (const dimension of ['cpu', 'memory', 'disk'] as const) {
    const want = ask[dimension] ?? 0;
    if (free[dimension] < want)
      return {
        fits: false,
        dimension,
        reason: `${dimension} exhausted`,
        beyondCapacity: cap[dimension] < want,
      };
  }
  for (const id of ask.devices ?? [])
    if (usage.devices.has(id))
      return { fits: false, dimension: 'devices', reason: `device ${id} in use`, beyondCapacity: false };
  for (const port of ask.ports ?? [])
    if (usage.ports.has(port))
      return { fits: false, dimension: 'ports', reason: `port ${port} in use`, beyondCapacity: false };
  return FITS;
}

/** The concrete ask of an allocation already given its node, ports and devices. */
export function askOf(a: Pick<Allocation, 'resources'>): ResourceAsk {
  return {
    cpu: a.resources.cpu,
    memory: a.resources.memory,
    disk: a.resources.disk ?? 0,
    ports: a.resources.ports.map((p) => p.value),
    devices: (a.resources.devices ?? []).map((d) => d.id),
  };
}

export function emptyUsage(): NodeUsage {
  return { cpu: 0, memory: 0, disk: 0, ports: new Set(), devices: new Set(), groupCount: new Map() };
}

/** Usage from the allocations that hold resources on a node (desired to run and not finished). */
export function usageFromAllocs(allocs: readonly Allocation[]): NodeUsage {
  const usage = emptyUsage();
  for (const a of allocs) if (holdsResources(a)) book(usage, a);
  return usage;
}

const groupKey = (a: Pick<Allocation, 'namespace' | 'jobId' | 'group'>) =>
  `${a.namespace}/${a.jobId}/${a.group}`;

export function book(usage: NodeUsage, a: Allocation): void {
  usage.cpu += a.resources.cpu;
  usage.memory += a.resources.memory;
  usage.disk += a.resources.disk ?? 0;
  for (const p of a.resources.ports) usage.ports.add(p.value);
  for (const d of a.resources.devices ?? []) usage.devices.add(d.id);
  const key = groupKey(a);
  usage.groupCount.set(key, (usage.groupCount.get(key) ?? 0) + 1);
}

export function unbook(usage: NodeUsage, a: Allocation): void {
  usage.cpu -= a.resources.cpu;
  usage.memory -= a.resources.memory;
  usage.disk -= a.resources.disk ?? 0;
  for (const p of a.resources.ports) usage.ports.delete(p.value);
  for (const d of a.resources.devices ?? []) usage.devices.delete(d.id);
  const key = groupKey(a);
  usage.groupCount.set(key, Math.max(0, (usage.groupCount.get(key) ?? 0) - 1));
}
