/**
 * Placement of one allocation: filter plugins drop nodes that cannot take it (each rejection is a
 * value with a reason, kept for `unum why`), score plugins rank the rest, the best node wins and
 * gets its ports assigned.
 */
import type { ConstraintSpec, GroupSpec, JobSpec, ComputeResources } from '../core/job-spec.ts';
import { deviceMatches, groupResources } from '../core/job-spec.ts';
import type { AllocatedDevice, AllocatedPort, Allocation, Node, PlacementFailure } from '../core/types.ts';

/** Resources in use on one node, kept up to date while a plan is being built. */
export interface NodeUsage {
  cpu: number;
  memory: number;
  ports: Set<number>;
  /** Device ids given to allocations. */
  devices: Set<string>;
  /** Allocations of each job group already on the node (for spreading). */
  groupCount: Map<string, number>;
}

export interface PlacementRequest {
  job: JobSpec;
  group: GroupSpec;
  resources: ComputeResources;
}

export type FilterResult = { status: 'ok' } | { status: 'unschedulable'; reason: string; dimension?: string };

export interface FilterPlugin {
  name: string;
  filter(node: Node, req: PlacementRequest, usage: NodeUsage): FilterResult;
}

export interface ScorePlugin {
  name: string;
  weight: number;
  /** 0 (worst) to 1 (best). */
  score(node: Node, req: PlacementRequest, usage: NodeUsage): number;
}

const OK: FilterResult = { status: 'ok' };

export function freeResources(node: Node, usage: NodeUsage): { cpu: number; memory: number } {
  return {
    cpu: node.resources.cpu - node.reserved.cpu - usage.cpu,
    memory: node.resources.memory - node.reserved.memory - usage.memory,
  };
}

function attributeOf(node: Node, name: string): string | undefined {
  if (name === 'node.name' || name === 'hostname') return node.attributes['hostname'] ?? node.name;
  if (name === 'node.id') return node.id;
  return node.attributes[name.replace(/^(attr|node)\./, '')] ?? node.attributes[name];
}

export function constraintHolds(node: Node, c: ConstraintSpec): boolean {
  const actual = attributeOf(node, c.attribute);
  switch (c.operator) {
    case 'exists':
      return actual !== undefined;
    case '=':
      return actual === c.value;
    case '!=':
      return actual !== c.value;
    case 'regexp':
      try {
        return actual !== undefined && new RegExp(c.value ?? '').test(actual);
      } catch {
        return false;
      }
  }
}

function describeConstraint(c: ConstraintSpec): string {
  return c.operator === 'exists' ? `${c.attribute} exists` : `${c.attribute} ${c.operator} ${c.value ?? ''}`;
}

export const filters: FilterPlugin[] = [
  {
    name: 'driver',
    filter(node, req) {
      for (const t of req.group.tasks) {
        const d = node.drivers[t.driver];
        if (!d?.detected || !d.healthy)
          return { status: 'unschedulable', reason: `driver ${t.driver} not available` };
      }
      return OK;
    },
  },
  {
    name: 'constraints',
    filter(node, req) {
      for (const c of [...req.job.constraints, ...req.group.constraints]) {
        if (!constraintHolds(node, c))
          return { status: 'unschedulable', reason: `constraint ${describeConstraint(c)}` };
      }
      return OK;
    },
  },
  {
    name: 'resources',
    filter(node, req, usage) {
      const free = freeResources(node, usage);
      if (free.cpu < req.resources.cpu)
        return { status: 'unschedulable', reason: 'cpu exhausted', dimension: 'cpu' };
      if (free.memory < req.resources.memory)
        return { status: 'unschedulable', reason: 'memory exhausted', dimension: 'memory' };
      return OK;
    },
  },
  {
    name: 'devices',
    filter(node, req, usage) {
      if (!req.group.tasks.some((t) => t.resources.devices.length > 0)) return OK;
      return assignDevices(node, req.group, usage)
        ? OK
        : { status: 'unschedulable', reason: 'devices exhausted', dimension: 'devices' };
    },
  },
  {
    name: 'ports',
    filter(node, req, usage) {
      let dynamic = 0;
      for (const p of req.group.network.ports) {
        if (p.static !== undefined) {
          if (usage.ports.has(p.static))
            return { status: 'unschedulable', reason: `port ${p.static} in use`, dimension: 'ports' };
        } else dynamic++;
      }
      const range = node.portRange.max - node.portRange.min + 1;
      const usedInRange = [...usage.ports].filter(
        (p) => p >= node.portRange.min && p <= node.portRange.max,
      ).length;
      if (range - usedInRange < dynamic)
        return { status: 'unschedulable', reason: 'dynamic ports exhausted', dimension: 'ports' };
      return OK;
    },
  },
];

export const scorers: ScorePlugin[] = [
  {
    // Bin-packing: prefer the node that is fullest after placement, leaving whole nodes free for big work.
    name: 'binpack',
    weight: 1,
    score(node, req, usage) {
      const free = freeResources(node, usage);
      const cpuCap = node.resources.cpu - node.reserved.cpu;
      const memCap = node.resources.memory - node.reserved.memory;
      const cpuUsed = cpuCap > 0 ? 1 - (free.cpu - req.resources.cpu) / cpuCap : 1;
      const memUsed = memCap > 0 ? 1 - (free.memory - req.resources.memory) / memCap : 1;
      return (cpuUsed + memUsed) / 2;
    },
  },
  {
    // Spread instances of one group over nodes, so that one node's death takes fewer of them.
    name: 'job-anti-affinity',
    weight: 1,
    score(_node, req, usage) {
      const n = usage.groupCount.get(`${req.job.namespace}/${req.job.job}/${req.group.name}`) ?? 0;
      return n === 0 ? 1 : 1 / (n + 1);
    },
  },
];

export interface PlacementOutcome {
  node?: Node;
  ports?: AllocatedPort[];
  /** Only when the group asks for devices. */
  devices?: AllocatedDevice[];
  failure?: Omit<PlacementFailure, 'unplaced' | 'summary'>;
}

/** Chooses a node for one instance. `usage` is read, not changed: the caller books the placement. */
export function placeOne(
  nodes: readonly Node[],
  req: PlacementRequest,
  usageOf: (node: Node) => NodeUsage,
  random: () => number,
): PlacementOutcome {
  const nodesFiltered: Record<string, number> = {};
  const nodesExhausted: Record<string, number> = {};
  let best: { node: Node; score: number } | undefined;
  for (const node of nodes) {
    const usage = usageOf(node);
    let rejected: FilterResult | undefined;
    for (const f of filters) {
      const r = f.filter(node, req, usage);
      if (r.status !== 'ok') {
        rejected = r;
        break;
      }
    }
    if (rejected && rejected.status === 'unschedulable') {
      if (rejected.dimension)
        nodesExhausted[rejected.dimension] = (nodesExhausted[rejected.dimension] ?? 0) + 1;
      else nodesFiltered[rejected.reason] = (nodesFiltered[rejected.reason] ?? 0) + 1;
      continue;
    }
    let score = 0;
    let weights = 0;
    for (const s of scorers) {
      score += s.weight * s.score(node, req, usage);
      weights += s.weight;
    }
    score = weights > 0 ? score / weights : 0;
    // Ties go to the lower id so that a run is deterministic for a given snapshot.
    if (!best || score > best.score || (score === best.score && node.id < best.node.id))
      best = { node, score };
  }
  if (!best) return { failure: { nodesEvaluated: nodes.length, nodesFiltered, nodesExhausted } };
  const usage = usageOf(best.node);
  const ports = assignPorts(best.node, req.group, usage, random);
  const devices = req.group.tasks.some((t) => t.resources.devices.length > 0)
    ? assignDevices(best.node, req.group, usage)
    : undefined;
  return devices ? { node: best.node, ports, devices } : { node: best.node, ports };
}

/**
 * Free devices of the node for every task's requests, first ids first; undefined when they do not
 * all fit. Devices are given whole: a GPU belongs to one task at a time.
 */
export function assignDevices(node: Node, group: GroupSpec, usage: NodeUsage): AllocatedDevice[] | undefined {
  const taken = new Set(usage.devices);
  const out: AllocatedDevice[] = [];
  for (const t of group.tasks) {
    for (const r of t.resources.devices) {
      const free = (node.devices ?? []).filter((d) => !taken.has(d.id) && deviceMatches(r.name, d));
      if (free.length < r.count) return undefined;
      for (const d of free.slice(0, r.count)) {
        taken.add(d.id);
        out.push({
          task: t.name,
          type: d.type,
          vendor: d.vendor,
          id: d.id,
          ...(d.index !== undefined ? { index: d.index } : {}),
        });
      }
    }
  }
  return out;
}

/** Static ports as asked; dynamic ones drawn at random from the node's range among the free ones. */
export function assignPorts(
  node: Node,
  group: GroupSpec,
  usage: NodeUsage,
  random: () => number,
): AllocatedPort[] {
  const taken = new Set(usage.ports);
  const out: AllocatedPort[] = [];
  for (const p of group.network.ports) if (p.static !== undefined) taken.add(p.static);
  const span = node.portRange.max - node.portRange.min + 1;
  for (const p of group.network.ports) {
    if (p.static !== undefined) {
      out.push({ name: p.name, value: p.static });
      continue;
    }
    let value = node.portRange.min + Math.floor(random() * span);
    // Linear probe from a random start: the filter has checked that enough ports are free.
    for (let i = 0; i < span && taken.has(value); i++)
      value = value >= node.portRange.max ? node.portRange.min : value + 1;
    taken.add(value);
    out.push({ name: p.name, value });
  }
  return out;
}

/** Usage from the allocations that hold resources on a node (desired to run and not finished). */
export function usageFromAllocs(allocs: readonly Allocation[]): NodeUsage {
  const usage: NodeUsage = { cpu: 0, memory: 0, ports: new Set(), devices: new Set(), groupCount: new Map() };
  for (const a of allocs) if (holdsResources(a)) book(usage, a);
  return usage;
}

export function holdsResources(a: Allocation): boolean {
  return a.desiredStatus === 'run' && (a.clientStatus === 'pending' || a.clientStatus === 'running');
}

export function book(usage: NodeUsage, a: Allocation): void {
  usage.cpu += a.resources.cpu;
  usage.memory += a.resources.memory;
  for (const p of a.resources.ports) usage.ports.add(p.value);
  for (const d of a.resources.devices ?? []) usage.devices.add(d.id);
  const key = `${a.namespace}/${a.jobId}/${a.group}`;
  usage.groupCount.set(key, (usage.groupCount.get(key) ?? 0) + 1);
}

export function unbook(usage: NodeUsage, a: Allocation): void {
  usage.cpu -= a.resources.cpu;
  usage.memory -= a.resources.memory;
  for (const p of a.resources.ports) usage.ports.delete(p.value);
  for (const d of a.resources.devices ?? []) usage.devices.delete(d.id);
  const key = `${a.namespace}/${a.jobId}/${a.group}`;
  usage.groupCount.set(key, Math.max(0, (usage.groupCount.get(key) ?? 0) - 1));
}

/** One sentence for people, e.g. "no node has enough memory (needs 100000 MiB; 1 node evaluated)". */
export function summarizeFailure(
  f: Omit<PlacementFailure, 'unplaced' | 'summary'>,
  resources: ComputeResources,
  nodes: readonly Node[],
  usageOf: (node: Node) => NodeUsage,
): string {
  if (f.nodesEvaluated === 0) return 'no node is ready to run work (is an agent running?)';
  const parts: string[] = [];
  for (const [dimension, n] of Object.entries(f.nodesExhausted)) {
    if (dimension === 'memory' || dimension === 'cpu') {
      const unit = dimension === 'memory' ? 'MiB' : 'millicores';
      const largest = Math.max(0, ...nodes.map((node) => freeResources(node, usageOf(node))[dimension]));
      parts.push(
        `${n} node${n === 1 ? '' : 's'} lack ${dimension} (needs ${resources[dimension]} ${unit}, the most free on any node is ${largest} ${unit})`,
      );
    } else parts.push(`${n} node${n === 1 ? '' : 's'} lack free ${dimension}`);
  }
  for (const [reason, n] of Object.entries(f.nodesFiltered))
    parts.push(`${n} node${n === 1 ? '' : 's'} excluded: ${reason}`);
  return `no node can take it: ${parts.join('; ')} (${f.nodesEvaluated} node${f.nodesEvaluated === 1 ? '' : 's'} evaluated)`;
}

export { groupResources };
