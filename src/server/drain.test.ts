/**
 * Draining and eligibility through the HTTP API, with several nodes played by fake agents: the
 * scheduler, the plan applier and the drain controller run for real.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { UnumClient } from '../api/client.ts';
import { ForbiddenError, InvalidError, NotFoundError } from '../core/errors.ts';
import { isActive } from '../core/alloc.ts';
import type { Allocation } from '../core/types.ts';
import { bootstrapped } from '../testing/acl.ts';
import { fakeNode, startFakeAgent, type FakeAgent } from '../testing/fake-agent.ts';
import { waitFor } from '../testing/wait.ts';
import { startServer, type RunningServer } from './index.ts';

const service = (id: string, count: number, cpu: number) => ({
  job: id,
  groups: [
    {
      name: 'web',
      count,
      tasks: [{ name: 'server', command: 'sleep', args: ['300'], resources: { cpu, memory: 64 } }],
    },
  ],
});

describe('node drain and eligibility', () => {
  let dir: string;
  let server: RunningServer;
  let client: UnumClient;
  let token = '';
  const agents: FakeAgent[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'unum-drain-'));
    server = await startServer({ dataDir: dir, addr: '127.0.0.1:0', store: 'memory:' });
    ({ client, token } = await bootstrapped(server.addr));
    for (const id of ['node-a', 'node-b'])
      agents.push(await startFakeAgent(server.addr, token, fakeNode(id)));
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The job's allocations that are to run and have not ended. */
  const live = async (job: string): Promise<Allocation[]> =>
    (await client.jobAllocations(job)).items.filter((a) => a.desiredStatus === 'run' && isActive(a));
  const running = (job: string, count: number) =>
    waitFor(
      async () => {
        const l = await live(job);
        return l.length === count && l.every((a) => a.clientStatus === 'running') ? l : undefined;
      },
      { timeoutMs: 20_000, description: `${count} instances of ${job} running` },
    );
  const node = async (id: string) => client.getNode(id);
  const drained = (id: string) =>
    waitFor(async () => ((await node(id)).drain ? undefined : node(id)), {
      timeoutMs: 30_000,
      description: `the drain of ${id} to end`,
    });

  test('a drain moves all 4 instances to the other node, one at a time, and leaves the node ineligible', async () => {
    await client.setNodeEligibility('node-b', false);
    await client.submitJob(service('web', 4, 500));
    assert.ok((await running('web', 4)).every((a) => a.nodeId === 'node-a'));
    await client.setNodeEligibility('node-b', true);

    const started = await client.drainNode('node-a', { deadline: '10m' });
    assert.deepEqual([started.drain, started.eligibility], [true, 'ineligible']);
    assert.ok(started.drainStrategy && started.drainStrategy.deadline > started.drainStrategy.startedAt);
    const a = await drained('node-a');
    assert.equal(a.eligibility, 'ineligible', 'a drained node stays ineligible');
    const after = await running('web', 4);
    assert.ok(
      after.every((x) => x.nodeId === 'node-b'),
      'every instance ended on node-b',
    );
    assert.deepEqual((await client.listAllocations({ node: 'node-a' })).items, [], 'nothing left on node-a');

    // maxParallel 1: each move waits until the previous replacement runs.
    const { events } = await client.events({ job: 'web', limit: 1000 });
    const order = events.flatMap((e) =>
      e.type === 'alloc-migrating'
        ? ['move']
        : e.type === 'alloc-running' && e.nodeId === 'node-b'
          ? ['up']
          : [],
    );
    assert.deepEqual(order, ['move', 'up', 'move', 'up', 'move', 'up', 'move', 'up']);
    assert.equal(
      events.filter((e) => e.type === 'alloc-stopping' && /node node-a is draining/.test(e.message)).length,
      4,
    );
    const nodeEvents = (await client.events({ limit: 1000 })).events.filter((e) => e.nodeId === 'node-a');
    assert.ok(nodeEvents.some((e) => e.type === 'node-drain-complete'));
    assert.ok(nodeEvents.some((e) => e.type === 'node-drain-started' && /token:/.test(e.actor ?? '')));

    await client.submitJob(service('more', 2, 100));
    assert.ok(
      (await running('more', 2)).every((x) => x.nodeId === 'node-b'),
      'nothing new on node-a',
    );
  });

  test('an eligible node takes work again; an ineligible one takes none', async () => {
    assert.equal((await client.setNodeEligibility('node-a', true)).eligibility, 'eligible');
    await client.setNodeEligibility('node-b', false);
    await client.submitJob(service('after', 1, 100));
    assert.equal((await running('after', 1))[0]?.nodeId, 'node-a');
    await client.setNodeEligibility('node-b', true);
  });

  test('cancelling a drain makes the node eligible; what could not move stays where it runs', async () => {
    await client.setNodeEligibility('node-b', false);
    await client.drainNode('node-a', { deadline: '10m' });
    const [stuck] = await running('after', 1);
    await waitFor(async () => (await client.getAllocation(stuck!.id)).desiredTransition?.migrate, {
      description: 'the instance marked to move',
    });
    const canceled = await client.drainNode('node-a', { cancel: true });
    assert.deepEqual([canceled.drain, canceled.eligibility], [false, 'eligible']);
    const kept = await client.getAllocation(stuck!.id);
    assert.deepEqual([kept.desiredStatus, kept.nodeId, kept.desiredTransition], ['run', 'node-a', undefined]);
    await client.setNodeEligibility('node-b', true);
  });

  test('at the deadline what found no room elsewhere is stopped', async () => {
    for (const id of ['node-a', 'node-b']) await client.setNodeEligibility(id, false);
    agents.push(await startFakeAgent(server.addr, token, fakeNode('node-c')));
    // Room for one instance only, and kept out until the drain starts.
    agents.push(
      await startFakeAgent(
        server.addr,
        token,
        fakeNode('node-d', { resources: { cpu: 1000, memory: 4096, disk: 100_000 } }),
      ),
    );
    await client.setNodeEligibility('node-d', false);
    await client.submitJob(service('wide', 3, 1000));
    assert.ok((await running('wide', 3)).every((a) => a.nodeId === 'node-c'));
    await client.setNodeEligibility('node-d', true);

    await client.drainNode('node-c', { deadline: '2s' });
    await drained('node-c');
    const { items } = await client.listAllocations({ job: 'wide', all: true });
    const stoppedAtDeadline = items.filter((a) => /drain deadline/.test(a.desiredDescription ?? ''));
    assert.ok(stoppedAtDeadline.length >= 2, 'node-d has room for one: at least two waited for the deadline');
    assert.ok(stoppedAtDeadline.every((a) => a.nodeId === 'node-c' && a.clientStatus === 'complete'));
    const left = await running('wide', 1);
    assert.equal(left[0]?.nodeId, 'node-d');
    // The rest waits for room (the evaluation of the deadline's stops says so once it has run).
    await waitFor(async () => (await client.getJob('wide')).placementFailures['web']?.unplaced === 2, {
      description: 'two instances of wide waiting for room',
    });
  });

  test('bad requests are refused with what is wrong; unknown nodes are not found; nodes may not drain', async () => {
    await assert.rejects(client.drainNode('no-such-node', {}), NotFoundError);
    await assert.rejects(client.setNodeEligibility('no-such-node', true), NotFoundError);
    const invalid = async (call: Promise<unknown>, pattern: RegExp) =>
      assert.rejects(call, (err: unknown) => {
        assert.ok(err instanceof InvalidError, String(err));
        assert.match(err.fields.map((f) => `${f.path}: ${f.message}`).join('\n'), pattern);
        return true;
      });
    await invalid(
      client.drainNode('node-a', { deadline: 'soon' }),
      /^deadline: expected a duration like "30m"/,
    );
    await invalid(
      client.drainNode('node-a', { deadline: '90d' }),
      /^deadline: expected a duration of at most 30d/,
    );
    await invalid(client.drainNode('node-a', { deadline: '1h', cancel: true }), /^cancel: give a deadline/);
    await invalid(
      client.request('POST', '/v1/nodes/node-a/drain', { body: { dead: '1h' } }),
      /unknown field "dead"/,
    );
    await invalid(
      client.request('POST', '/v1/nodes/node-a/eligibility', { body: {} }),
      /^eligible: required/,
    );
    // A node's credential may node:write its own routes, not take nodes out of service.
    const asNode = agents[1]!.client;
    await assert.rejects(asNode.drainNode('node-a', {}), ForbiddenError);
    await assert.rejects(asNode.setNodeEligibility('node-b', false), ForbiddenError);
    assert.equal((await node('node-a')).drain, false, 'nothing changed');
  });
});
