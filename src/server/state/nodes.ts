/** Node transitions: an agent registers its node; the leader marks a silent node down and its work lost. */
import type { ParsedNodeRegistration } from '../../api/schemas.ts';
import { isActive } from '../../core/alloc.ts';
import type { Allocation, Node, NodeDevice } from '../../core/types.ts';
import type { Compare, TxnOp } from '../../store/types.ts';
import { eventOp, putOp } from '../events.ts';
import { keys } from '../keys.ts';
import type { NodeCredential } from '../node-credentials.ts';
import { changeAlloc, evaluationsOf, lostAlloc } from './allocs.ts';
import { unchanged, type StateView } from './view.ts';
import type { Transition } from './write.ts';

/**
 * An agent registers its node (again after a restart, or after it was marked down): the node
 * document, and its liveness key, which says to every server that the node is up until the leader
 * marks it down. Written at this transition only: heartbeats are not written.
 */
export function registerNode(
  view: StateView,
  reg: ParsedNodeRegistration,
  now: number,
  /** Who registers it: the node itself, or the token it joined with. */
  actor: string,
  /** A credential made for this first registration: written only if the node has none yet. */
  credential?: NodeCredential,
): Transition<Node> {
  const existing = view.node(reg.id);
  const { devices, ...rest } = reg;
  const node: Node = {
    ...rest,
    // zod's optional fields admit explicit undefined; the wire JSON never carries one.
    drivers: reg.drivers as Node['drivers'],
    ...(devices !== undefined && devices.length > 0 ? { devices: devices as NodeDevice[] } : {}),
    status: 'ready',
    // The operator's choices outlive the agent's restarts.
    eligibility: existing?.eligibility ?? 'eligible',
    drain: existing?.drain ?? false,
    ...(existing?.drainStrategy !== undefined ? { drainStrategy: existing.drainStrategy } : {}),
    registeredAt: existing?.registeredAt ?? now,
    lastHeartbeat: now,
  };
  const credentialOps = credential
    ? {
        compare: [{ key: keys.nodeCredential(reg.id), target: 'create', op: '=', value: 0 } as const],
        ops: [putOp(keys.nodeCredential(reg.id), credential)],
      }
    : { compare: [], ops: [] };
  return {
    compare: [unchanged(view, keys.node(reg.id)), ...credentialOps.compare],
    ops: [
      ...credentialOps.ops,
      putOp(keys.node(reg.id), node),
      { type: 'put', key: keys.heartbeat(reg.id), value: String(now) },
      eventOp(
        {
          topic: 'node',
          type: existing ? 'node-reregistered' : 'node-registered',
          nodeId: reg.id,
          message: `node ${reg.name} ${existing ? 're-registered' : 'registered'}: ${reg.resources.cpu} millicores, ${reg.resources.memory} MiB`,
          actor,
        },
        now,
      ),
    ],
    result: node,
  };
}

/**
 * A node stopped heartbeating: mark it down, its pending and running allocations lost, and ask for
 * an evaluation of each job that lost one. With `missed`, the leader found the node silent for
 * `silentMs` while its liveness key is still there: the key goes in the same transaction (a compare
 * on it lets a registration that raced this write win). Without, nothing to do while the key is
 * there (the node is up) or when the node is gone.
 */
export function markNodeDown(
  view: StateView,
  nodeId: string,
  now: number,
  actor: string,
  missed?: { silentMs: number },
): Transition<{ lost: number }> {
  const node = view.node(nodeId);
  const alive = view.isAlive(nodeId);
  if (!node || (alive && missed === undefined)) return { done: { lost: 0 } };
  const compare: Compare[] = [];
  const ops: TxnOp[] = [];
  if (alive) {
    compare.push(unchanged(view, keys.heartbeat(nodeId)));
    ops.push({ type: 'delete', key: keys.heartbeat(nodeId) });
  }
  const why =
    missed === undefined
      ? 'missed heartbeats'
      : `missed heartbeats (none for ${(missed.silentMs / 1000).toFixed(1)} s)`;
  if (node.status !== 'down') {
    compare.push(unchanged(view, keys.node(nodeId)));
    ops.push(
      putOp(keys.node(nodeId), { ...node, status: 'down', statusDescription: why }),
      eventOp(
        {
          topic: 'node',
          type: 'node-down',
          nodeId,
          message: `node ${node.name} is down: ${why}`,
          actor,
        },
        now,
      ),
    );
  }
  const lost: Allocation[] = [];
  for (const a of view.allocsOnNode(nodeId)) {
    if (!isActive(a)) continue;
    compare.push(unchanged(view, keys.alloc(a.id)));
    ops.push(...changeAlloc(a, lostAlloc(a, `node ${node.name} is down`, now), now, actor));
    lost.push(a);
  }
  if (ops.length === 0) return { done: { lost: 0 } };
  ops.push(...evaluationsOf(view, lost, 'node-update', now, nodeId));
  return { compare, ops, result: { lost: lost.length } };
}
