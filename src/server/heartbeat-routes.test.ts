/**
 * Heartbeats over HTTP, with two servers over one Store (as etcd will give): a beat sent to the
 * follower reaches the leader; beats write nothing to the Store, and a node's transitions do.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UnumClient } from '../api/client.ts';
import type { NodeRegistration } from '../api/types.ts';
import { NotFoundError, NotLeaderError } from '../core/errors.ts';
import { createStore } from '../store/index.ts';
import type { Store } from '../store/types.ts';
import { waitFor } from '../testing/wait.ts';
import { startServer, type RunningServer } from './index.ts';
import { keys } from './keys.ts';
import { FORWARDED_HEADER } from './leadership/leader-link.ts';

const registration = (id: string): NodeRegistration => ({
  id,
  name: id,
  address: 'http://127.0.0.1:9',
  resources: { cpu: 4000, memory: 4096, disk: 10_000 },
  reserved: { cpu: 0, memory: 0 },
  attributes: { os: 'linux', hostname: id },
  drivers: { exec: { detected: true, healthy: true } },
  portRange: { min: 20000, max: 20100 },
});

/** The Store, with every mutating call recorded (method and first argument). */
function recording(inner: Store): { store: Store; calls: { method: string; arg: unknown }[] } {
  const calls: { method: string; arg: unknown }[] = [];
  const mutating = new Set(['put', 'delete', 'txn', 'grantLease', 'keepAlive', 'revokeLease', 'compact']);
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof prop !== 'string' || typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (mutating.has(prop)) calls.push({ method: prop, arg: args[0] });
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { store, calls };
}

describe('heartbeats over HTTP, two servers', () => {
  const dirs: string[] = [];
  let shared: ReturnType<typeof recording>;
  let leader: RunningServer;
  let follower: RunningServer;
  const heartbeat = { intervalMs: 200, graceMs: 2_000 };

  const start = (): Promise<RunningServer> => {
    const dataDir = mkdtempSync(join(tmpdir(), 'unum-hb-'));
    dirs.push(dataDir);
    return startServer({ dataDir, addr: '127.0.0.1:0', sharedStore: shared.store, acl: false, heartbeat });
  };
  const leads = async (s: RunningServer) => (await new UnumClient({ addr: s.addr }).status()).leader;

  /** Registers through `via`; returns a client of `via` with the node's own credential. */
  async function register(
    id: string,
    via: RunningServer,
  ): Promise<(s: RunningServer, headers?: Record<string, string>) => UnumClient> {
    const res = await new UnumClient({ addr: via.addr, token: () => undefined }).registerNode(
      registration(id),
    );
    assert.equal(res.heartbeatIntervalMs, heartbeat.intervalMs, 'the agent is told how often to beat');
    assert.equal(res.heartbeatGraceMs, heartbeat.graceMs);
    const secret = res.credential?.secret;
    return (s, headers = {}) => new UnumClient({ addr: s.addr, token: () => secret, headers });
  }

  before(async () => {
    shared = recording(await createStore('memory:'));
    leader = await start();
    await waitFor(() => leads(leader), { description: 'the first server to lead' });
    follower = await start();
  });

  after(async () => {
    await follower.stop();
    await leader.stop();
    await shared.store.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('a heartbeat sent to a follower is handed to the leader, which records it', async () => {
    assert.equal(await leads(follower), false);
    const as = await register('via-follower', follower);
    const seenByLeader = async () => (await as(leader).getNode('via-follower')).lastHeartbeat;
    const before = await waitFor(seenByLeader, { description: 'the registration, seen by the leader' });
    const t = performance.now();
    await waitFor(() => performance.now() > t + 2); // the next beat is at a later millisecond
    const answer = await as(follower).heartbeat('via-follower');
    assert.deepEqual(answer, { intervalMs: 200, graceMs: 2_000, ttlSeconds: 2 });
    assert.ok((await seenByLeader()) > before, 'the leader has the beat');
    assert.ok(
      (await as(follower).getNode('via-follower')).lastHeartbeat > before,
      'the follower saw it go by',
    );

    // The leader's refusals come back as they are.
    await assert.rejects(
      new UnumClient({ addr: follower.addr, token: () => undefined }).heartbeat('never-registered'),
      NotFoundError,
    );
    // A beat handed on once is never handed on again: a follower answers it not_leader.
    await assert.rejects(
      as(follower, { [FORWARDED_HEADER]: 'test' }).heartbeat('via-follower'),
      NotLeaderError,
    );
  });

  test('beats write nothing to the Store; going down and registering again do', async () => {
    const as = await register('counted', follower);
    await waitFor(async () => (await as(leader).getNode('counted')).status === 'ready');
    // The servers' own leases (the leader's, and the follower's place in line) are kept alive.
    // The servers' own leases (their places in the election, their records) are kept alive.
    const serverLeases = new Set(
      [
        ...(await shared.store.range({ prefix: keys.leaders })).kvs,
        ...(await shared.store.range({ prefix: keys.server('') })).kvs,
      ].map((kv) => kv.lease),
    );
    const from = shared.calls.length;
    for (let i = 0; i < 100; i++) await as(i % 2 === 0 ? leader : follower).heartbeat('counted');
    const writes = shared.calls
      .slice(from)
      .filter((c) => !(c.method === 'keepAlive' && serverLeases.has(c.arg as number)));
    assert.deepEqual(writes, [], '100 beats, to the leader and through the follower');

    // Silent for the grace: down, in one transaction that also deletes the liveness key.
    const down = shared.calls.length;
    await waitFor(async () => (await as(leader).getNode('counted')).status === 'down', {
      description: 'the silent node down',
    });
    const txns = shared.calls.slice(down).filter((c) => c.method === 'txn');
    assert.ok(
      txns.some((c) =>
        JSON.stringify(c.arg).includes(`"type":"delete","key":"${keys.heartbeat('counted')}"`),
      ),
      'ready → down is written',
    );
    await assert.rejects(
      as(follower).heartbeat('counted'),
      NotFoundError,
      'a node marked down must register again',
    );
    await as(follower).registerNode(registration('counted'));
    await waitFor(async () => (await as(leader).getNode('counted')).status === 'ready', {
      description: 'down → ready, by registering again',
    });
  });

  test('when the leader goes, the follower takes office and answers beats itself', async () => {
    const as = await register('survivor', follower);
    await leader.stop();
    await waitFor(() => leads(follower), { description: 'the follower to lead' });
    const answer = await as(follower).heartbeat('survivor');
    assert.equal(answer.intervalMs, 200);
    assert.equal((await as(follower).getNode('survivor')).status, 'ready');
    leader = await start(); // for after()
  });
});
