/**
 * The agent's loops against a small fake of the four node routes of our own API (register,
 * heartbeat, the blocking allocation list, status updates). The end-to-end test against the real
 * server lives under test/.
 */
import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, stat, utimes } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import type { AllocStatusUpdate, NodeRegistration, NodeStats } from '../api/types.ts';
import { silentLogger } from '../core/log.ts';
import type { Allocation } from '../core/types.ts';
import { waitFor } from '../testing/wait.ts';
import { requireExecDriverTools } from '../testing/tools.ts';
import { buildAllocDir } from './runner/alloc-dir.ts';
import { isAlive, tempDir, testAlloc, type TestAllocOptions } from './fixtures.ts';
import type { PersistedAlloc } from './state.ts';
import { startAgent, type AgentOptions, type RunningAgent } from './index.ts';

/** A call of the agent's API as a server makes it: with the agent key the cluster issued. */
function agentFetch(
  fake: FakeServer,
  agent: { address: string; nodeId: string },
  path: string,
): Promise<Response> {
  const key = fake.credentials.get(agent.nodeId)?.agentKey ?? '';
  return fetch(`${agent.address}${path}`, { headers: { authorization: `Bearer ${key}` } });
}

class FakeServer {
  readonly registrations: NodeRegistration[] = [];
  readonly batches: AllocStatusUpdate[][] = [];
  readonly known = new Set<string>();
  readonly allocs = new Map<string, Allocation>();
  /** The credential issued to each node at its first registration, as the real server does. */
  readonly credentials = new Map<string, { secret: string; agentKey: string }>();
  /** Node routes called without the node's own secret. */
  unauthenticated = 0;
  heartbeats = 0;
  index = 1;
  private waiters: (() => void)[] = [];
  private server: Server | undefined;
  url = '';

  async listen(port = 0): Promise<void> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        res.statusCode = 500;
        res.end(JSON.stringify({ error: { code: 'internal', message: String(err) } }));
      });
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    this.server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    for (const w of this.waiters.splice(0)) w();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }

  put(alloc: Allocation): void {
    this.allocs.set(alloc.id, alloc);
    this.bump();
  }

  remove(id: string): void {
    this.allocs.delete(id);
    this.bump();
  }

  /** The latest status the agent reported for an allocation. */
  latest(allocId: string): AllocStatusUpdate | undefined {
    for (let i = this.batches.length - 1; i >= 0; i--) {
      const u = this.batches[i]?.find((x) => x.allocId === allocId);
      if (u !== undefined) return u;
    }
    return undefined;
  }

  private bump(): void {
    this.index += 1;
    for (const w of this.waiters.splice(0)) w();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length > 0 ? (JSON.parse(Buffer.concat(chunks).toString()) as unknown) : undefined;
    const send = (status: number, value: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    const notFound = (): void => send(404, { error: { code: 'not_found', message: 'node not found' } });
    let m: RegExpExecArray | null;
    const nodeOfPath = /^\/v1\/nodes\/([^/]+)\//.exec(url.pathname)?.[1];
    if (nodeOfPath !== undefined && nodeOfPath !== 'register') {
      const cred = this.credentials.get(nodeOfPath);
      if (cred !== undefined && req.headers.authorization !== `Bearer ${cred.secret}`) {
        this.unauthenticated += 1;
        return send(401, { error: { code: 'unauthenticated', message: 'not this node' } });
      }
    }
    if (req.method === 'POST' && url.pathname === '/v1/nodes/register') {
      const reg = body as NodeRegistration;
      this.registrations.push(reg);
      this.known.add(reg.id);
      let issued: { secret: string; agentKey: string } | undefined;
      if (!this.credentials.has(reg.id)) {
        issued = { secret: `unum-node-${randomUUID()}`, agentKey: `unum-agent-${randomUUID()}` };
        this.credentials.set(reg.id, issued);
      }
      send(200, {
        node: { ...reg, status: 'ready' },
        heartbeatTtlSeconds: 1,
        ...(issued !== undefined ? { credential: issued } : {}),
      });
    } else if (req.method === 'POST' && (m = /^\/v1\/nodes\/([^/]+)\/heartbeat$/.exec(url.pathname))) {
      if (!this.known.has(m[1]!)) return notFound();
      this.heartbeats += 1;
      send(200, { ttlSeconds: 1 });
    } else if (req.method === 'GET' && (m = /^\/v1\/nodes\/([^/]+)\/allocations$/.exec(url.pathname))) {
      const nodeId = m[1]!;
      if (!this.known.has(nodeId)) return notFound();
      const index = Number(url.searchParams.get('index') ?? 0);
      const waitMs = Number((url.searchParams.get('wait') ?? '0ms').replace('ms', ''));
      if (index >= this.index)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, waitMs);
          this.waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      send(200, { items: [...this.allocs.values()].filter((a) => a.nodeId === nodeId), index: this.index });
    } else if (
      req.method === 'POST' &&
      (m = /^\/v1\/nodes\/([^/]+)\/allocations\/status$/.exec(url.pathname))
    ) {
      if (!this.known.has(m[1]!)) return notFound();
      const { updates } = body as { updates: AllocStatusUpdate[] };
      this.batches.push(updates);
      for (const u of updates) {
        const a = this.allocs.get(u.allocId);
        if (a !== undefined)
          this.allocs.set(a.id, { ...a, clientStatus: u.clientStatus, taskStates: u.taskStates });
      }
      // Like the real server, a status change is a change of the node's allocations.
      this.bump();
      send(200, { index: this.index });
    } else send(404, { error: { code: 'not_found', message: `no route ${req.method} ${url.pathname}` } });
  }
}

void describe('agent', () => {
  before(requireExecDriverTools);
  let dir: { path: string; cleanup: () => Promise<void> };
  let fake: FakeServer;
  const agents: RunningAgent[] = [];

  before(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.stop({ killTasks: true })));
    await fake.close();
  });
  after(async () => {
    await dir.cleanup();
  });

  let dataDirs = 0;
  /** Starts an agent (on a fresh data dir unless one is given) against a fresh fake server. */
  async function start(over: Partial<AgentOptions> = {}, keepFake = false): Promise<RunningAgent> {
    if (!keepFake) {
      fake = new FakeServer();
      await fake.listen();
    }
    const agent = await startAgent({
      dataDir: join(dir.path, `data-${++dataDirs}`),
      servers: [fake.url],
      httpAddr: '127.0.0.1:0',
      logger: silentLogger(),
      // Allocation networks have their own tests (network/); these agents share the host's.
      network: { mode: 'host' },
      ...over,
    });
    agents.push(agent);
    return agent;
  }

  function place(agent: RunningAgent, opts: Omit<TestAllocOptions, 'nodeId'>): Allocation {
    const alloc = testAlloc({ ...opts, nodeId: agent.nodeId });
    fake.put(alloc);
    return alloc;
  }

  const runningPid = (allocId: string): Promise<number> =>
    waitFor(
      () => {
        const u = fake.latest(allocId);
        return u?.clientStatus === 'running' ? Object.values(u.taskStates)[0]?.pid : undefined;
      },
      { description: 'the allocation to be reported running' },
    );

  void test('registers the node with its fingerprint and keeps the node id across restarts', async () => {
    const dataDir = join(dir.path, 'kept');
    const agent = await start({ dataDir, name: 'box-1', reserved: { cpu: 500, memory: 256 } });
    const reg = fake.registrations[0]!;
    assert.equal(reg.id, agent.nodeId);
    assert.equal(reg.name, 'box-1');
    assert.equal(reg.address, agent.address);
    assert.match(agent.address, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(reg.resources.cpu, os.cpus().length * 1000);
    assert.equal(reg.resources.memory, Math.floor(os.totalmem() / 1024 / 1024));
    assert.ok(reg.resources.disk > 0);
    assert.deepEqual(reg.reserved, { cpu: 500, memory: 256 });
    assert.deepEqual(reg.portRange, { min: 20000, max: 32000 });
    assert.equal(reg.attributes['os'], process.platform);
    assert.equal(reg.attributes['arch'], process.arch);
    assert.equal(reg.attributes['kernel'], os.release());
    assert.equal(reg.attributes['cpu.cores'], String(os.cpus().length));
    assert.ok(['v1', 'v2', 'none'].includes(reg.attributes['cgroup.version'] ?? ''));
    assert.equal(reg.attributes['driver.exec'], '1');
    assert.equal(reg.attributes['driver.raw_exec'], undefined, 'raw_exec is off unless enabled');
    assert.equal(reg.drivers['exec']?.healthy, true);
    assert.equal(reg.drivers['raw_exec']?.healthy, false);
    const health = (await (await agentFetch(fake, agent, `/v1/agent/health`)).json()) as { nodeId: string };
    assert.equal(health.nodeId, agent.nodeId);
    await waitFor(() => fake.heartbeats > 0, { description: 'a heartbeat' });
    assert.equal((await readFile(join(dataDir, 'agent', 'node-id'), 'utf8')).trim(), agent.nodeId);
    assert.equal(reg.attributes['disk.mib'], String(reg.resources.disk));
    assert.ok(Number(reg.attributes['disk.total.mib']) >= Number(reg.attributes['disk.free.mib']));
    assert.ok(['true', 'false'].includes(reg.attributes['driver.exec.isolated'] ?? ''));
    // The agent's API answers only its servers: no key, a wrong key, a node's own secret are refused.
    for (const authorization of [
      undefined,
      'Bearer unum-agent-wrong',
      `Bearer ${fake.credentials.get(agent.nodeId)?.secret}`,
    ]) {
      const res = await fetch(
        `${agent.address}/v1/agent/stats`,
        authorization ? { headers: { authorization } } : {},
      );
      assert.equal(res.status, 401, `refused with ${authorization ?? 'no key'}`);
    }
    const kept = await stat(join(dataDir, 'agent', 'credential.json'));
    assert.equal(kept.mode & 0o777, 0o600, 'the credential file is private');
    assert.equal(fake.unauthenticated, 0, 'every node route was called with the node secret');

    await agent.stop();
    await fake.close();
    const again = await start({ dataDir, enableRawExec: true });
    assert.equal(again.nodeId, agent.nodeId);
    assert.equal(fake.registrations[0]?.attributes['driver.raw_exec'], '1');
  });

  void test('runs an allocation, reports it running, serves its logs, and stops it when the server says so', async () => {
    const agent = await start();
    const alloc = place(agent, {
      tasks: [{ name: 'web', command: 'sh', args: ['-c', 'echo hello; exec sleep 300'] }],
    });
    const pid = await runningPid(alloc.id);
    assert.equal(fake.latest(alloc.id)?.taskStates['web']?.state, 'running');

    const logs = await waitFor(async () => {
      const text = await (
        await agentFetch(fake, agent, `/v1/agent/allocations/${alloc.id}/logs?task=web`)
      ).text();
      return text === 'hello\n' && text;
    });
    assert.equal(logs, 'hello\n');

    fake.put({
      ...fake.allocs.get(alloc.id)!,
      desiredStatus: 'stop',
      desiredDescription: 'job stopped by user',
    });
    const done = await waitFor(() =>
      fake.latest(alloc.id)?.clientStatus === 'complete' ? fake.latest(alloc.id) : undefined,
    );
    assert.equal(done.clientDescription, 'stopped by server: job stopped by user');
    assert.equal(isAlive(pid), false);
    // Every status report made the server answer the watch again with the same allocation: still one start.
    assert.ok(fake.batches.length >= 3);
    assert.equal(done.taskStates['web']?.events.filter((e) => e.type === 'started').length, 1);
  });

  void test('an allocation that vanishes from the server is stopped, and its state file removed', async () => {
    const agent = await start();
    const alloc = place(agent, { tasks: [{ name: 'web', command: 'sleep', args: ['300'] }] });
    const pid = await runningPid(alloc.id);
    const stateFile = join(dir.path, `data-${dataDirs}`, 'agent', 'state', `${alloc.id}.json`);
    const saved = JSON.parse(await readFile(stateFile, 'utf8')) as PersistedAlloc;
    assert.equal(saved.tasks['web']?.state.pid, pid, 'the running process is on disk');
    fake.remove(alloc.id);
    await waitFor(() => !isAlive(pid), { description: 'the task to be stopped' });
    await waitFor(() => !existsSync(stateFile), { description: 'the state file removed' });
    assert.equal(
      existsSync(join(dir.path, `data-${dataDirs}`, 'agent', 'allocs', alloc.id)),
      true,
      'logs stay',
    );
  });

  void test('does not start allocations that are stopped or already finished', async () => {
    const agent = await start();
    const stopped = testAlloc({
      nodeId: agent.nodeId,
      tasks: [{ name: 't', command: 'sleep', args: ['300'] }],
    });
    fake.put({ ...stopped, desiredStatus: 'stop' });
    const finished = testAlloc({
      nodeId: agent.nodeId,
      tasks: [{ name: 't', command: 'sleep', args: ['300'] }],
    });
    fake.put({ ...finished, clientStatus: 'complete' });
    const marker = place(agent, { type: 'batch', tasks: [{ name: 't', command: 'true' }] });
    await waitFor(() => fake.latest(marker.id)?.clientStatus === 'complete');
    assert.equal(fake.latest(stopped.id), undefined);
    assert.equal(fake.latest(finished.id), undefined);
  });

  void test('registers again when the server forgets the node, and re-sends the current status', async () => {
    const agent = await start();
    const alloc = place(agent, { tasks: [{ name: 'web', command: 'sleep', args: ['300'] }] });
    const pid = await runningPid(alloc.id);
    const batchesBefore = fake.batches.length;
    fake.known.clear();
    await waitFor(() => fake.registrations.length === 2, { description: 'a second registration' });
    await waitFor(() => fake.batches.slice(batchesBefore).some((b) => b.some((u) => u.allocId === alloc.id)));
    assert.equal(isAlive(pid), true, 'tasks keep running meanwhile');
  });

  void test('keeps trying to register until a server answers, failing over between servers', async () => {
    const down = new FakeServer();
    await down.listen();
    const deadUrl = down.url;
    await down.close();
    fake = new FakeServer();
    await fake.listen();
    const agent = await startAgent({
      dataDir: join(dir.path, 'failover'),
      servers: [deadUrl, fake.url],
      httpAddr: '127.0.0.1:0',
      logger: silentLogger(),
      network: { mode: 'host' },
    });
    agents.push(agent);
    await waitFor(() => fake.registrations.length > 0, {
      description: 'registration through the second server',
    });
    assert.equal(fake.registrations[0]?.id, agent.nodeId);
  });

  void test('stop() leaves the tasks running; the next agent re-attaches to them and starts nothing twice', async () => {
    const dataDir = join(dir.path, 'durable');
    const agent = await start({ dataDir });
    const alloc = place(agent, {
      tasks: [{ name: 'web', command: 'sh', args: ['-c', 'echo one; read x; echo two; exec sleep 300'] }],
    });
    const pid = await runningPid(alloc.id);
    await agent.stop();
    assert.equal(isAlive(pid), true, 'the task outlives the agent');
    agents.splice(agents.indexOf(agent), 1);
    // The server still lists the allocation as running: the new agent takes it over, not a copy.
    const batches = fake.batches.length;
    const next = await start({ dataDir }, true);
    const reattached = await waitFor(() => {
      const u = fake.batches
        .slice(batches)
        .flat()
        .findLast((x) => x.allocId === alloc.id);
      return u?.taskStates['web']?.events.some((e) => e.type === 'reattached') ? u : undefined;
    });
    assert.equal(reattached.clientStatus, 'running');
    const web = reattached.taskStates['web']!;
    assert.equal(web.state, 'running');
    assert.equal(web.pid, pid);
    assert.equal(web.events.filter((e) => e.type === 'started').length, 1);
    assert.equal(web.events.at(-1)?.message, `re-attached after an agent restart (pid ${pid})`);
    await next.stop({ killTasks: true });
    agents.splice(agents.indexOf(next), 1);
    assert.equal(isAlive(pid), false, 'stop({ killTasks: true }) stops them');
    assert.equal(fake.latest(alloc.id)?.clientStatus, 'running', 'and reports nothing for them');
  });

  void test('logs rotate at the limit and stay readable in order through the endpoint', async () => {
    const agent = await start({ logMaxBytes: 32 * 1024, logMaxFiles: 4 });
    const alloc = place(agent, {
      type: 'batch',
      tasks: [
        {
          name: 'chatty',
          command: 'sh',
          args: ['-c', 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); echo $i; done; read x'],
        },
      ],
    });
    const logs = join(dir.path, `data-${dataDirs}`, 'agent', 'allocs', alloc.id, 'chatty', 'logs');
    await waitFor(() => fake.latest(alloc.id)?.clientStatus === 'running');
    const text = await waitFor(
      async () => {
        const read = async () =>
          (await agentFetch(fake, agent, `/v1/agent/allocations/${alloc.id}/logs`)).text();
        // Written to the end, rotated, and the oldest output dropped; read twice alike, so that no
        // rotation happened while the files were read one after the other.
        const t = await read();
        const done =
          t.endsWith('\n20000\n') && !t.startsWith('1\n') && existsSync(join(logs, 'stdout.log.1'));
        return done && (await read()) === t ? t : undefined;
      },
      { description: 'all output written and rotated' },
    );
    const lines = text.split('\n').slice(0, -1).map(Number);
    for (let i = 1; i < lines.length; i++)
      assert.ok(
        lines[i]! > lines[i - 1]!,
        `in order at line ${i}: ${lines.slice(Math.max(0, i - 3), i + 3).join(',')}`,
      );
    assert.equal(existsSync(join(logs, 'stdout.log.4')), false, 'at most logMaxFiles files');
    const tail = await agentFetch(fake, agent, `/v1/agent/allocations/${alloc.id}/logs?tail=2`);
    assert.equal(await tail.text(), '19999\n20000\n');
  });

  void test('a task flooding its output: its log files never pass the limit, and the tail is served in order', async () => {
    const agent = await start({ logMaxBytes: 1024 * 1024, logMaxFiles: 2 });
    const alloc = place(agent, {
      type: 'batch',
      tasks: [
        {
          name: 'flood',
          command: 'sh',
          // 256 MiB of `yes` as fast as it goes, then numbered lines.
          args: ['-c', 'yes | head -c 268435456; seq 1 5000'],
        },
      ],
    });
    const logs = join(dir.path, `data-${dataDirs}`, 'agent', 'allocs', alloc.id, 'flood', 'logs');
    let looks = 0;
    let most = 0;
    await waitFor(
      async () => {
        // Looked at all along (each file at most logMaxBytes / logMaxFiles, whenever it is looked at).
        let total = 0;
        for (const name of ['stdout.log', 'stdout.log.1', 'stdout.log.2'])
          total += await stat(join(logs, name)).then(
            (st) => st.size,
            () => 0,
          );
        most = Math.max(most, total);
        looks += 1;
        return fake.latest(alloc.id)?.clientStatus === 'complete';
      },
      { timeoutMs: 120_000, description: 'the flood to end' },
    );
    assert.ok(looks > 1);
    assert.ok(most <= 1024 * 1024, `${most} bytes of log at most`);
    assert.equal(existsSync(join(logs, 'stdout.log.2')), false, 'at most logMaxFiles files');
    const kept = (await stat(join(logs, 'stdout.log'))).size + (await stat(join(logs, 'stdout.log.1'))).size;
    assert.ok(kept <= 1024 * 1024, `kept ${kept} bytes`);
    const tail = await agentFetch(fake, agent, `/v1/agent/allocations/${alloc.id}/logs?tail=5000`);
    const lines = (await tail.text()).split('\n').slice(0, -1);
    assert.deepEqual(
      lines,
      Array.from({ length: 5000 }, (_, i) => String(i + 1)),
    );
  });

  void test('directories of allocations that ended longer than the retention ago are removed at start', async () => {
    const dataDir = join(dir.path, 'gc');
    const allocs = join(dataDir, 'agent', 'allocs');
    await buildAllocDir(allocs, 'old-one', ['t']);
    await buildAllocDir(allocs, 'new-one', ['t']);
    const old = new Date(Date.now() - 3 * 60 * 60 * 1000);
    for (const p of ['', 'alloc', 't', 't/logs', 't/logs/stdout.log', 't/logs/stderr.log'])
      await utimes(join(allocs, 'old-one', p), old, old);
    await start({ dataDir, logRetentionMs: 60 * 60 * 1000 });
    await waitFor(() => !existsSync(join(allocs, 'old-one')), { description: 'the old dir removed' });
    assert.equal(existsSync(join(allocs, 'new-one')), true);
  });

  void test('GET /v1/agent/stats: usage of the running tasks, when the driver can measure it', async () => {
    const agent = await start({ statsIntervalMs: 50 });
    const alloc = place(agent, {
      tasks: [{ name: 'spin', command: 'sh', args: ['-c', 'while :; do :; done'] }],
    });
    await runningPid(alloc.id);
    const stats = await waitFor(
      async () => {
        const s = (await (await agentFetch(fake, agent, `/v1/agent/stats`)).json()) as NodeStats;
        return s.allocations[alloc.id]?.tasks['spin']?.cpuPercent !== undefined ? s : undefined;
      },
      { description: 'two usage samples (needs cgroups)' },
    );
    assert.equal(stats.nodeId, agent.nodeId);
    const spin = stats.allocations[alloc.id]!.tasks['spin']!;
    assert.ok(spin.cpuNanos > 0);
    assert.ok(spin.memoryBytes > 0);
    assert.ok(spin.pids >= 1);
    assert.ok(spin.cpuPercent! > 0, 'a busy loop uses CPU');
  });

  void test('rejects bad options naming the field', async () => {
    await assert.rejects(
      startAgent({ dataDir: dir.path, servers: [], httpAddr: 'nonsense', portRange: { min: 5, max: 1 } }),
      (err: Error) => {
        assert.match(err.message, /httpAddr: expected host:port/);
        assert.match(err.message, /servers: expected at least one server address/);
        assert.match(err.message, /portRange: expected 1 <= min <= max <= 65535, got 5-1/);
        return true;
      },
    );
    fake = new FakeServer();
  });
});
