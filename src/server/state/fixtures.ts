/** Fixtures of the transition tests: a plain view over arrays, and readers of a transition's writes. */
import assert from 'node:assert/strict';
import type { Allocation, Evaluation, Job, Node } from '../../core/types.ts';
import type { TxnOp } from '../../store/types.ts';
import type { StateView } from './view.ts';
import type { Transition } from './write.ts';

/** A plain view over arrays: transitions are pure, so they need nothing more. */
export function view(o: {
  jobs?: Job[];
  allocs?: Allocation[];
  nodes?: Node[];
  alive?: string[];
}): StateView {
  return {
    job: (ns, id) => o.jobs?.find((j) => j.namespace === ns && j.id === id),
    alloc: (id) => o.allocs?.find((a) => a.id === id),
    node: (id) => o.nodes?.find((n) => n.id === id),
    allocsOnNode: (id) => (o.allocs ?? []).filter((a) => a.nodeId === id),
    allocsOfJob: (ns, id) => (o.allocs ?? []).filter((a) => a.namespace === ns && a.jobId === id),
    listEvals: (): Evaluation[] => [],
    isAlive: (id) => (o.alive ?? []).includes(id),
    revisionOf: () => 7,
  };
}

/** The transition, asserted to write something. */
export const written = <T>(t: Transition<T>) => {
  assert.ok(!('done' in t), 'the transition writes');
  return t;
};

/** The values a transition puts under `prefix`, decoded. */
export const puts = (t: { ops: TxnOp[] }, prefix: string): unknown[] =>
  t.ops.flatMap((o) =>
    o.type === 'put' && o.key.startsWith(prefix) ? [JSON.parse(o.value) as unknown] : [],
  );
