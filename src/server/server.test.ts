/**
 * The server through its HTTP API, on the memory store. The test plays the agent's part over the
 * wire (register, heartbeat, report), so the scheduler, plan applier and controllers run for real.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UnumClient } from '../api/client.ts';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NodeRegistration, NodeStats } from '../api/types.ts';
import {
  ForbiddenError,
  InvalidError,
  NotFoundError,
  UnauthenticatedError,
  UnavailableError,
} from '../core/errors.ts';
import type { Allocation, TaskState } from '../core/types.ts';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { bootstrapped } from '../testing/acl.ts';
import { waitFor } from '../testing/wait.ts';
import { startServer, type RunningServer } from './index.ts';

function registration(id: string, over: Partial<NodeRegistration> = {}): NodeRegistration {
  return {
    id,
    name: id,
    address: 'http://127.0.0.1:9',
    resources: { cpu: 4000, memory: 4096, disk: 10_000 },
    reserved: { cpu: 0, memory: 0 },
    attributes: { os: 'linux', hostname: id },
    drivers: { exec: { detected: true, healthy: true } },
    portRange: { min: 20000, max: 20100 },
    ...over,
  };
}

const job = (id: string, over: Record<string, unknown> = {}) => ({
  job: id,
  groups: [
    {
      name: 'web',
      count: 2,
      network: { ports: ['http'] },
      tasks: [{ name: 'server', command: 'sleep', args: ['300'], resources: { cpu: 100, memory: 64 } }],
    },
  ],
  ...over,
});

const running = (restarts = 0): Record<string, TaskState> => ({
  server: { state: 'running', failed: false, restarts, pid: 4242, startedAt: Date.now(), events: [] },
});

describe('server API', () => {
  let dir: string;
  let server: RunningServer;
  let client: UnumClient;
  let token = '';
  let beat: NodeJS.Timeout;
  /** Each registered node's own client, with the credential the server issued it. */
  const nodeClients = new Map<string, UnumClient>();
  const asNode = (id: string): UnumClient => nodeClients.get(id) ?? client;
  /** The calls an agent makes, each with its node's credential. */
  const nodeApi = {
    async registerNode(reg: NodeRegistration) {
      const res = await asNode(reg.id).registerNode(reg);
      if (res.credential)
        nodeClients.set(reg.id, new UnumClient({ addr: server.addr, token: res.credential.secret }));
      return res;
    },
    heartbeat: (id: string) => asNode(id).heartbeat(id),
    nodeAllocations: (
      id: string,
      ...rest: Parameters<UnumClient['nodeAllocations']> extends [string, ...infer R] ? R : never
    ) => asNode(id).nodeAllocations(id, ...rest),
    updateAllocations: (id: string, updates: Parameters<UnumClient['updateAllocations']>[1]) =>
      asNode(id).updateAllocations(id, updates),
  };
  const live = new Set(['node-a']);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'unum-server-'));
    server = await startServer({ dataDir: dir, addr: '127.0.0.1:0', store: 'memory:' });
    ({ client, token } = await bootstrapped(server.addr));
    await nodeApi.registerNode(registration('node-a'));
    // The test's "agents": every node in `live` heartbeats.
    beat = setInterval(() => {
      for (const id of live) void nodeApi.heartbeat(id).catch(() => undefined);
    }, 1000);
  });

  after(async () => {
    clearInterval(beat);
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a submitted job is placed on the node with distinct ports, and runs when the agent says so', async () => {
    const res = await client.submitJob(job('web'));
    assert.equal(res.changed, true);
    assert.equal(res.job.version, 0);
    const allocs = await waitFor(async () => {
      const l = await nodeApi.nodeAllocations('node-a');
      return l.items.filter((a) => a.jobId === 'web').length === 2 ? l.items : undefined;
    });
    assert.equal(new Set(allocs.map((a) => a.resources.ports[0]?.value)).size, 2);
    await nodeApi.updateAllocations(
      'node-a',
      allocs.map((a) => ({ allocId: a.id, clientStatus: 'running' as const, taskStates: running() })),
    );
    const detail = await client.getJob('web');
    assert.equal(detail.job.status, 'running');
    assert.equal(detail.summary.running, 2);
    // Defaults are applied and visible.
    assert.equal(detail.job.spec.type, 'service');
    assert.equal(detail.job.spec.namespace, 'default');
    assert.equal(detail.job.spec.groups[0]?.restart.attempts, 3);
    const events = await client.events({ job: 'web' });
    assert.ok(events.events.some((e) => e.type === 'alloc-placed'));
  });

  test('submitting the same spec again changes nothing', async () => {
    const res = await client.submitJob(job('web'));
    assert.equal(res.changed, false);
    assert.equal(res.job.version, 0);
  });

  test('a failed allocation is reported and replaced after the reschedule delay', async () => {
    const before = (await client.jobAllocations('web')).items.filter((a) => a.desiredStatus === 'run');
    const victim = before[0]!;
    await nodeApi.updateAllocations('node-a', [
      {
        allocId: victim.id,
        clientStatus: 'failed',
        clientDescription: 'task server failed: exited with code 1',
        taskStates: {
          server: {
            state: 'dead',
            failed: true,
            restarts: 3,
            exitCode: 1,
            finishedAt: Date.now(),
            events: [{ time: Date.now(), type: 'terminated', message: 'exited with code 1', exitCode: 1 }],
          },
        },
      },
    ]);
    const replacement = await waitFor(
      async () => (await client.jobAllocations('web')).items.find((a) => a.previousAllocId === victim.id),
      { timeoutMs: 30_000, description: 'replacement placed' },
    );
    assert.equal(replacement.index, victim.index);
    assert.equal(replacement.rescheduleEvents.length, 1);
    const old = await client.getAllocation(victim.id);
    assert.equal(old.nextAllocId, replacement.id);
    const events = await client.events({ job: 'web', limit: 1000 });
    assert.ok(
      events.events.some((e) => e.type === 'task-terminated' && e.message.includes('exited with code 1')),
    );
  });

  test('a job that can never fit is accepted, stays pending, and says why', async () => {
    const res = await client.submitJob(
      job('huge', {
        groups: [
          { name: 'g', tasks: [{ name: 't', command: 'true', resources: { cpu: 100, memory: 1_000_000 } }] },
        ],
      }),
    );
    assert.equal(res.changed, true);
    const detail = await waitFor(async () => {
      const d = await client.getJob('huge');
      return Object.keys(d.placementFailures).length ? d : undefined;
    });
    assert.equal(detail.job.status, 'pending');
    assert.match(detail.placementFailures['g']?.summary ?? '', /memory/);
    assert.match(detail.placementFailures['g']?.summary ?? '', /1000000 MiB/);
  });

  test('a blocked job is placed once a node with room arrives', async () => {
    await nodeApi.registerNode(
      registration('node-big', { resources: { cpu: 4000, memory: 2_000_000, disk: 100_000 } }),
    );
    live.add('node-big');
    const placed = await waitFor(async () => (await client.jobAllocations('huge')).items[0]);
    assert.equal(placed.nodeId, 'node-big');
    const detail = await client.getJob('huge');
    assert.deepEqual(detail.placementFailures, {});
  });

  test('the same job id in two namespaces are two jobs', async () => {
    await client.submitJob(job('twin', { namespace: 'team-a' }));
    await client.submitJob(job('twin', { namespace: 'team-b' }));
    const a = await client.getJob('twin', { namespace: 'team-a' });
    const b = await client.getJob('twin', { namespace: 'team-b' });
    assert.equal(a.job.namespace, 'team-a');
    assert.equal(b.job.namespace, 'team-b');
    await assert.rejects(client.getJob('twin'), NotFoundError);
  });

  test('invalid jobs are refused with field paths and change nothing', async () => {
    const before = await client.listJobs({ namespace: '*' });
    await assert.rejects(
      client.submitJob(
        job('bad', { groups: [{ name: 'g', count: -1, tasks: [{ name: 't', comand: 'x' }] }] }),
      ),
      (err: unknown) => {
        assert.ok(err instanceof InvalidError);
        const paths = err.fields.map((f) => f.path);
        assert.ok(paths.includes('groups[0].count'));
        assert.ok(paths.includes('groups[0].tasks[0].comand'));
        assert.match(err.message, /did you mean "command"/);
        return true;
      },
    );
    await assert.rejects(client.submitJob('not a job'), InvalidError);
    const after = await client.listJobs({ namespace: '*' });
    assert.equal(after.items.length, before.items.length);
  });

  test('a body that is not JSON gets 400 with a stable code', async () => {
    const res = await fetch(`${server.addr}/v1/jobs`, {
      method: 'POST',
      body: '{not json',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'invalid');
    assert.match(body.error.message, /not valid JSON/);
  });

  test('unknown routes and objects are 404 not_found', async () => {
    const res = await fetch(`${server.addr}/v1/nope`);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'not_found');
    await assert.rejects(client.getJob('missing'), NotFoundError);
    await assert.rejects(nodeApi.heartbeat('never-registered'), NotFoundError);
  });

  test('plan shows a diff and placements without changing anything', async () => {
    const plan = await client.planJob(job('web', { groups: [{ ...job('web').groups[0], count: 3 }] }));
    assert.equal(plan.isNew, false);
    assert.ok(plan.diff.some((d) => d.path === 'groups[0].count' && d.before === 2 && d.after === 3));
    assert.equal(plan.placements.length, 1);
    const detail = await client.getJob('web');
    assert.equal(detail.job.version, 0, 'plan is a dry run');
  });

  test('stop marks every allocation to stop', async () => {
    const { evalId } = await client.stopJob('web');
    assert.ok(evalId);
    await waitFor(async () =>
      (await client.jobAllocations('web')).items.every((a) => a.desiredStatus === 'stop'),
    );
    const detail = await client.getJob('web');
    assert.equal(detail.job.stop, true);
  });

  test('the event stream resumes from an index', async () => {
    const page = await client.events({ index: 0, limit: 5 });
    assert.equal(page.events.length, 5);
    const ac = new AbortController();
    const seen: number[] = [];
    for await (const e of client.streamEvents({ index: page.events[1]!.index }, ac.signal)) {
      seen.push(e.index);
      if (seen.length === 3) break;
    }
    ac.abort();
    assert.deepEqual(
      seen,
      page.events.slice(2, 5).map((e) => e.index),
    );
  });

  test(
    'a node that stops heartbeating goes down; its allocations are lost and replaced elsewhere',
    { timeout: 90_000 },
    async () => {
      const room = { cpu: 4000, memory: 5_000_000, disk: 100_000 };
      await nodeApi.registerNode(registration('node-doomed', { resources: room }));
      await client.submitJob(
        job('mover', {
          groups: [
            {
              name: 'g',
              count: 1,
              tasks: [{ name: 't', command: 'sleep', resources: { cpu: 100, memory: 2_500_000 } }],
            },
          ],
        }),
      );
      const first = await waitFor(async () => (await client.jobAllocations('mover')).items[0]);
      assert.equal(first.nodeId, 'node-doomed', 'only node-doomed has the memory');
      // node-doomed never heartbeats: its lease runs out.
      const lost = await waitFor(
        async () => {
          const a = await client.getAllocation(first.id);
          return a.clientStatus === 'lost' ? a : undefined;
        },
        { timeoutMs: 40_000, description: 'allocation marked lost' },
      );
      assert.match(lost.clientDescription ?? '', /down/);
      assert.equal((await client.getNode('node-doomed')).status, 'down');
      // Nowhere else has room until a new node arrives; then the lost instance is replaced there.
      await nodeApi.registerNode(registration('node-rescue', { resources: room }));
      live.add('node-rescue');
      const replacement = await waitFor(
        async () => (await client.jobAllocations('mover')).items.find((a) => a.previousAllocId === first.id),
        { timeoutMs: 30_000, description: 'replacement placed' },
      );
      assert.equal(replacement.nodeId, 'node-rescue');
    },
  );

  test('an unreachable server is a clear UnavailableError', async () => {
    const dead = new UnumClient({ addr: 'http://127.0.0.1:1' });
    await assert.rejects(dead.status(), (err: unknown) => {
      assert.ok(err instanceof UnavailableError);
      assert.match(err.message, /cannot reach the unum server/);
      return true;
    });
  });

  test('the OpenAPI document lists the routes', async () => {
    const doc = (await (
      await fetch(`${server.addr}/v1/openapi.json`, { headers: { authorization: `Bearer ${token}` } })
    ).json()) as {
      paths: Record<string, unknown>;
    };
    assert.ok(doc.paths['/v1/jobs']);
    assert.ok(doc.paths['/v1/allocations/{id}/logs']);
    assert.ok(doc.paths['/v1/nodes/{id}/stats']);
  });

  test("a node's GPUs are kept as devices, and its GPU attributes work in constraints", async () => {
    const gpu = {
      type: 'gpu' as const,
      vendor: 'nvidia',
      id: 'GPU-0f7e2c1a',
      name: 'NVIDIA A100-SXM4-40GB',
      index: 0,
      memoryMiB: 40960,
    };
    live.add('node-gpu');
    await nodeApi.registerNode(
      registration('node-gpu', {
        attributes: { os: 'linux', hostname: 'node-gpu', 'gpu.count': '1', 'gpu.0.name': gpu.name },
        devices: [gpu],
      }),
    );
    assert.deepEqual((await client.getNode('node-gpu')).devices, [gpu]);
    assert.equal((await client.getNode('node-a')).devices, undefined, 'no devices: no field');
    await client.submitJob(
      job('trainer', {
        type: 'batch',
        constraints: [{ attribute: 'gpu.count', operator: '=', value: '1' }],
        groups: [{ name: 'g', count: 1, tasks: [{ name: 't', command: 'true' }] }],
      }),
    );
    const placed = await waitFor(async () => (await client.jobAllocations('trainer')).items[0]);
    assert.equal(placed.nodeId, 'node-gpu');
    await client.stopJob('trainer', { purge: true });
    live.delete('node-gpu');
  });

  test("GET /v1/nodes/:id/stats asks the node's agent, and says so when it can not be reached", async () => {
    const stats: NodeStats = {
      nodeId: 'node-stats',
      time: 1,
      allocations: { a1: { tasks: { t: { cpuNanos: 5, cpuPercent: 1.5, memoryBytes: 7, pids: 1 } } } },
    };
    const agent = createServer((req, res) => {
      assert.equal(req.url, '/v1/agent/stats');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
    });
    await new Promise<void>((resolve) => agent.listen(0, '127.0.0.1', resolve));
    try {
      live.add('node-stats');
      const address = `http://127.0.0.1:${(agent.address() as AddressInfo).port}`;
      await nodeApi.registerNode(registration('node-stats', { address }));
      assert.deepEqual(await client.nodeStats('node-stats'), stats);
      // node-a's agent address answers nothing.
      await assert.rejects(client.nodeStats('node-a'), (err: Error) => {
        assert.ok(err instanceof UnavailableError);
        assert.match(err.message, /cannot reach the agent of node node-a at http:\/\/127\.0\.0\.1:9/);
        return true;
      });
      await assert.rejects(client.nodeStats('no-such-node'), NotFoundError);
    } finally {
      live.delete('node-stats');
      agent.closeAllConnections();
      await new Promise((resolve) => agent.close(resolve));
    }
  });

  test('a node acts only for itself: forged registrations, heartbeats and reports are refused', async () => {
    const b = await nodeApi.registerNode(registration('node-b'));
    assert.ok(b.credential?.secret.startsWith('unum-node-'), 'a new node gets its credential once');
    assert.ok(b.credential?.agentKey.startsWith('unum-agent-'));
    const again = await nodeApi.registerNode(registration('node-b'));
    assert.equal(again.credential, undefined, 'not given a second time');
    const asB = asNode('node-b');
    const anonymous = new UnumClient({ addr: server.addr, token: () => undefined });
    const forged = new UnumClient({ addr: server.addr, token: 'unum-node-made-up' });

    // Taking over node-a's registration: without a credential, with another node's, with a made-up one.
    await assert.rejects(
      anonymous.registerNode(registration('node-a', { address: 'http://evil:1' })),
      UnauthenticatedError,
    );
    await assert.rejects(
      asB.registerNode(registration('node-a', { address: 'http://evil:1' })),
      ForbiddenError,
    );
    await assert.rejects(forged.registerNode(registration('node-a')), UnauthenticatedError);
    assert.notEqual((await client.getNode('node-a')).address, 'http://evil:1');

    await assert.rejects(anonymous.heartbeat('node-a'), UnauthenticatedError);
    await assert.rejects(asB.heartbeat('node-a'), ForbiddenError);
    await assert.rejects(asB.nodeAllocations('node-a'), ForbiddenError);
    await assert.rejects(
      asB.updateAllocations('node-a', [{ allocId: 'x', clientStatus: 'failed', taskStates: {} }]),
      ForbiddenError,
    );
    // A node's credential is for node routes only.
    await assert.rejects(asB.submitJob(job('by-a-node')), ForbiddenError);

    const nodes = JSON.stringify(await client.listNodes());
    assert.ok(
      !nodes.includes(b.credential!.secret) && !nodes.includes(b.credential!.agentKey),
      'never served',
    );
  });

  test('deny by default: no token, a revoked one or one without the right is refused; policies grant per namespace', async () => {
    const anonymous = new UnumClient({ addr: server.addr, token: () => undefined });
    await assert.rejects(anonymous.listJobs(), UnauthenticatedError);
    await assert.rejects(anonymous.aclBootstrap(), /bootstrapped already/);
    await client.submitJob({ ...job('secret-web'), namespace: 'team-b' });

    await client.applyAclPolicy('team-a', {
      rules: [{ namespace: 'team-a', capabilities: ['job:read', 'job:write', 'logs:read', 'event:read'] }],
    });
    // Bad ACL input is a 400 that says what is wrong, and makes nothing.
    for (const ttl of ['1', '-5s', `${'9'.repeat(400)}h`, '20000d'])
      await assert.rejects(client.createAclToken({ name: 'bad', ttl }), InvalidError, ttl);
    await assert.rejects(client.applyAclPolicy('Not A Name', { rules: [] }), InvalidError);
    assert.ok(!(await client.aclTokens()).items.some((t) => t.name === 'bad'));
    const made = await client.createAclToken({ name: 'alice', policies: ['team-a'] });
    const alice = new UnumClient({ addr: server.addr, token: made.secret });
    assert.equal((await alice.aclSelf()).name, 'alice');
    await alice.submitJob({ ...job('mine'), namespace: 'team-a' });
    assert.ok((await alice.listJobs({ namespace: 'team-a' })).items.some((i) => i.job.id === 'mine'));
    await assert.rejects(alice.getJob('secret-web', { namespace: 'team-b' }), ForbiddenError);
    await assert.rejects(alice.listJobs({ namespace: 'team-b' }), ForbiddenError);
    await assert.rejects(alice.listJobs({ namespace: '*' }), ForbiddenError);
    await assert.rejects(alice.submitJob({ ...job('sneak'), namespace: 'team-b' }), ForbiddenError);
    await assert.rejects(alice.listNodes(), ForbiddenError, 'cluster-wide rights need namespace "*"');
    // Objects of another namespace found by id, and listings of every namespace, are refused too.
    const bAlloc = await waitFor(
      async () => (await client.jobAllocations('secret-web', { namespace: 'team-b' })).items[0],
    );
    await assert.rejects(alice.getAllocation(bAlloc.id), ForbiddenError);
    await assert.rejects(alice.listAllocations(), ForbiddenError);
    await assert.rejects(alice.listEvaluations(), ForbiddenError);
    const bEval = (await client.listEvaluations({ namespace: 'team-b' })).items[0]!;
    await assert.rejects(alice.getEvaluation(bEval.id), ForbiddenError);
    await assert.rejects(alice.events({ limit: 10 }), ForbiddenError);
    // Its namespace's events only: not the cluster's own (nodes, ACLs), which have no namespace.
    const seen = (await alice.events({ namespace: 'team-a', limit: 1000 })).events;
    assert.ok(seen.some((e) => e.jobId === 'mine'));
    assert.deepEqual(
      seen.filter((e) => e.namespace !== 'team-a'),
      [],
      'events of no namespace or of another one',
    );
    // A token that may write jobs still may not change ACLs (it could grant itself anything).
    await assert.rejects(alice.createAclToken({ name: 'escalate', management: true }), ForbiddenError);
    await assert.rejects(
      alice.applyAclPolicy('team-a', { rules: [{ namespace: '*', capabilities: ['operator:write'] }] }),
      ForbiddenError,
    );

    const tokens = JSON.stringify(await client.aclTokens());
    assert.ok(!tokens.includes(made.secret), 'secrets are never listed');
    await client.revokeAclToken(made.token.accessor);
    await assert.rejects(alice.listJobs({ namespace: 'team-a' }), UnauthenticatedError);
    const events = (await client.events({ limit: 1000 })).events.filter((e) => e.topic === 'acl');
    assert.ok(
      events.some((e) => e.type === 'acl-token-revoked' && e.actor?.startsWith('token:')),
      'who did it is recorded',
    );
  });

  test("a task's workload identity: fetched by its own node only, verifiable offline, grants nothing else", async () => {
    await client.submitJob({ ...job('ident'), namespace: 'team-i' });
    if (!nodeClients.has('node-b')) await nodeApi.registerNode(registration('node-b'));
    const a = await waitFor(async () =>
      (await client.jobAllocations('ident', { namespace: 'team-i' })).items.find(
        (x) => x.desiredStatus === 'run',
      ),
    );
    const { tokens, expiresAt } = await asNode(a.nodeId).allocIdentity(a.nodeId, a.id);
    const token = tokens['server'];
    assert.ok(token, 'a token for each task');
    assert.ok(expiresAt > Date.now());
    // Anyone can check it offline against the published keys.
    const { payload } = await jwtVerify(token, createLocalJWKSet((await client.jwks()) as JSONWebKeySet), {
      issuer: 'unum',
      audience: 'unum',
    });
    assert.equal(payload['namespace'], 'team-i');
    assert.equal(payload['alloc'], a.id);
    assert.equal(payload['task'], 'server');

    const task = new UnumClient({ addr: server.addr, token });
    assert.equal((await task.identitySelf())['job'], 'ident');
    await assert.rejects(task.listJobs({ namespace: 'team-i' }), ForbiddenError, 'not even its own job');
    await assert.rejects(task.getJob('secret-web', { namespace: 'team-b' }), ForbiddenError);
    const tampered = `${token.slice(0, -4)}AAAA`;
    await assert.rejects(
      new UnumClient({ addr: server.addr, token: tampered }).identitySelf(),
      UnauthenticatedError,
    );

    // Another node cannot get it.
    const other = a.nodeId === 'node-a' ? 'node-b' : 'node-a';
    await assert.rejects(asNode(other).allocIdentity(other, a.id), ForbiddenError);
    await assert.rejects(asNode(other).allocIdentity(a.nodeId, a.id), ForbiddenError);
  });
});

export type { Allocation };
