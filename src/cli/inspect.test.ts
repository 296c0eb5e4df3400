/**
 * The inspection verbs (status, ps, logs, nodes, stop, events) against a scripted fake of the HTTP
 * API. (End-to-end tests against a real server live in test/.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { JobDetail, NodeStats } from '../api/types.ts';
import type { Allocation, Node, PlacementFailure } from '../core/types.ts';
import {
  NODE,
  NOW,
  clock,
  detail,
  event,
  fakeApi,
  mkAlloc,
  mkJob,
  notFound,
  steps,
  task,
  unum,
} from './command-fixtures.ts';

test('status JOB shows the job, why instances are pending, its allocations and their task events', async () => {
  const job = mkJob();
  const restarted = mkAlloc(job, 0, {
    taskStates: {
      server: task({
        restarts: 1,
        events: [
          { time: NOW - 20_000, type: 'terminated', message: 'exited with code 137 (OOM killed)' },
          { time: NOW - 19_000, type: 'restarting', message: 'restarting in 1s (restart 1 of 3)' },
        ],
      }),
    },
  });
  const failure: PlacementFailure = {
    unplaced: 1,
    nodesEvaluated: 1,
    nodesFiltered: {},
    nodesExhausted: { memory: 1 },
    summary: 'no node has 256 MiB free',
  };
  const api = await fakeApi({
    'GET /v1/jobs/:id': () => detail(job, { web: failure }),
    'GET /v1/jobs/:id/allocations': () => ({ items: [restarted], index: 5 }),
    'GET /v1/nodes': () => ({ items: [NODE], index: 5 }),
  });
  try {
    const r = await unum(api, ['status', 'web']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Type\s+service$/m);
    assert.match(r.stdout, /^Submitted\s+1m ago/m);
    assert.match(r.stdout, /^ {2}1 instance cannot be placed \(group web\): no node has 256 MiB free$/m);
    assert.match(r.stdout, /^ID\s+NAME\s+NODE\s+STATUS\s+DESIRED\s+VERSION\s+PORTS\s+RESTARTS\s+AGE$/m);
    assert.match(
      r.stdout,
      /^00000000\s+web\.web\[0\]\s+vm1\s+running\s+run\s+0\s+http=127\.0\.0\.1:23000\s+1\s+30s$/m,
    );
    assert.match(
      r.stdout,
      /^\d\d:\d\d:\d\d\s+00000000\s+server\s+terminated\s+exited with code 137 \(OOM killed\)$/m,
    );
    assert.match(r.stdout, /restarting\s+restarting in 1s/);

    const asJson = JSON.parse((await unum(api, ['status', 'web', '--json'])).stdout) as JobDetail & {
      allocations: Allocation[];
    };
    assert.equal(asJson.job.spec.priority, 50, 'defaults applied are visible');
    assert.equal(asJson.allocations[0]?.id, restarted.id);
  } finally {
    await api.close();
  }
});

test('status lists the jobs of the namespace', async () => {
  const api = await fakeApi({
    'GET /v1/jobs': (req) => {
      assert.equal(req.query.get('namespace'), 'default');
      return {
        items: [
          {
            job: mkJob({ id: 'web' }),
            summary: { desired: 3, running: 2, pending: 1, complete: 0, failed: 0, lost: 0 },
          },
          {
            job: mkJob({ id: 'api', version: 12 }),
            summary: { desired: 1, running: 1, pending: 0, complete: 0, failed: 0, lost: 0 },
          },
        ],
        index: 1,
      };
    },
  });
  try {
    const r = await unum(api, ['status']);
    assert.equal(r.code, 0);
    assert.deepEqual(r.stdout.trimEnd().split('\n'), [
      'ID   TYPE     STATUS   RUNNING/DESIRED  VERSION  SUBMITTED',
      'api  service  running              1/1       12  1m ago',
      'web  service  running              2/3        0  1m ago',
    ]);
  } finally {
    await api.close();
  }
});

test('ps shows running allocations cluster-wide with pids, CPU, memory, ports and restarts', async () => {
  const web = mkJob();
  const running = mkAlloc(web, 1, { taskStates: { server: task({ pid: 101, restarts: 2 }) } });
  const api = await fakeApi({
    'GET /v1/nodes': () => ({ items: [NODE], index: 1 }),
    'GET /v1/allocations': (req) => {
      assert.equal(req.query.get('namespace'), null, 'all namespaces unless -n');
      return {
        items: [
          running,
          mkAlloc(web, 0, { clientStatus: 'complete', taskStates: { server: task({ state: 'dead' }) } }),
        ],
        index: 1,
      };
    },
    'GET /v1/nodes/:id/stats': (_req, params) => {
      assert.equal(params['id'], NODE.id);
      return {
        nodeId: NODE.id,
        time: NOW,
        allocations: {
          [running.id]: {
            tasks: {
              server: { cpuNanos: 9e9, cpuPercent: 12.4, memoryBytes: 30 * 1024 * 1024, pids: 2 },
              sidecar: { cpuNanos: 1e9, cpuPercent: 0.3, memoryBytes: 4.5 * 1024 * 1024, pids: 1 },
            },
            disk: { usedBytes: 3.2 * 1024 * 1024, limitBytes: 1024 ** 3, files: 12, measuredAt: NOW },
          },
        },
      } satisfies NodeStats;
    },
  });
  try {
    const r = await unum(api, ['ps']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split('\n'), [
      'ID        JOB  NAME        NODE  STATUS   PIDS  CPU    MEM         DISK  PORTS                 RESTARTS  AGE',
      '11111111  web  web.web[1]  vm1   running  101   13%  35MiB  3.2MiB/1GiB  http=127.0.0.1:23001         2  30s',
    ]);
    assert.equal(r.stderr, '');
    assert.equal(api.requests.filter((q) => q.path.endsWith('/stats')).length, 1, 'once per node');
  } finally {
    await api.close();
  }
});

test('ps shows "-" and a note for a node that does not answer, and still succeeds', async () => {
  const web = mkJob();
  const other: Node = { ...NODE, id: 'n0de0002-bbbb-4000-8000-000000000000', name: 'vm2' };
  const here = mkAlloc(web, 0, { taskStates: { server: task({ pid: 101 }) } });
  const there = mkAlloc(web, 1, { nodeId: other.id, taskStates: { server: task({ pid: 202 }) } });
  const api = await fakeApi({
    'GET /v1/nodes': () => ({ items: [NODE, other], index: 1 }),
    'GET /v1/allocations': () => ({ items: [here, there], index: 1 }),
    'GET /v1/nodes/:id/stats': (_req, params) =>
      params['id'] === NODE.id
        ? {
            nodeId: NODE.id,
            time: NOW,
            allocations: {
              [here.id]: { tasks: { server: { cpuNanos: 1, memoryBytes: 1024 * 1024, pids: 1 } } },
            },
          }
        : {
            httpStatus: 503,
            body: {
              error: {
                code: 'unavailable',
                message: 'node vm2 is not heartbeating: no usage figures from it',
              },
            },
          },
  });
  try {
    const r = await unum(api, ['ps']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split('\n'), [
      'ID        JOB  NAME        NODE  STATUS   PIDS  CPU     MEM  DISK  PORTS                 RESTARTS  AGE',
      '00000000  web  web.web[0]  vm1   running  101     -  1.0MiB     -  http=127.0.0.1:23000         0  30s',
      '11111111  web  web.web[1]  vm2   running  202     -       -     -  http=127.0.0.1:23001         0  30s',
    ]);
    assert.equal(
      r.stderr,
      'note: no usage from node vm2: node vm2 is not heartbeating: no usage figures from it\n',
    );
  } finally {
    await api.close();
  }
});

// --- logs ----------------------------------------------------------------------------------------

test('logs JOB tags every line with its allocation and keeps lines whole', async () => {
  const job = mkJob();
  const logs: Record<string, string[]> = {
    [`${mkAlloc(job, 0).id}/stdout`]: ['GET / 2', '00\nGET /x 404\n'],
    [`${mkAlloc(job, 0).id}/stderr`]: ['oops\n'],
    [`${mkAlloc(job, 1).id}/stdout`]: ['ready\nno newline'],
    [`${mkAlloc(job, 1).id}/stderr`]: [],
  };
  const api = await fakeApi({
    'GET /v1/jobs/:id': () => detail(job),
    'GET /v1/jobs/:id/allocations': () => ({ items: [mkAlloc(job, 1), mkAlloc(job, 0)], index: 3 }),
    'GET /v1/allocations/:id/logs': (req, p) => ({
      chunks: logs[`${p['id']}/${req.query.get('stream')}`] ?? [],
    }),
  });
  try {
    const r = await unum(api, ['logs', 'web']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split('\n'), [
      '[00000000 web.web[0]] GET / 200',
      '[00000000 web.web[0]] GET /x 404',
      '[00000000 web.web[0]] oops',
      '[11111111 web.web[1]] ready',
      '[11111111 web.web[1]] no newline',
    ]);
    const q = api.requests.find((x) => x.path.endsWith('/logs'))!.query;
    assert.equal(q.get('task'), 'server');
    assert.equal(q.get('follow'), 'false');
  } finally {
    await api.close();
  }
});

test('logs -f follows new instances of the job as they appear (a replacement after a crash)', async () => {
  const job = mkJob();
  const first = mkAlloc(job, 0, { clientStatus: 'failed' });
  const replacement = mkAlloc(job, 1, { name: 'web.web[0]', index: 0 });
  let replacementRead = false;
  const api = await fakeApi({
    'GET /v1/jobs/:id': () => detail({ ...job, status: replacementRead ? 'dead' : 'running' }),
    'GET /v1/jobs/:id/allocations': steps([[first], [first, replacement]]),
    'GET /v1/allocations/:id/logs': (req, p) => {
      assert.equal(req.query.get('follow'), 'true');
      if (p['id'] === replacement.id) {
        if (req.query.get('stream') === 'stdout') replacementRead = true;
        return { chunks: req.query.get('stream') === 'stdout' ? ['back up\n'] : [] };
      }
      return { chunks: req.query.get('stream') === 'stdout' ? ['crashing\n'] : [] };
    },
  });
  try {
    const r = await unum(api, ['logs', 'web', '-f', '--all']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split('\n').sort(), [
      '[00000000 web.web[0]] crashing',
      '[11111111 web.web[0]] back up',
    ]);
  } finally {
    await api.close();
  }
});

test('logs ALLOC_ID of a single task prints bare lines; an unknown name says what was looked for', async () => {
  const job = mkJob();
  const alloc = mkAlloc(job, 0);
  const api = await fakeApi({
    'GET /v1/jobs/:id': (_req, p) => notFound(`job ${p['id']} not found`),
    'GET /v1/allocations/:id': (_req, p) =>
      alloc.id.startsWith(p['id'] ?? '-') ? alloc : notFound('no alloc'),
    'GET /v1/allocations/:id/logs': (req) => ({
      chunks: req.query.get('stream') === 'stdout' ? ['plain\n'] : [],
    }),
  });
  try {
    const r = await unum(api, ['logs', '0000']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'plain\n');
    const missing = await unum(api, ['logs', 'nope']);
    assert.equal(missing.code, 1);
    assert.equal(
      missing.stderr,
      'error: no job "nope" in namespace default, and no allocation whose id starts with "nope"\n',
    );
  } finally {
    await api.close();
  }
});

// --- nodes, stop ---------------------------------------------------------------------------------

test('nodes shows status, eligibility, free and total resources, and the last heartbeat', async () => {
  const job = mkJob();
  const nodes: Node[] = [
    { ...NODE, reserved: { cpu: 0, memory: 1024 }, lastHeartbeat: NOW - 3000 },
    {
      ...NODE,
      id: 'n0de0002-aaaa-4000-8000-000000000000',
      name: 'vm2',
      eligibility: 'ineligible',
      drain: true,
      drainStrategy: { startedAt: NOW - 60_000, deadline: NOW + 3_540_000 },
      lastHeartbeat: NOW - 400,
    },
    {
      ...NODE,
      id: 'n0de0003-aaaa-4000-8000-000000000000',
      name: 'vm3',
      status: 'down',
      eligibility: 'ineligible',
      resources: { ...NODE.resources, disk: 0 },
      lastHeartbeat: NOW - 125_000,
    },
  ];
  const api = await fakeApi({
    'GET /v1/nodes': () => ({ items: nodes, index: 1 }),
    'GET /v1/allocations': () => ({
      items: [mkAlloc(job, 0), mkAlloc(job, 1), mkAlloc(job, 2, { clientStatus: 'complete' })],
      index: 1,
    }),
  });
  try {
    const r = await unum(api, ['nodes']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split('\n'), [
      'ID        NAME  ADDRESS                STATUS  ELIGIBILITY  CPU FREE/TOTAL  MEMORY FREE/TOTAL  DISK FREE/TOTAL  ALLOCS  HEARTBEAT',
      'n0de0001  vm1   http://127.0.0.1:8687  ready   eligible              3.8/4        6.5GiB/7GiB    7.8GiB/9.8GiB       2  3s ago',
      'n0de0002  vm2   http://127.0.0.1:8687  ready   draining                4/4          8GiB/8GiB    9.8GiB/9.8GiB       0  just now',
      'n0de0003  vm3   http://127.0.0.1:8687  down    ineligible              4/4          8GiB/8GiB                -       0  2m5s ago',
    ]);
    const asJson = await unum(api, ['nodes', '--json']);
    const doc = JSON.parse(asJson.stdout) as {
      items: Node[];
      allocated: Record<string, { allocations: number }>;
    };
    assert.deepEqual(
      doc.items.map((n) => [n.name, n.eligibility, n.drain]),
      [
        ['vm1', 'eligible', false],
        ['vm2', 'ineligible', true],
        ['vm3', 'ineligible', false],
      ],
    );
    assert.equal(doc.allocated[NODE.id]?.allocations, 2);
  } finally {
    await api.close();
  }
});

test('stop waits until no instance runs', async () => {
  const job = mkJob();
  const api = await fakeApi({
    'DELETE /v1/jobs/:id': () => ({ evalId: 'e' }),
    'GET /v1/jobs/:id/allocations': steps([
      [mkAlloc(job, 0, { desiredStatus: 'stop' }), mkAlloc(job, 1, { desiredStatus: 'stop' })],
      [mkAlloc(job, 0, { clientStatus: 'complete' }), mkAlloc(job, 1, { desiredStatus: 'stop' })],
      [mkAlloc(job, 0, { clientStatus: 'complete' }), mkAlloc(job, 1, { clientStatus: 'complete' })],
    ]),
  });
  try {
    const r = await unum(api, ['stop', 'web']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'web: stopped\n');
    assert.deepEqual(r.stderr.trimEnd().split('\n'), [
      'web: 2 still running, 0 stopped',
      'web: 1 still running, 1 stopped',
      'web: 0 still running, 2 stopped',
    ]);
  } finally {
    await api.close();
  }
});

// --- events --------------------------------------------------------------------------------------

test('events shows the most recent ones, oldest first', async () => {
  const history = [1, 4, 6, 9].map((i) => event(i));
  const api = await fakeApi({
    'GET /v1/status': () => ({ revision: 10 }),
    'GET /v1/events': (req) => {
      const after = Number(req.query.get('index'));
      const limit = Number(req.query.get('limit'));
      const events = history.filter((e) => e.index > after).slice(0, limit);
      return { events, index: events.at(-1)?.index ?? after };
    },
  });
  try {
    const r = await unum(api, ['events', '--limit', '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split('\n'), [
      'TIME      TOPIC       TYPE          OBJECT          MESSAGE',
      `${clock(NOW - 1000)}  allocation  alloc-placed  alloc 3f9a1c2e  event 6`,
      `${clock(NOW - 1000)}  allocation  alloc-placed  alloc 3f9a1c2e  event 9`,
    ]);
  } finally {
    await api.close();
  }
});

test('events -f resumes after the last event it saw when the stream ends', async () => {
  const interrupt = new AbortController();
  const api = await fakeApi({
    'GET /v1/events': () => ({
      events: [event(3, { topic: 'job', jobId: 'web', type: 'job-registered' })],
      index: 3,
    }),
    'GET /v1/events/stream': (req) => {
      const after = Number(req.query.get('index'));
      if (after >= 7) interrupt.abort();
      // Each connection carries one event, then the server goes away (a restart).
      return { chunks: [`data: ${JSON.stringify(event(after + 4))}\n\n`] };
    },
  });
  try {
    const r = await unum(api, ['events', '-f', '--index', '0'], interrupt.signal);
    assert.equal(r.code, 0, r.stderr);
    const streamed = api.requests
      .filter((q) => q.path === '/v1/events/stream')
      .map((q) => q.query.get('index'));
    assert.deepEqual(streamed, ['3', '7']);
    assert.match(r.stdout, /job web\s+job-registered|job-registered\s+job web/);
    assert.match(r.stdout, /event 7\n/);
  } finally {
    await api.close();
  }
});
