/**
 * Placement of one allocation (feasibility, then ranking): filter plugins drop nodes that cannot
 * take it (each rejection is a status value with a reason, kept for `unum why`), score plugins rank
 * the rest, the best node wins and gets its ports and devices assigned.
 */
import type { ConstraintSpec, GroupSpec } from '../core/job-spec.ts';
import { HOST_NETWORK_ATTRIBUTE, deviceMatches } from '../core/job-spec.ts';
import { regexpMatches } from '../core/regexp.ts';
import type { AllocatedDevice, AllocatedPort, Node, PlacementFailure } from '../core/types.ts';
import { capacity, emptyUsage, fitOnNode, freeResources, type NodeUsage } from './fit.ts';
import {
  OK,
  runFilter,
  stateKey,
  type CycleState,
  type FilterPlugin,
  type FilterResult,
  type PlacementRequest,
  type ScorePlugin,
} from './framework.ts';

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
      // RE2: linear in the attribute's length whatever the pattern (see core/regexp.ts).
      return actual !== undefined && regexpMatches(c.value ?? '', actual);
  }
}

function describeConstraint(c: ConstraintSpec): string {
  return c.operator === 'exists' ? `${c.attribute} exists` : `${c.attribute} ${c.operator} ${c.value ?? ''}`;
}

/** Devices the `devices` filter found for each node in the current placement; placeOne reads them. */
const assignedDevices = stateKey<Map<string, AllocatedDevice[]>>('devices.assigned');

export const filters: FilterPlugin[] = [
  {
    name: 'driver',
    filter(node, req) {
      for (const t of req.group.tasks) {
        const d = node.drivers[t.driver];
        if (!d?.detected) return { status: 'unresolvable', reason: `driver ${t.driver} not available` };
        // A detected driver that fails its health check may recover by itself.
        if (!d.healthy) return { status: 'unschedulable', reason: `driver ${t.driver} not available` };
      }
      return OK;
    },
  },
  {
    name: 'network',
    filter(node, req) {
      // The node's own network: only where its operator allows it (the agent's --allow-host-network).
      if (req.group.network.mode === 'host' && node.attributes[HOST_NETWORK_ATTRIBUTE] !== 'allowed')
        return { status: 'unresolvable', reason: 'host network not allowed' };
      return OK;
    },
  },
  {
    name: 'constraints',
    filter(node, req) {
      for (const c of [...req.job.constraints, ...req.group.constraints]) {
        if (!constraintHolds(node, c))
          return { status: 'unresolvable', reason: `constraint ${describeConstraint(c)}` };
      }
      return OK;
    },
  },
  {
    name: 'resources',
    filter(node, req, usage) {
      const { cpu, memory, disk } = req.resources;
      const fit = fitOnNode(node, usage, { cpu, memory, ...(disk !== undefined ? { disk } : {}) });
      if (fit.fits) return OK;
      return {
        status: fit.beyondCapacity ? 'unresolvable' : 'unschedulable',
        reason: fit.reason,
        dimension: fit.dimension,
      };
    },
  },
  {
    name: 'devices',
    filter(node, req, usage, state) {
      if (!req.group.tasks.some((t) => t.resources.devices.length > 0)) return OK;
      const devices = assignDevices(node, req.group, usage);
      if (devices) {
        state.read(assignedDevices)?.set(node.id, devices);
        return OK;
      }
      const ever = assignDevices(node, req.group, emptyUsage()) !== undefined;
      return {
        status: ever ? 'unschedulable' : 'unresolvable',
        reason: 'devices exhausted',
        dimension: 'devices',
      };
    },
  },
  {
    name: 'ports',
    filter(node, req, usage) {
      const statics: number[] = [];
      let dynamic = 0;
      for (const p of req.group.network.ports) {
        if (p.static !== undefined) statics.push(p.static);
        else dynamic++;
      }
      const fit = fitOnNode(node, usage, { ports: statics });
      if (!fit.fits) return { status: 'unschedulable', reason: fit.reason, dimension: 'ports' };
      const range = node.portRange.max - node.portRange.min + 1;
      const usedInRange = [...usage.ports].filter(
        (p) => p >= node.portRange.min && p <= node.portRange.max,
      ).length;
      if (range - usedInRange < dynamic)
        return {
          status: range < dynamic ? 'unresolvable' : 'unschedulable',
          reason: 'dynamic ports exhausted',
          dimension: 'ports',
        };
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
      const cap = capacity(node);
      const cpuUsed = cap.cpu > 0 ? 1 - (free.cpu - req.resources.cpu) / cap.cpu : 1;
      const memUsed = cap.memory > 0 ? 1 - (free.memory - req.resources.memory) / cap.memory : 1;
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
  /** Nodes rejected as `unresolvable`: they could never take it. */
  unresolvable: number;
}

/** The plugins one placement runs; the defaults are `filters` and `scorers`. */
export interface Profile {
  filters: readonly FilterPlugin[];
  scorers: readonly ScorePlugin[];
}

export const defaultProfile: Profile = { filters, scorers };

/**
 * Chooses a node for one instance: filter, then score what is left. Usage is read from `state`, not
 * changed: the caller books the placement.
 */
export function placeOne(
  nodes: readonly Node[],
  req: PlacementRequest,
  state: CycleState,
  random: () => number,
  profile: Profile = defaultProfile,
): PlacementOutcome {
  const nodesFiltered: Record<string, number> = {};
  const nodesExhausted: Record<string, number> = {};
  let unresolvable = 0;
  let best: { node: Node; score: number } | undefined;
  state.write(assignedDevices, new Map());
  for (const node of nodes) {
    const usage = state.usageOf(node);
    let rejected: Exclude<FilterResult, { status: 'ok' }> | undefined;
    for (const f of profile.filters) {
      const r = runFilter(f, node, req, usage, state);
      if (r.status !== 'ok') {
        rejected = r;
        break;
      }
    }
    if (rejected) {
      if (rejected.status === 'unresolvable') unresolvable++;
      if (rejected.status !== 'error' && rejected.dimension)
        nodesExhausted[rejected.dimension] = (nodesExhausted[rejected.dimension] ?? 0) + 1;
      else nodesFiltered[rejected.reason] = (nodesFiltered[rejected.reason] ?? 0) + 1;
      continue;
    }
    let score = 0;
    let weights = 0;
    for (const s of profile.scorers) {
      score += s.weight * s.score(node, req, usage, state);
      weights += s.weight;
    }
    score = weights > 0 ? score / weights : 0;
    // Ties go to the lower id so that a run is deterministic for a given snapshot.
    if (!best || score > best.score || (score === best.score && node.id < best.node.id))
      best = { node, score };
  }
  if (!best)
    return { failure: { nodesEvaluated: nodes.length, nodesFiltered, nodesExhausted }, unresolvable };
  const usage = state.usageOf(best.node);
  const ports = assignPorts(best.node, req.group, usage, random);
  const devices = req.group.tasks.some((t) => t.resources.devices.length > 0)
    ? (state.read(assignedDevices)?.get(best.node.id) ?? assignDevices(best.node, req.group, usage))
    : undefined;
  state.delete(assignedDevices);
  return devices
    ? { node: best.node, ports, devices, unresolvable }
    : { node: best.node, ports, unresolvable };
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

/** One sentence for people, e.g. "no node has enough memory (needs 100000 MiB; 1 node evaluated)". */
export function summarizeFailure(
  f: Omit<PlacementFailure, 'unplaced' | 'summary'>,
  resources: PlacementRequest['resources'],
  nodes: readonly Node[],
  usageOf: (node: Node) => NodeUsage,
): string {
  if (f.nodesEvaluated === 0)
    return 'no node is ready and eligible for new work (is an agent running? are the nodes draining or ineligible? see "unum nodes")';
  const parts: string[] = [];
  for (const [dimension, n] of Object.entries(f.nodesExhausted)) {
    if (dimension === 'memory' || dimension === 'cpu' || dimension === 'disk') {
      const unit = dimension === 'cpu' ? 'millicores' : 'MiB';
      const largest = Math.max(0, ...nodes.map((node) => freeResources(node, usageOf(node))[dimension]));
      parts.push(
        `${n} node${n === 1 ? '' : 's'} lack ${dimension} (needs ${resources[dimension] ?? 0} ${unit}, the most free on any node is ${largest} ${unit})`,
      );
    } else parts.push(`${n} node${n === 1 ? '' : 's'} lack free ${dimension}`);
  }
  for (const [reason, n] of Object.entries(f.nodesFiltered))
    parts.push(`${n} node${n === 1 ? '' : 's'} excluded: ${reason}`);
  return `no node can take it: ${parts.join('; ')} (${f.nodesEvaluated} node${f.nodesEvaluated === 1 ? '' : 's'} evaluated)`;
}
