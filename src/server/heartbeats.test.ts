/**
 * Failure detection on a FakeClock: the leader's in-memory heartbeats and the node-down controller
 * that acts on them. Time moves in ticks; beats are the route's call (`heartbeats.beat`), as the
 * leader receives them.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { Node } from '../core/types.ts';
import { createStore } from '../store/index.ts';
import type { Store } from '../store/types.ts';
import { mock } from '../testing/mock.ts';
import { startServerCore, type ServerCore } from '../testing/server-core.ts';
import { waitFor } from '../testing/wait.ts';
import { ControllerManager } from './controllers/controller.ts';
import { nodeDownController } from './controllers/node-down.ts';
import { Heartbeats, TICK_MS, detachLivenessLeases, heartbeatSettings, scaled } from './heartbeats.ts';
import { keys } from './keys.ts';
import type { Term } from './leadership/term.ts';

const asLeader = { forwarded: false };

/** Lets the controller's reconciles and their writes run (the Store commits on setImmediate). */
async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

/** Every mutating call made to `inner`, by method. */
function countingStore(inner: Store): { store: Store; writes: Map<string, number>; total(): number } {
  const writes = new Map<string, number>();
  const mutating = new Set(['put', 'delete', 'txn', 'grantLease', 'keepAlive', 'revokeLease', 'compact']);
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof prop !== 'string' || typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (mutating.has(prop)) writes.set(prop, (writes.get(prop) ?? 0) + 1);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store, writes, total: () => [...writes.values()].reduce((a, b) => a + b, 0) };
}

describe('heartbeats: failure detection in the leader', () => {
  let core: ServerCore;
  let store: ReturnType<typeof countingStore>;
  let term: Term | undefined;
  let run: Promise<void> | undefined;

  beforeEach(async () => {
    store = countingStore(await createStore('memory:'));
    core = await startServerCore({ store: store.store });
  });
  afterEach(async () => {
    term?.end('test over');
    await run;
    await core.close();
  });

  const { intervalMs, graceMs } = heartbeatSettings();

  /** Nodes registered (their liveness keys written), as their agents do. */
  async function register(count: number, prefix = 'node'): Promise<Node[]> {
    const nodes = Array.from({ length: count }, (_, i) =>
      mock.node({ id: `${prefix}-${String(i).padStart(4, '0')}` }),
    );
    await core.seed({ nodes });
    for (const n of nodes) await core.store.put(keys.heartbeat(n.id), '0');
    await core.settle();
    return nodes;
  }

  /** This core's server takes office and runs the node-down controller with `heartbeats`. */
  async function lead(heartbeats = core.heartbeats, candidate = 's1'): Promise<{ leaseId: number }> {
    const elected = await core.elect(candidate);
    term = elected.term;
    heartbeats.lead(term);
    const controller = nodeDownController({ ...core, heartbeats });
    run = new ControllerManager({
      controllers: [controller],
      changes: core.cache,
      clock: core.clock,
      log: core.log,
    }).run(term);
    await flush();
    return { leaseId: elected.leaseId };
  }

  /** Moves time on by `ms` in ticks; every `beating` node beats once per interval. */
  async function live(ms: number, beating: readonly Node[], heartbeats = core.heartbeats): Promise<void> {
    for (let t = 0; t < ms; t += TICK_MS) {
      if (t % intervalMs === 0) for (const n of beating) await heartbeats.beat(n.id, asLeader);
      core.clock.advance(TICK_MS);
      await flush();
    }
  }

  const status = (n: Node) => core.cache.node(n.id)?.status;

  test('a node that beats is never marked down; one that stops is, after the grace and not before', async () => {
    const [steady, stopper] = await register(2);
    await lead();
    await live(5_000, [steady!, stopper!]);
    const lastBeat = core.clock.now() - 5_000 + intervalMs * 4;
    await live(graceMs + 5_000, [steady!]);
    await waitFor(() => status(stopper!) === 'down', { description: 'the silent node down' });
    const event = core.cache.events.find((e) => e.type === 'node-down' && e.nodeId === stopper!.id);
    assert.ok(event && event.time - lastBeat >= graceMs, 'not before its grace ran out');
    assert.equal(status(steady!), 'ready', 'the node that beats every interval stays up');
    assert.equal(core.cache.isAlive(steady!.id), true);
    assert.equal(core.cache.events.filter((e) => e.type === 'node-down').length, 1);
  });

  test('a leader change gives every node a full grace: no mass node-down', async () => {
    const nodes = await register(200);
    // The next leader is another server, a follower for now: the agents talk to it, and it hands
    // their beats to the leader, seeing them go by.
    let nextLeads = false;
    const next = new Heartbeats({
      clock: core.clock,
      cache: core.cache,
      log: core.log,
      relay: {
        isLeader: () => nextLeads,
        forwardHeartbeat: (nodeId) => core.heartbeats.beat(nodeId, asLeader),
      },
    });
    try {
      const first = await lead();
      await live(3_000, nodes, next);
      // The first leader goes (it resigns; a crashed one's lease would run out), and a minute
      // passes without a leader: nobody hears a beat.
      term!.end('deposed');
      await run;
      await core.store.revokeLease(first.leaseId);
      core.clock.advance(60_000);
      // A sentinel that no longer has its liveness key: the new leader takes it down at its first look.
      const [sentinel] = await register(1, 'zz-sentinel');
      await core.store.delete({ key: keys.heartbeat(sentinel!.id) });
      await core.settle();

      nextLeads = true;
      await lead(next, 's2');
      await waitFor(() => status(sentinel!) === 'down', { description: 'the first look of the new leader' });
      assert.deepEqual(
        nodes.filter((n) => status(n) !== 'ready').map((n) => n.id),
        [],
        'no node is down right after the change',
      );
      await live(graceMs - TICK_MS, [], next);
      assert.equal(nodes.filter((n) => status(n) !== 'ready').length, 0, 'nor within the grace');
      await live(TICK_MS, [], next);
      await waitFor(() => nodes.every((n) => status(n) === 'down'), {
        description: 'every silent node down once the full grace ran out',
      });
    } finally {
      next.close();
    }
  });

  test('a leader whose event loop stalled does not take the stall for its nodes’ silence', async () => {
    const nodes = await register(20);
    const [quiet, ...beating] = nodes;
    await lead();
    await live(3_000, nodes);
    // Ten seconds without running: the timers that would declare every node down fire first...
    core.clock.stall(10_000);
    await flush();
    // ...then the beats that waited in the sockets are read.
    for (const n of beating) await core.heartbeats.beat(n.id, asLeader);
    await flush();
    assert.equal(nodes.filter((n) => status(n) !== 'ready').length, 0, 'no node down after the stall');
    await live(graceMs + 1_000, beating);
    await waitFor(() => status(quiet!) === 'down', { description: 'the node that stayed silent down' });
    assert.deepEqual(
      beating.filter((n) => status(n) !== 'ready').map((n) => n.id),
      [],
    );
  });

  test('beats are not written; the transitions are', async () => {
    const [node, other] = await register(2);
    await lead();
    const before = store.total();
    for (let i = 0; i < 1000; i++) await core.heartbeats.beat(node!.id, asLeader);
    await live(10_000, [node!, other!]);
    assert.equal(
      store.total(),
      before,
      `no Store write for 1000 + 80 beats (${JSON.stringify([...store.writes])})`,
    );
    assert.equal(status(node!), 'ready');

    await live(graceMs + TICK_MS, [other!]);
    await waitFor(() => status(node!) === 'down', { description: 'the transition to down' });
    assert.equal(store.total() - before, 1, 'ready → down: one transaction');
    assert.equal(await core.store.get(keys.heartbeat(node!.id)), undefined, 'the liveness key went in it');
  });

  test('a node keeps the longer grace it was told while the cluster shrinks', async () => {
    // 4 beats per second at most: with 8 nodes up, every 2 s, down after 8 s of silence.
    await core.close();
    core = await startServerCore({ heartbeat: { maxRate: 4 } });
    const nodes = await register(8);
    await lead();
    assert.deepEqual(core.heartbeats.answer, { intervalMs: 2_000, graceMs: 8_000, ttlSeconds: 8 });
    await live(2_000, nodes);
    const [kept, ...gone] = nodes;
    // Six nodes leave at once (marked down: their liveness keys go); the rest are told 1 s and 4 s.
    for (const n of gone.slice(0, 6)) await core.silence(n);
    assert.deepEqual(core.heartbeats.answer, { intervalMs: 1_000, graceMs: 4_000, ttlSeconds: 4 });
    // `kept` was told 2 s / 8 s at its last beat and beats again 2 s later: not down meanwhile.
    await live(6_000, []);
    assert.equal(status(kept!), 'ready', 'the grace it was told holds until its next beat');
    await live(2_500, []);
    await waitFor(() => status(kept!) === 'down', { description: 'down after the grace it was told' });
  });

  test('an unknown node, or one marked down, must register again', async () => {
    const [node] = await register(1);
    await lead();
    await assert.rejects(core.heartbeats.beat('never-registered', asLeader), /register again/);
    await core.silence(node!);
    await assert.rejects(core.heartbeats.beat(node!.id, asLeader), /register again/);
    await core.heartbeat(node!); // registers again: a beat as good as any
    assert.equal(core.heartbeats.overdueIn(node!.id), graceMs);
  });
});

describe('upgrade', () => {
  test('liveness keys on the leases of an older version are detached: no node goes down when they run out', async () => {
    const store = await createStore('memory:');
    try {
      const lease = await store.grantLease(10);
      await store.put(keys.heartbeat('old'), '1', { lease: lease.id });
      await store.put(keys.heartbeat('new'), '2');
      assert.equal(await detachLivenessLeases(store), 1);
      assert.equal(await detachLivenessLeases(store), 0, 'once');
      await assert.rejects(store.revokeLease(lease.id), /not found/, 'the old lease is gone');
      const kv = await store.get(keys.heartbeat('old'));
      assert.equal(kv?.lease, 0);
      assert.equal(kv?.value, '1');
    } finally {
      await store.close();
    }
  });
});

describe('heartbeat settings', () => {
  test('the grace is at least twice the interval; defaults scale with a longer interval', () => {
    assert.deepEqual(heartbeatSettings(), { intervalMs: 1_000, graceMs: 4_000, maxRate: 5_000 });
    assert.deepEqual(heartbeatSettings({ intervalMs: 5_000 }), {
      intervalMs: 5_000,
      graceMs: 20_000,
      maxRate: 5_000,
    });
    assert.throws(
      () => heartbeatSettings({ intervalMs: 2_000, graceMs: 3_000 }),
      /heartbeatGraceMs: expected at least twice/,
    );
    assert.throws(() => heartbeatSettings({ intervalMs: 10 }), /heartbeatIntervalMs/);
    assert.throws(() => heartbeatSettings({ maxRate: -1 }), /heartbeatMaxRate/);
  });

  test('past maxRate beats per second, the interval and the grace grow with the cluster', () => {
    const s = heartbeatSettings();
    assert.deepEqual(scaled(s, 3), { intervalMs: 1_000, graceMs: 4_000 }, 'a small cluster: as set');
    assert.deepEqual(scaled(s, 5_000), { intervalMs: 1_000, graceMs: 4_000 });
    assert.deepEqual(scaled(s, 10_000), { intervalMs: 2_000, graceMs: 8_000 });
    assert.deepEqual(
      scaled({ ...s, maxRate: 0 }, 10_000),
      { intervalMs: 1_000, graceMs: 4_000 },
      '0: no limit',
    );
  });
});
