import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { Allocation, Node } from '../../core/types.ts';
import { mock } from '../../testing/mock.ts';
import { startServerCore, type ServerCore } from '../../testing/server-core.ts';
import { waitFor } from '../../testing/wait.ts';
import { putOp } from '../events.ts';
import { keys } from '../keys.ts';
import { addsCapacity } from './blocked-evals.ts';
import { ControllerManager } from './controller.ts';
import { drainController } from './drain.ts';

const HOUR = 3_600_000;

describe('drain controller', () => {
  let core: ServerCore;
  beforeEach(async () => {
    core = await startServerCore();
  });
  afterEach(() => core.close());

  const run = async (candidate = 's1') => {
    const { term, leaseId } = await core.elect(candidate);
    const m = new ControllerManager({
      controllers: [drainController(core)],
      changes: core.cache,
      clock: core.clock,
      log: core.log,
    });
    const done = m.run(term);
    return {
      leaseId,
      async stop() {
        term.end('test over');
        await done;
      },
    };
  };
  const draining = (node: Node): Node => ({
    ...node,
    eligibility: 'ineligible',
    drain: true,
    drainStrategy: { startedAt: core.clock.now(), deadline: core.clock.now() + HOUR },
  });
  const alloc = (id: string) => core.cache.alloc(id);
  /** What the scheduler and the agent would do with a migration: its replacement runs on `to`. */
  const moved = async (a: Allocation, to: Node) => {
    const fresh = mock.alloc(core.cache.job(a.namespace, a.jobId)!, to, {
      index: a.index,
      previousAllocId: a.id,
    });
    const old = { ...alloc(a.id)!, desiredStatus: 'stop' as const, clientStatus: 'complete' as const };
    await core.store.txn({ success: [putOp(keys.alloc(old.id), old), putOp(keys.alloc(fresh.id), fresh)] });
    await core.settle();
  };

  test('a drain begun under an earlier leader goes on, one instance at a time, and ends', async () => {
    const [a, b] = [draining(mock.node()), mock.node()];
    const job = mock.job({ count: 2 });
    const [a0, a1] = [0, 1].map((index) => mock.alloc(job, a, { index })) as [Allocation, Allocation];
    await core.seed({ nodes: [a, b], jobs: [job], allocs: [a0, a1] });
    const first = await run('s1');

    await waitFor(() => alloc(a0.id)?.desiredTransition?.migrate === true, { description: 'first marked' });
    await core.settle();
    assert.equal(alloc(a1.id)?.desiredTransition, undefined, 'one at a time (maxParallel 1)');
    const evals = core.cache.listEvals().filter((e) => e.jobId === job.id);
    assert.deepEqual(
      evals.map((e) => [e.triggeredBy, e.nodeId]),
      [['node-drain', a.id]],
    );

    // The leader goes away mid-drain; the next one finds the drain in the Store and carries on.
    await first.stop();
    await core.store.revokeLease(first.leaseId);
    const second = await run('s2');
    await moved(a0, b);
    await waitFor(() => alloc(a1.id)?.desiredTransition?.migrate === true, { description: 'second marked' });
    await moved(a1, b);
    await waitFor(() => core.cache.node(a.id)?.drain === false, { description: 'drain over' });
    const node = core.cache.node(a.id)!;
    assert.equal(node.eligibility, 'ineligible', 'a drained node stays ineligible');
    assert.equal(node.drainStrategy, undefined);
    assert.ok(core.cache.events.some((e) => e.type === 'node-drain-complete' && e.actor === 'leader:s2'));
    await second.stop();
  });

  test('what cannot move is stopped when the clock reaches the deadline', async () => {
    const a = draining(mock.node());
    const job = mock.job({ count: 1 });
    const stuck = mock.alloc(job, a, { desiredTransition: { migrate: true } }); // no room anywhere
    await core.seed({ nodes: [a], jobs: [job], allocs: [stuck] });
    const leader = await run();
    // Looked at once, with nothing to wake it before the deadline but the clock.
    await waitFor(() => core.clock.pending > 0, { description: 'a look at the deadline' });
    assert.equal(alloc(stuck.id)?.desiredStatus, 'run', 'it keeps running before the deadline');

    core.clock.advance(HOUR);
    await waitFor(() => alloc(stuck.id)?.desiredStatus === 'stop', {
      description: 'stopped at the deadline',
    });
    assert.match(alloc(stuck.id)?.desiredDescription ?? '', /drain deadline/);
    assert.ok(core.cache.listEvals().some((e) => e.jobId === job.id && e.triggeredBy === 'node-drain'));
    assert.equal(core.cache.node(a.id)?.drain, true, 'still draining until the agent has stopped it');

    await core.store.put(
      keys.alloc(stuck.id),
      JSON.stringify({ ...alloc(stuck.id)!, clientStatus: 'complete' }),
    );
    await waitFor(() => core.cache.node(a.id)?.drain === false, { description: 'drain over' });
    await leader.stop();
  });

  test('a node made eligible again is capacity for blocked evaluations; one made ineligible is not', () => {
    const node = mock.node();
    const off: Node = { ...node, eligibility: 'ineligible' };
    assert.equal(addsCapacity({ kind: 'node', node, prev: off }), true);
    assert.equal(addsCapacity({ kind: 'node', node, prev: draining(node) }), true, 'a drain canceled');
    assert.equal(addsCapacity({ kind: 'node', node: off, prev: node }), false);
    assert.equal(addsCapacity({ kind: 'node', node: off }), false, 'registered ineligible');
    assert.equal(addsCapacity({ kind: 'node', node: { ...node, lastHeartbeat: 5 }, prev: node }), false);
  });
});
