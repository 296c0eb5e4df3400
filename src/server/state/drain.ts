/**
 * Node eligibility and drains. What an operator asks — drain a node, make it eligible or
 * ineligible — and the step the leader's drain controller takes each time it looks at a draining
 * node. A drain marks allocations for migration (the scheduler places a replacement elsewhere and
 * only then stops the old one, see scheduler/reconcile.ts), a group's `migrate.maxParallel` at a
 * time, each batch waiting until its replacements run (and pass their checks); at the deadline
 * whatever is left is stopped; once nothing runs there the drain is over and the node stays
 * ineligible until `unum node eligible`.
 */
import { isActive } from '../../core/alloc.ts';
import { formatDuration } from '../../core/duration.ts';
import { NotFoundError } from '../../core/errors.ts';
import { shortId } from '../../core/ids.ts';
import { isEligible } from '../../core/node.ts';
import type { Allocation, Node } from '../../core/types.ts';
import type { Compare, TxnOp } from '../../store/types.ts';
import { eventOp, putOp } from '../events.ts';
import { keys } from '../keys.ts';
import { evaluationsOf, stoppingEvent } from './allocs.ts';
import { unchanged, type StateView } from './view.ts';
import type { Transition } from './write.ts';

function nodeIn(view: StateView, nodeId: string): Node {
  const node = view.node(nodeId);
  if (!node) throw new NotFoundError(`no node ${nodeId}`);
  return node;
}

function nodeEvent(node: Node, type: string, message: string, now: number, actor: string): TxnOp {
  return eventOp({ topic: 'node', type, nodeId: node.id, message, actor }, now);
}

/** The node without a drain under way. */
function undrained(node: Node, eligibility: Node['eligibility']): Node {
  const next: Node = { ...node, eligibility, drain: false };
  delete next.drainStrategy;
  return next;
}

/**
 * Starts draining `nodeId` (`unum node drain`), or moves the deadline of the drain under way: the
 * node is ineligible from now on, and what is still on it `deadlineMs` from now is stopped.
 */
export function startDrain(
  view: StateView,
  nodeId: string,
  deadlineMs: number,
  now: number,
  actor: string,
): Transition<Node> {
  const node = nodeIn(view, nodeId);
  const next: Node = {
    ...node,
    eligibility: 'ineligible',
    drain: true,
    drainStrategy: { startedAt: node.drainStrategy?.startedAt ?? now, deadline: now + deadlineMs },
  };
  const message = node.drain
    ? `node ${node.name}: drain deadline moved to ${formatDuration(deadlineMs)} from now`
    : `node ${node.name} draining: its allocations move to other nodes; what is left in ${formatDuration(deadlineMs)} is stopped`;
  return {
    compare: [unchanged(view, keys.node(node.id))],
    ops: [
      putOp(keys.node(node.id), next),
      nodeEvent(node, node.drain ? 'node-drain-updated' : 'node-drain-started', message, now, actor),
    ],
    result: next,
  };
}

/**
 * Makes `nodeId` eligible again (`unum node eligible`), which ends a drain under way (`unum node
 * drain --cancel`): migrations already placed go on; allocations still waiting for a place stay.
 */
export function markEligible(view: StateView, nodeId: string, now: number, actor: string): Transition<Node> {
  const node = nodeIn(view, nodeId);
  if (isEligible(node)) return { done: node };
  const next = undrained(node, 'eligible');
  const compare: Compare[] = [unchanged(view, keys.node(node.id))];
  const ops: TxnOp[] = [putOp(keys.node(node.id), next)];
  let kept = 0;
  for (const a of view.allocsOnNode(node.id)) {
    if (!a.desiredTransition?.migrate || a.desiredStatus !== 'run') continue;
    const { desiredTransition: _, ...rest } = a;
    compare.push(unchanged(view, keys.alloc(a.id)));
    ops.push(putOp(keys.alloc(a.id), { ...rest, modifiedAt: now }));
    kept++;
  }
  ops.push(
    node.drain
      ? nodeEvent(
          node,
          'node-drain-canceled',
          `node ${node.name}: drain canceled, the node is eligible again${kept ? `; ${kept} allocation${kept === 1 ? '' : 's'} not moved yet stay${kept === 1 ? 's' : ''} there` : ''}`,
          now,
          actor,
        )
      : nodeEvent(
          node,
          'node-eligible',
          `node ${node.name} is eligible: new work may be placed there`,
          now,
          actor,
        ),
  );
  return { compare, ops, result: next };
}

/** Makes `nodeId` ineligible (`unum node ineligible`): nothing new is placed there; what runs stays. */
export function markIneligible(
  view: StateView,
  nodeId: string,
  now: number,
  actor: string,
): Transition<Node> {
  const node = nodeIn(view, nodeId);
  if (node.eligibility === 'ineligible') return { done: node };
  const next: Node = { ...node, eligibility: 'ineligible' };
  return {
    compare: [unchanged(view, keys.node(node.id))],
    ops: [
      putOp(keys.node(node.id), next),
      nodeEvent(
        node,
        'node-ineligible',
        `node ${node.name} is ineligible: nothing new is placed there; what runs there stays`,
        now,
        actor,
      ),
    ],
    result: next,
  };
}

/** What one look at a draining node found, or did. */
export type DrainStep =
  /** The node is not draining (or is gone). */
  | { state: 'idle' }
  /** Allocations are moving; `migrated` were marked by this step. Look again at `deadline`. */
  | { state: 'migrating'; migrated: number; deadline: number }
  /** The deadline passed: `stopped` allocations were told to stop by this step. */
  | { state: 'deadline'; stopped: number }
  /** Nothing is left on the node: the drain is over (by this step). */
  | { state: 'complete' };

/**
 * The drain controller's step for `nodeId`, level-based: from the node and its allocations as they
 * are, migrate what may move now, stop what is left at the deadline, or end the drain once nothing
 * runs there.
 */
export function advanceDrain(
  view: StateView,
  nodeId: string,
  now: number,
  actor: string,
): Transition<DrainStep> {
  const node = view.node(nodeId);
  if (!node?.drain) return { done: { state: 'idle' } };
  const deadline = node.drainStrategy?.deadline ?? Infinity;
  const active = view.allocsOnNode(nodeId).filter(isActive);
  const compare: Compare[] = [unchanged(view, keys.node(node.id))];
  if (active.length === 0)
    return {
      compare,
      ops: [
        putOp(keys.node(node.id), undrained(node, 'ineligible')),
        nodeEvent(
          node,
          'node-drain-complete',
          `node ${node.name} drained: nothing runs there; it stays ineligible until "unum node eligible"`,
          now,
          actor,
        ),
      ],
      result: { state: 'complete' },
    };

  const live = active.filter((a) => a.desiredStatus === 'run');
  const ops: TxnOp[] = [];
  if (now >= deadline) {
    if (live.length === 0) return { done: { state: 'deadline', stopped: 0 } };
    const description = `node ${node.name} reached its drain deadline`;
    for (const a of live) {
      compare.push(unchanged(view, keys.alloc(a.id)));
      ops.push(
        putOp(keys.alloc(a.id), {
          ...a,
          desiredStatus: 'stop',
          desiredDescription: description,
          modifiedAt: now,
        }),
        stoppingEvent(a, description, now, actor),
      );
    }
    // The scheduler places what it can of them elsewhere (batch work starts over there).
    ops.push(...evaluationsOf(view, live, 'node-drain', now, nodeId));
    return { compare, ops, result: { state: 'deadline', stopped: live.length } };
  }

  const migrate = migrationsNow(view, live);
  if (migrate.length === 0) return { done: { state: 'migrating', migrated: 0, deadline } };
  for (const a of migrate) {
    compare.push(unchanged(view, keys.alloc(a.id)));
    ops.push(
      putOp(keys.alloc(a.id), {
        ...a,
        desiredTransition: { ...a.desiredTransition, migrate: true },
        modifiedAt: now,
      }),
      eventOp(
        {
          topic: 'allocation',
          type: 'alloc-migrating',
          namespace: a.namespace,
          jobId: a.jobId,
          allocId: a.id,
          nodeId: a.nodeId,
          message: `migrating ${a.name} (${shortId(a.id)}) off node ${node.name} (draining)`,
          actor,
        },
        now,
      ),
    );
  }
  ops.push(...evaluationsOf(view, migrate, 'node-drain', now, nodeId));
  return { compare, ops, result: { state: 'migrating', migrated: migrate.length, deadline } };
}

/**
 * The allocations of a draining node that may start moving now (after Nomad's drainer), per job
 * group: those that do not serve (pending, or failing their checks) at once; serving ones only
 * while the group keeps at least `count - migrate.maxParallel` instances serving that are not
 * moving. So each batch of `maxParallel` waits until its replacements run and pass their checks.
 * Batch work is not moved: it runs until it ends or the deadline comes.
 */
function migrationsNow(view: StateView, live: readonly Allocation[]): Allocation[] {
  const byGroup = new Map<string, Allocation[]>();
  for (const a of live) {
    if (a.jobType === 'batch' || a.desiredTransition?.migrate) continue;
    const key = JSON.stringify([a.namespace, a.jobId, a.group]);
    byGroup.set(key, [...(byGroup.get(key) ?? []), a]);
  }
  const out: Allocation[] = [];
  for (const allocs of byGroup.values()) {
    const first = allocs[0]!;
    const job = view.job(first.namespace, first.jobId);
    const group = job?.spec.groups.find((g) => g.name === first.group);
    // A stopped job, a removed group: the scheduler stops these anyway.
    if (!job || job.stop || !group) continue;
    const checked = group.services.some((s) => s.check !== undefined);
    const serving = (a: Allocation) =>
      a.desiredStatus === 'run' &&
      a.clientStatus === 'running' &&
      a.index < group.count &&
      (!checked || a.healthy === true);
    const staying = view
      .allocsOfJob(job.namespace, job.id)
      .filter((a) => a.group === group.name && serving(a) && !a.desiredTransition?.migrate).length;
    // Jobs stored before `migrate` existed have none: they get its default.
    const maxParallel = (group.migrate as typeof group.migrate | undefined)?.maxParallel ?? 1;
    let budget = staying - (group.count - maxParallel);
    for (const a of [...allocs].sort((x, y) => x.index - y.index)) {
      if (!serving(a)) out.push(a);
      else if (budget > 0) {
        out.push(a);
        budget--;
      }
    }
  }
  return out;
}
