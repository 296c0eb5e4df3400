import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { NotLeaderError } from '../../core/errors.ts';
import { mock } from '../../testing/mock.ts';
import { startServerCore, type ServerCore } from '../../testing/server-core.ts';
import { waitFor } from '../../testing/wait.ts';
import { EvalBroker } from '../broker.ts';
import { keys } from '../keys.ts';
import { blockedEvalsController } from './blocked-evals.ts';
import { collectorController, DEFAULT_RETENTION, RETENTION } from './collector.ts';
import { ControllerManager, type Controller } from './controller.ts';
import { nodeDownController } from './node-down.ts';

describe('controllers', () => {
  let core: ServerCore;
  beforeEach(async () => {
    core = await startServerCore();
  });
  afterEach(() => core.close());

  const manager = (...controllers: Controller[]) =>
    new ControllerManager({ controllers, changes: core.cache, clock: core.clock, log: core.log });

  test('node-down: a node silent for the grace is marked down, its work lost, its jobs evaluated', async () => {
    const node = mock.node();
    const job = mock.job({ count: 2 });
    const running = mock.alloc(job, node, { clientStatus: 'running' });
    const done = mock.alloc(job, node, { index: 1, clientStatus: 'complete' });
    await core.seed({ nodes: [node], jobs: [job], allocs: [running, done] });
    await core.heartbeat(node); // registered, and never heard from again
    const { term } = await core.elect();
    core.heartbeats.lead(term);
    const run = manager(nodeDownController(core)).run(term);

    core.clock.advance(core.heartbeats.settings.graceMs);
    await waitFor(() => core.cache.node(node.id)?.status === 'down', { description: 'node down' });
    await core.settle();
    assert.equal(core.cache.isAlive(node.id), false, 'its liveness key went with it');
    assert.match(core.cache.node(node.id)?.statusDescription ?? '', /missed heartbeats \(none for 4\.0 s\)/);
    assert.equal(core.cache.alloc(running.id)?.clientStatus, 'lost');
    assert.match(core.cache.alloc(running.id)?.clientDescription ?? '', /is down/);
    assert.equal(core.cache.alloc(done.id)?.clientStatus, 'complete', 'finished work is left as it was');
    const evals = core.cache.listEvals().filter((e) => e.jobId === job.id);
    assert.equal(evals.length, 1, 'one evaluation for the job');
    assert.equal(evals[0]?.triggeredBy, 'node-update');
    assert.ok(core.cache.events.some((e) => e.type === 'node-down'));
    assert.ok(core.cache.events.some((e) => e.type === 'alloc-lost' && e.allocId === running.id));
    term.end('test over');
    await run;
  });

  test('node-down is level-based: a node that went silent before the term began is handled at its start', async () => {
    const node = mock.node();
    const job = mock.job();
    const a = mock.alloc(job, node, { clientStatus: 'running' });
    await core.seed({ nodes: [node], jobs: [job], allocs: [a] }); // never heartbeat
    const { term } = await core.elect();
    const run = manager(nodeDownController(core)).run(term);
    await waitFor(() => core.cache.alloc(a.id)?.clientStatus === 'lost', { description: 'alloc lost' });
    assert.equal(core.cache.node(node.id)?.status, 'down');
    term.end('test over');
    await run;
  });

  test('a node within its grace is left ready and looked at again when the grace would run out', async () => {
    const node = mock.node();
    await core.seed({ nodes: [node] });
    await core.heartbeat(node);
    const { term } = await core.elect();
    core.heartbeats.lead(term);
    core.clock.advance(1000);
    const result = await nodeDownController(core).reconcile(node.id, term);
    await core.settle();
    assert.equal(core.cache.node(node.id)?.status, 'ready');
    assert.deepEqual(result, { requeueAfterMs: core.heartbeats.settings.graceMs - 1000 });
  });

  test('a controller of an ended term writes nothing', async () => {
    const node = mock.node();
    await core.seed({ nodes: [node] });
    const { term } = await core.elect();
    term.end('stepped down');
    const revision = (await core.store.status()).revision;
    await assert.rejects(nodeDownController(core).reconcile(node.id, term), NotLeaderError);
    assert.equal((await core.store.status()).revision, revision);
    assert.equal(core.cache.node(node.id)?.status, 'ready');
  });

  test('blocked evaluations run again once capacity appears, once per burst', async () => {
    const broker = new EvalBroker(core.clock);
    broker.setEnabled(true);
    const job = mock.job();
    const blocked = mock.evaluation(job, { status: 'blocked' });
    broker.block(blocked);
    let unblocks = 0;
    const controller = blockedEvalsController({ broker });
    const counting: Controller = {
      ...controller,
      reconcile: (key, term) => {
        unblocks++;
        return controller.reconcile(key, term);
      },
    };
    const { term } = await core.elect();
    const run = manager(counting).run(term);
    const [n1, n2] = [mock.node(), mock.node()];
    await core.seed({ nodes: [n1, n2] }); // two nodes ready in one change: one key
    const next = await broker.dequeue(AbortSignal.timeout(5000));
    assert.equal(next?.id, blocked.id);
    assert.equal(unblocks, 1);
    term.end('test over');
    await run;
  });

  test('the collector runs at the start of a term and again after its interval', async () => {
    const { term } = await core.elect();
    let runs = 0;
    const collector = collectorController({
      store: core.store,
      cache: core.cache,
      clock: core.clock,
      log: core.log,
      retention: { ...DEFAULT_RETENTION, intervalMs: 60_000 },
    });
    const counting: Controller = {
      ...collector,
      reconcile: async (key, t) => {
        assert.equal(key, RETENTION);
        runs++;
        return collector.reconcile(key, t);
      },
    };
    const run = manager(counting).run(term);
    await waitFor(() => runs === 1);
    core.clock.advance(59_999);
    await core.settle();
    assert.equal(runs, 1);
    core.clock.advance(1);
    await waitFor(() => runs === 2, { description: 'the second collection' });
    term.end('test over');
    await run;
  });

  test('a failing reconcile is retried with backoff on the clock; the term ending stops it', async () => {
    const { term } = await core.elect();
    let calls = 0;
    const flaky: Controller = {
      name: 'flaky',
      initialKeys: () => ['k'],
      keysFor: () => [],
      reconcile: () => {
        calls++;
        return calls < 3 ? Promise.reject(new Error('store hiccup')) : Promise.resolve();
      },
    };
    const m = new ControllerManager({
      controllers: [flaky],
      changes: core.cache,
      clock: core.clock,
      log: core.log,
      backoff: { baseMs: 100, maxMs: 1000 },
    });
    const run = m.run(term);
    await waitFor(() => calls === 1);
    core.clock.advance(99);
    await new Promise((r) => setImmediate(r));
    assert.equal(calls, 1, 'not before its backoff');
    core.clock.advance(1);
    await waitFor(() => calls === 2);
    core.clock.advance(200);
    await waitFor(() => calls === 3);
    term.end('test over');
    await run;
    assert.equal(core.clock.pending, 0, 'no timer left behind');
    assert.ok(
      (await core.store.range({ prefix: keys.leaders })).kvs.length > 0,
      'the office is still held: only the term object ended',
    );
  });
});
