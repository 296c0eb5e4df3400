import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Allocation, ClusterEvent, Evaluation, Job, Node } from '../../core/types.ts';
import { mock } from '../../testing/mock.ts';
import { advanceDrain, markEligible, markIneligible, startDrain } from './drain.ts';
import { registerNode } from './nodes.ts';
import { puts, view, written } from './fixtures.ts';

const HOUR = 3_600_000;
const draining = (node: Node, deadline = 10 * HOUR): Node => ({
  ...node,
  eligibility: 'ineligible',
  drain: true,
  drainStrategy: { startedAt: 0, deadline },
});
/** A job with health checks on its group when `checked`. */
function service(count: number, over: { maxParallel?: number; checked?: boolean; type?: 'batch' } = {}): Job {
  const job = mock.job({ count, ...(over.type ? { type: over.type } : {}) });
  const g = job.spec.groups[0]!;
  const group = {
    ...g,
    migrate: { maxParallel: over.maxParallel ?? 1 },
    network: { ...g.network, ports: [{ name: 'http' }] },
    services: over.checked
      ? [
          {
            name: 'web',
            port: 'http',
            tags: [],
            check: { type: 'tcp' as const, interval: 1000, timeout: 1000 },
          },
        ]
      : [],
  };
  return { ...job, spec: { ...job.spec, groups: [group] } };
}
const migrating = (t: { ops: Parameters<typeof puts>[0]['ops'] }) =>
  (puts(t, '/unum/allocs/') as Allocation[]).filter((a) => a.desiredTransition?.migrate).map((a) => a.index);

describe('eligibility', () => {
  test('ineligible keeps what runs; eligible again; asking twice writes nothing', () => {
    const node = mock.node();
    const off = written(markIneligible(view({ nodes: [node] }), node.id, 1, 'token:ops'));
    assert.equal(off.result.eligibility, 'ineligible');
    assert.equal(off.result.drain, false);
    const events = puts(off, '/unum/events/') as ClusterEvent[];
    assert.deepEqual(
      events.map((e) => [e.type, e.actor]),
      [['node-ineligible', 'token:ops']],
    );
    assert.ok('done' in markIneligible(view({ nodes: [off.result] }), node.id, 2, 'token:ops'));
    const on = written(markEligible(view({ nodes: [off.result] }), node.id, 3, 'token:ops'));
    assert.equal(on.result.eligibility, 'eligible');
    assert.ok('done' in markEligible(view({ nodes: [node] }), node.id, 4, 'token:ops'));
  });

  test("an agent registering again keeps the operator's choices", () => {
    const node = draining(mock.node());
    const { id, name, address, resources, reserved, attributes, drivers, portRange } = node;
    const reg = { id, name, address, resources, reserved, attributes, drivers, portRange };
    const again = written(registerNode(view({ nodes: [node] }), reg, 5, 'node:x'));
    assert.deepEqual(
      [again.result.eligibility, again.result.drain, again.result.drainStrategy],
      ['ineligible', true, node.drainStrategy],
    );
    const fresh = written(registerNode(view({}), reg, 5, 'node:x'));
    assert.deepEqual([fresh.result.eligibility, fresh.result.drain], ['eligible', false]);
  });

  test('an unknown node is not found', () => {
    assert.throws(() => markEligible(view({}), 'nope', 1, 'token:ops'), { code: 'not_found' });
    assert.throws(() => startDrain(view({}), 'nope', HOUR, 1, 'token:ops'), { code: 'not_found' });
  });
});

describe('drain', () => {
  test('starting a drain makes the node ineligible with its deadline; again moves the deadline only', () => {
    const node = mock.node();
    const t = written(startDrain(view({ nodes: [node] }), node.id, HOUR, 1000, 'token:ops'));
    assert.deepEqual(
      [t.result.drain, t.result.eligibility, t.result.drainStrategy],
      [true, 'ineligible', { startedAt: 1000, deadline: 1000 + HOUR }],
    );
    assert.equal((puts(t, '/unum/events/') as ClusterEvent[])[0]?.type, 'node-drain-started');
    const again = written(startDrain(view({ nodes: [t.result] }), node.id, 60_000, 5000, 'token:ops'));
    assert.deepEqual(again.result.drainStrategy, { startedAt: 1000, deadline: 65_000 });
    assert.equal((puts(again, '/unum/events/') as ClusterEvent[])[0]?.type, 'node-drain-updated');
  });

  test('maxParallel at a time: the next instance moves once the replacement serves', () => {
    const node = draining(mock.node());
    const other = mock.node();
    const job = service(3);
    const allocs = [0, 1, 2].map((index) => mock.alloc(job, node, { index }));
    const v = view({ nodes: [node, other], jobs: [job], allocs });
    const first = written(advanceDrain(v, node.id, 1, 'leader:s1'));
    assert.deepEqual(first.result, { state: 'migrating', migrated: 1, deadline: 10 * HOUR });
    assert.deepEqual(migrating(first), [0]);
    const evals = puts(first, '/unum/evals/') as Evaluation[];
    assert.deepEqual(
      evals.map((e) => [e.triggeredBy, e.nodeId]),
      [['node-drain', node.id]],
    );
    assert.ok((puts(first, '/unum/events/') as ClusterEvent[]).some((e) => e.type === 'alloc-migrating'));

    // The scheduler placed the replacement and stopped the old one; the replacement is pending.
    const moved: Allocation = { ...allocs[0]!, desiredTransition: { migrate: true }, desiredStatus: 'stop' };
    const fresh = mock.alloc(job, other, { index: 0, clientStatus: 'pending' });
    const waiting = [moved, allocs[1]!, allocs[2]!, fresh];
    const wait = advanceDrain(view({ nodes: [node, other], jobs: [job], allocs: waiting }), node.id, 2, 'l');
    assert.deepEqual(wait, { done: { state: 'migrating', migrated: 0, deadline: 10 * HOUR } });

    const running = waiting.map((a) => (a === fresh ? { ...a, clientStatus: 'running' as const } : a));
    const next = written(
      advanceDrain(view({ nodes: [node, other], jobs: [job], allocs: running }), node.id, 3, 'l'),
    );
    assert.deepEqual(migrating(next), [1]);
  });

  test('with checks, a replacement must be healthy; maxParallel 2 moves two at once', () => {
    const node = draining(mock.node());
    const other = mock.node();
    const job = service(4, { maxParallel: 2, checked: true });
    const allocs = [0, 1, 2, 3].map((index) => mock.alloc(job, node, { index, healthy: true }));
    const first = written(advanceDrain(view({ nodes: [node], jobs: [job], allocs }), node.id, 1, 'l'));
    assert.deepEqual(migrating(first), [0, 1]);
    const moved = allocs.map((a, i) =>
      i < 2 ? { ...a, desiredStatus: 'stop' as const, desiredTransition: { migrate: true } } : a,
    );
    const fresh = [0, 1].map((index) => mock.alloc(job, other, { index, healthy: false }));
    const v = view({ nodes: [node, other], jobs: [job], allocs: [...moved, ...fresh] });
    assert.ok('done' in advanceDrain(v, node.id, 2, 'l'), 'running but not yet healthy');
    const healthy = fresh.map((a) => ({ ...a, healthy: true }));
    const next = written(
      advanceDrain(
        view({ nodes: [node, other], jobs: [job], allocs: [...moved, ...healthy] }),
        node.id,
        3,
        'l',
      ),
    );
    assert.deepEqual(migrating(next), [2, 3]);
  });

  test('instances that do not serve move at once; batch work is left to finish', () => {
    const node = draining(mock.node());
    const job = service(3);
    const batch = service(1, { type: 'batch' });
    const allocs = [
      mock.alloc(job, node, { index: 0 }),
      mock.alloc(job, node, { index: 1, clientStatus: 'pending' }),
      mock.alloc(job, node, { index: 2, clientStatus: 'pending' }),
      mock.alloc(batch, node, { index: 0 }),
    ];
    const t = written(advanceDrain(view({ nodes: [node], jobs: [job, batch], allocs }), node.id, 1, 'l'));
    // Two pending ones move freely; the running one would leave 0 of count - maxParallel = 2 serving.
    assert.deepEqual(migrating(t), [1, 2]);
  });

  test('at the deadline what is left stops and is evaluated again; once empty the drain is over', () => {
    const node = draining(mock.node(), 100);
    const job = service(2);
    const batch = service(1, { type: 'batch' });
    const allocs = [
      mock.alloc(job, node, { index: 0, desiredTransition: { migrate: true } }), // no room elsewhere
      mock.alloc(job, node, { index: 1 }),
      mock.alloc(batch, node, { index: 0 }),
      mock.alloc(job, node, { index: 1, clientStatus: 'complete', desiredStatus: 'stop' }),
    ];
    const t = written(advanceDrain(view({ nodes: [node], jobs: [job, batch], allocs }), node.id, 100, 'l'));
    assert.deepEqual(t.result, { state: 'deadline', stopped: 3 });
    const stopped = puts(t, '/unum/allocs/') as Allocation[];
    assert.ok(
      stopped.every((a) => a.desiredStatus === 'stop' && /drain deadline/.test(a.desiredDescription ?? '')),
    );
    assert.equal((puts(t, '/unum/evals/') as Evaluation[]).length, 2, 'one evaluation per job');

    const stopping = allocs.map((a) => ({ ...a, desiredStatus: 'stop' as const }));
    assert.deepEqual(advanceDrain(view({ nodes: [node], allocs: stopping }), node.id, 200, 'l'), {
      done: { state: 'deadline', stopped: 0 },
    });
    const gone = stopping.map((a) => ({ ...a, clientStatus: 'complete' as const }));
    const end = written(advanceDrain(view({ nodes: [node], allocs: gone }), node.id, 300, 'l'));
    const after = puts(end, '/unum/nodes/')[0] as Node;
    assert.deepEqual([after.drain, after.eligibility, after.drainStrategy], [false, 'ineligible', undefined]);
    assert.equal((puts(end, '/unum/events/') as ClusterEvent[])[0]?.type, 'node-drain-complete');
    assert.deepEqual(advanceDrain(view({ nodes: [after] }), node.id, 400, 'l'), { done: { state: 'idle' } });
  });

  test('canceling makes the node eligible and calls off the moves not yet placed', () => {
    const node = draining(mock.node());
    const job = service(2);
    const waiting = mock.alloc(job, node, { index: 0, desiredTransition: { migrate: true } });
    const placed = mock.alloc(job, node, {
      index: 1,
      desiredTransition: { migrate: true },
      desiredStatus: 'stop',
    });
    const t = written(
      markEligible(view({ nodes: [node], jobs: [job], allocs: [waiting, placed] }), node.id, 1, 'token:ops'),
    );
    assert.deepEqual(
      [t.result.drain, t.result.eligibility, t.result.drainStrategy],
      [false, 'eligible', undefined],
    );
    const allocs = puts(t, '/unum/allocs/') as Allocation[];
    assert.deepEqual(
      allocs.map((a) => [a.id, a.desiredTransition]),
      [[waiting.id, undefined]],
    );
    assert.equal((puts(t, '/unum/events/') as ClusterEvent[])[0]?.type, 'node-drain-canceled');
  });
});
