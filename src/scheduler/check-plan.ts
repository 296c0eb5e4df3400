/**
 * The plan applier's re-check, written as a pure function so that the applier and the scheduler
 * harness run the same code. A plan was made on a snapshot that may be stale by the time it is
 * applied (optimistic concurrency, as in Nomad's plan applier): each placement is checked again
 * against the latest state, counting the room this plan's own stops and preemptions give back.
 */
import { holdsResources } from '../core/alloc.ts';
import { takesNewWork } from '../core/node.ts';
import type { Allocation, Node, Plan } from '../core/types.ts';
import { askOf, book, fitOnNode, unbook, usageFromAllocs, type Dimension, type NodeUsage } from './fit.ts';
import type { PlanSnapshot } from './types.ts';

export type PlacementVerdict = { allocId: string; ok: true } | { allocId: string; ok: false; reason: string };

/** Every placement's verdict, in plan order (`inPlace` first, then `place`), and the first refusal. */
export type PlanCheck =
  { ok: true; verdicts: PlacementVerdict[] } | { ok: false; reason: string; verdicts: PlacementVerdict[] };

/** Whether the node may take new work: ready, its agent alive, eligible and not draining. */
export function nodeTakesWork(snapshot: Pick<PlanSnapshot, 'isAlive'>, node: Node | undefined): node is Node {
  return node !== undefined && takesNewWork(node) && snapshot.isAlive(node.id);
}

/**
 * Checks `plan` against `snapshot` without changing either. A placement that fits is counted
 * against its node before the next one is checked, so two placements of one plan cannot share
 * the last room of a node. The reasons are the ones the applier reports.
 */
export function checkPlan(snapshot: PlanSnapshot, plan: Plan): PlanCheck {
  const usage = new Map<string, NodeUsage>();
  const usageOf = (nodeId: string): NodeUsage => {
    let u = usage.get(nodeId);
    if (!u) usage.set(nodeId, (u = usageFromAllocs(snapshot.allocsOnNode(nodeId))));
    return u;
  };

  const stopped = new Set<string>();
  for (const s of [...plan.stop, ...plan.preempt]) {
    const a = snapshot.alloc(s.allocId);
    if (!a || stopped.has(a.id)) continue;
    stopped.add(a.id);
    if (holdsResources(a)) unbook(usageOf(a.nodeId), a);
  }

  const verdicts: PlacementVerdict[] = [];
  let refusal: string | undefined;
  const refuse = (allocId: string, reason: string) => {
    verdicts.push({ allocId, ok: false, reason });
    refusal ??= reason;
  };

  // An in-place update keeps the allocation's resources (only count or metadata changed), so the
  // allocation only has to still be there.
  for (const a of plan.inPlace) {
    if (snapshot.alloc(a.id)) verdicts.push({ allocId: a.id, ok: true });
    else refuse(a.id, `${a.name} no longer exists`);
  }

  for (const p of plan.place) {
    const node = snapshot.node(p.nodeId);
    if (!nodeTakesWork(snapshot, node)) {
      refuse(p.id, `node ${p.nodeId} is no longer ready`);
      continue;
    }
    const u = usageOf(node.id);
    const fit = fitOnNode(node, u, askOf(p));
    if (!fit.fits) {
      refuse(p.id, refusalReason(fit.dimension, p, node));
      continue;
    }
    book(u, p);
    verdicts.push({ allocId: p.id, ok: true });
  }

  return refusal === undefined ? { ok: true, verdicts } : { ok: false, reason: refusal, verdicts };
}

function refusalReason(dimension: Dimension, p: Allocation, node: Node): string {
  switch (dimension) {
    case 'cpu':
    case 'memory':
    case 'disk':
      return `node ${node.name} no longer has room for ${p.name}`;
    case 'devices':
      return `a device of ${p.name} was taken on ${node.name}`;
    case 'ports':
      return `a port of ${p.name} was taken on ${node.name}`;
  }
}
