/**
 * The verbs against a scripted fake of the HTTP API: what a person sees for a rollout that succeeds,
 * fails or cannot be placed, for status, ps and logs. (End-to-end tests against a real server live in
 * test/.) The fake answers blocking queries from a list of snapshots, one step per query, so the tests
 * never wait on time.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { JobDetail, Listed, NodeStats } from '../api/types.ts';
import { parseJobSpec } from '../core/job-spec.ts';
import type { Allocation, ClusterEvent, Job, Node, PlacementFailure, TaskState } from '../core/types.ts';
import { main } from './main.ts';

// --- a fake API ----------------------------------------------------------------------------------

interface Request {
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
}
type Reply = unknown | { httpStatus: number; body: unknown } | { chunks: string[] };
type Handler = (req: Request, params: Record<string, string>) => Reply | Promise<Reply>;

interface FakeApi {
  addr: string;
  requests: Request[];
  close(): Promise<void>;
}

async function fakeApi(routes: Record<string, Handler>): Promise<FakeApi> {
  const requests: Request[] = [];
  const table = Object.entries(routes).map(([key, handler]) => {
    const [method, pattern] = key.split(' ') as [string, string];
    const names: string[] = [];
    const re = new RegExp(
      `^${pattern.replace(/:(\w+)/g, (_, n: string) => {
        names.push(n);
        return '([^/]+)';
      })}$`,
    );
    return { method, re, names, handler };
  });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const request: Request = {
        method: req.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        body: text ? JSON.parse(text) : undefined,
      };
      requests.push(request);
      const route = table.find((r) => r.method === request.method && r.re.test(request.path));
      if (!route) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ error: { code: 'not_found', message: `no route ${req.method} ${url.pathname}` } }),
        );
        return;
      }
      const m = route.re.exec(request.path)!;
      const params = Object.fromEntries(route.names.map((n, i) => [n, decodeURIComponent(m[i + 1] ?? '')]));
      void Promise.resolve(route.handler(request, params)).then((reply) => {
        if (reply && typeof reply === 'object' && 'chunks' in reply) {
          res.writeHead(200, { 'content-type': 'text/plain' });
          for (const c of (reply as { chunks: string[] }).chunks) res.write(c);
          res.end();
          return;
        }
        const error = reply && typeof reply === 'object' && 'httpStatus' in reply;
        const status = error ? (reply as { httpStatus: number }).httpStatus : 200;
        const body = error ? (reply as unknown as { body: unknown }).body : reply;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    addr: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function notFound(message: string) {
  return { httpStatus: 404, body: { error: { code: 'not_found', message } } };
}

/** Answers a blocking query from a list of snapshots: query index i gets snapshot i (the last repeats). */
function steps<T>(snapshots: T[][]): Handler {
  return (req) => {
    const i = Number(req.query.get('index') ?? 0);
    const items = snapshots[Math.min(i, snapshots.length - 1)] ?? [];
    return { items, index: i + 1 } satisfies Listed<T>;
  };
}

// --- fixtures ------------------------------------------------------------------------------------

function mkJob(
  over: { id?: string; type?: 'service' | 'batch'; count?: number; version?: number; tasks?: string[] } = {},
): Job {
  const id = over.id ?? 'web';
  const spec = parseJobSpec({
    job: id,
    type: over.type ?? 'service',
    groups: [
      {
        name: 'web',
        count: over.count ?? 2,
        network: { ports: ['http'] },
        tasks: (over.tasks ?? ['server']).map((name) => ({ name, command: 'python3' })),
      },
    ],
  });
  return {
    id,
    namespace: 'default',
    version: over.version ?? 0,
    stop: false,
    status: 'running',
    submittedAt: NOW - 60_000,
    spec,
  };
}

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const NODE: Node = {
  id: 'n0de0001-aaaa-4000-8000-000000000000',
  name: 'vm1',
  address: 'http://127.0.0.1:8687',
  status: 'ready',
  drain: false,
  resources: { cpu: 4000, memory: 8192, disk: 10_000 },
  reserved: { cpu: 0, memory: 0 },
  attributes: {},
  drivers: {},
  portRange: { min: 20000, max: 32000 },
  registeredAt: 0,
  lastHeartbeat: 0,
};

function mkAlloc(job: Job, index: number, over: Partial<Allocation> = {}): Allocation {
  const group = job.spec.groups[0]!;
  return {
    id: `${String(index).repeat(8)}-0000-4000-8000-${job.id.padEnd(12, '0').slice(0, 12)}`,
    namespace: job.namespace,
    jobId: job.id,
    jobVersion: job.version,
    jobType: job.spec.type,
    name: `${job.id}.${group.name}[${index}]`,
    group: group.name,
    index,
    nodeId: NODE.id,
    groupSpec: group,
    resources: { cpu: 100, memory: 256, ports: [{ name: 'http', value: 23000 + index }] },
    desiredStatus: 'run',
    clientStatus: 'running',
    taskStates: {},
    evalId: 'eval-1',
    rescheduleEvents: [],
    createdAt: NOW - 30_000,
    modifiedAt: NOW - 30_000,
    ...over,
  };
}

function task(over: Partial<TaskState> = {}): TaskState {
  return { state: 'running', failed: false, restarts: 0, pid: 4242, events: [], ...over };
}

function detail(job: Job, placementFailures: Record<string, PlacementFailure> = {}): JobDetail {
  return {
    job,
    summary: { desired: 2, pending: 0, running: 2, complete: 0, failed: 0, lost: 0 },
    placementFailures,
  };
}

// --- running the CLI in-process ------------------------------------------------------------------

let dir = '';
let webFile = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'unum-cli-'));
  webFile = join(dir, 'web.yaml');
  await writeFile(
    webFile,
    'job: web\ngroups:\n  - name: web\n    count: 2\n    tasks:\n      - name: server\n        command: python3\n',
  );
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function unum(api: FakeApi, argv: string[], signal?: AbortSignal) {
  let stdout = '';
  let stderr = '';
  const code = await main(['--addr', api.addr, ...argv], {
    stdout: { write: (t) => void (stdout += t), isTTY: false },
    stderr: { write: (t) => void (stderr += t), isTTY: false },
    env: {},
    now: () => NOW,
    signal: signal ?? new AbortController().signal,
  });
  return { code, stdout, stderr };
}

// --- run -----------------------------------------------------------------------------------------

test('run FILE submits the raw document and follows the rollout until every instance runs', async () => {
  const job = mkJob();
  const api = await fakeApi({
    'POST /v1/jobs': () => ({ job, changed: true, evalId: 'eval-1' }),
    'GET /v1/jobs/:id/allocations': steps([
      [],
      [mkAlloc(job, 0, { clientStatus: 'pending' }), mkAlloc(job, 1, { clientStatus: 'pending' })],
      [mkAlloc(job, 0), mkAlloc(job, 1, { clientStatus: 'pending' })],
      [mkAlloc(job, 0), mkAlloc(job, 1)],
    ]),
    'GET /v1/evaluations/:id': () => ({ id: 'eval-1', status: 'complete' }),
    'GET /v1/jobs/:id': () => detail(job),
  });
  try {
    const r = await unum(api, ['run', webFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(api.requests[0]?.body, {
      job: {
        job: 'web',
        groups: [{ name: 'web', count: 2, tasks: [{ name: 'server', command: 'python3' }] }],
      },
    });
    // Not a terminal: one line per change, none repeated.
    assert.deepEqual(r.stderr.trimEnd().split('\n'), [
      'web: submitted version 0',
      'web v0: 0/2 running',
      'web v0: 0/2 running, 2 pending',
      'web v0: 1/2 running, 1 pending',
      'web v0: 2/2 running',
    ]);
    assert.match(r.stdout, /^web v0: running, 2 instances\. See "unum status web"\.$/m);
    // Blocking queries carry the index of the previous answer.
    const indexes = api.requests
      .filter((q) => q.path.endsWith('/allocations'))
      .map((q) => q.query.get('index'));
    assert.deepEqual(indexes, ['0', '1', '2', '3']);
  } finally {
    await api.close();
  }
});

test('run FILE exits 1 when an instance fails, naming it and its last task event', async () => {
  const job = mkJob();
  const failed = mkAlloc(job, 1, {
    clientStatus: 'failed',
    clientDescription: 'task "server" failed: restart attempts used up',
    taskStates: {
      server: task({
        state: 'dead',
        failed: true,
        events: [
          { time: NOW - 2000, type: 'terminated', message: 'exited with code 1', exitCode: 1 },
          { time: NOW - 1000, type: 'not-restarting', message: 'restart attempts used up' },
        ],
      }),
    },
  });
  const api = await fakeApi({
    'POST /v1/jobs': () => ({ job, changed: true, evalId: 'eval-1' }),
    'GET /v1/jobs/:id/allocations': steps([[mkAlloc(job, 0), failed]]),
  });
  try {
    const r = await unum(api, ['run', webFile]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^error: web v0 failed: instance web\.web\[1\] \(alloc 11111111\) failed on node n0de0001: task "server" failed: restart attempts used up$/m,
    );
    assert.match(r.stderr, /^ {2}task server at \d\d:\d\d:\d\d: terminated: exited with code 1$/m);
    assert.match(r.stderr, /unum logs 11111111/);
  } finally {
    await api.close();
  }
});

test('run FILE exits 1 when instances cannot be placed, and says the job stays pending', async () => {
  const job = mkJob();
  const failure: PlacementFailure = {
    unplaced: 2,
    nodesEvaluated: 1,
    nodesFiltered: {},
    nodesExhausted: { cpu: 1 },
    summary: 'no node has 8000 millicores free',
  };
  const api = await fakeApi({
    'POST /v1/jobs': () => ({ job, changed: true, evalId: 'eval-1' }),
    'GET /v1/jobs/:id/allocations': steps([[]]),
    'GET /v1/evaluations/:id': () => ({ id: 'eval-1', status: 'complete', failedGroups: { web: failure } }),
    'GET /v1/jobs/:id': () => detail(job, { web: failure }),
  });
  try {
    const r = await unum(api, ['run', webFile]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: web v0: 2 instances cannot be placed:$/m);
    assert.match(r.stderr, /^ {2}group web: no node has 8000 millicores free$/m);
    assert.match(r.stderr, /The job stays pending; "unum status web" shows why\./);
  } finally {
    await api.close();
  }
});

test('run FILE prints each field problem the server names, on its own line', async () => {
  const api = await fakeApi({
    'POST /v1/jobs': () => ({
      httpStatus: 400,
      body: {
        error: {
          code: 'invalid',
          message: 'invalid job:\n  groups[0].count: expected a whole number',
          details: {
            fields: [
              { path: 'groups[0].count', message: 'expected a whole number of instances, 0 or more, got -1' },
              {
                path: 'groups[0].tasks[0].comand',
                message: 'unknown field "comand"; did you mean "command"?',
              },
            ],
          },
        },
      },
    }),
  });
  try {
    const r = await unum(api, ['run', webFile]);
    assert.equal(r.code, 1);
    assert.deepEqual(r.stderr.trimEnd().split('\n'), [
      `error: ${webFile}: invalid job:`,
      '  groups[0].count: expected a whole number of instances, 0 or more, got -1',
      '  groups[0].tasks[0].comand: unknown field "comand"; did you mean "command"?',
    ]);
  } finally {
    await api.close();
  }
});

test('run FILE says so when nothing changed, and --detach returns after submitting', async () => {
  const job = mkJob({ version: 4 });
  let changed = false;
  const api = await fakeApi({ 'POST /v1/jobs': () => ({ job, changed }) });
  try {
    const same = await unum(api, ['run', webFile]);
    assert.equal(same.code, 0);
    assert.match(same.stdout, /^web: unchanged \(version 4\), nothing to do/);
    changed = true;
    const detached = await unum(api, ['run', webFile, '--detach']);
    assert.equal(detached.code, 0);
    assert.match(detached.stdout, /^web: submitted version 4\./);
    assert.equal(api.requests.length, 2, 'no following after --detach');
  } finally {
    await api.close();
  }
});

test('run -- CMD submits a one-off batch job, prints its id first and fails when the task fails', async () => {
  let submitted: { job: Record<string, unknown> } | undefined;
  let job: Job | undefined;
  const api = await fakeApi({
    'POST /v1/jobs': (req) => {
      submitted = req.body as typeof submitted;
      job = { ...mkJob({ id: String(submitted?.job['job']), type: 'batch', count: 1 }) };
      return { job, changed: true };
    },
    'GET /v1/jobs/:id/allocations': () => ({
      items: [
        mkAlloc(job!, 0, {
          clientStatus: 'failed',
          taskStates: { server: task({ failed: true, state: 'dead' }) },
        }),
      ],
      index: 1,
    }),
  });
  try {
    const r = await unum(api, ['run', '--cpu', '500', '--', '/usr/bin/Python3', '-c', 'raise SystemExit(3)']);
    assert.equal(r.code, 1);
    const id = String(submitted?.job['job']);
    assert.match(id, /^run-[0-9a-f]{8}$/);
    assert.deepEqual(submitted?.job['groups'], [
      {
        name: 'python3',
        count: 1,
        restart: { attempts: 0 },
        reschedule: { attempts: 0 },
        tasks: [
          {
            name: 'python3',
            command: '/usr/bin/Python3',
            args: ['-c', 'raise SystemExit(3)'],
            resources: { cpu: 500 },
          },
        ],
      },
    ]);
    assert.equal(submitted?.job['type'], 'batch');
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines[0], id);
    assert.equal(lines.at(-1), `logs: unum logs ${id}`);
  } finally {
    await api.close();
  }
});

test('run stops following when interrupted and says the job goes on (exit 130)', async () => {
  const job = mkJob();
  const interrupt = new AbortController();
  const api = await fakeApi({
    'POST /v1/jobs': () => ({ job, changed: true }),
    'GET /v1/jobs/:id/allocations': (req) => {
      // The second (blocking) query is where a person presses Ctrl-C.
      if (req.query.get('index') !== '0') interrupt.abort();
      return { items: [mkAlloc(job, 0, { clientStatus: 'pending' })], index: 1 };
    },
    'GET /v1/jobs/:id': () => detail(job),
  });
  try {
    const r = await unum(api, ['run', webFile], interrupt.signal);
    assert.equal(r.code, 130);
    assert.match(r.stderr, /^stopped following web v0; the job goes on: unum status web$/m);
  } finally {
    await api.close();
  }
});

// --- status, ps ----------------------------------------------------------------------------------

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
    assert.match(r.stdout, /^00000000\s+web\.web\[0\]\s+vm1\s+running\s+run\s+0\s+http=23000\s+1\s+30s$/m);
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
          },
        },
      } satisfies NodeStats;
    },
  });
  try {
    const r = await unum(api, ['ps']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split('\n'), [
      'ID        JOB  NAME        NODE  STATUS   PIDS  CPU    MEM  PORTS       RESTARTS  AGE',
      '11111111  web  web.web[1]  vm1   running  101   13%  35MiB  http=23001         2  30s',
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
      'ID        JOB  NAME        NODE  STATUS   PIDS  CPU     MEM  PORTS       RESTARTS  AGE',
      '00000000  web  web.web[0]  vm1   running  101     -  1.0MiB  http=23000         0  30s',
      '11111111  web  web.web[1]  vm2   running  202     -       -  http=23001         0  30s',
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

test('nodes shows free and total resources from the running allocations', async () => {
  const job = mkJob();
  const api = await fakeApi({
    'GET /v1/nodes': () => ({ items: [{ ...NODE, reserved: { cpu: 0, memory: 1024 } }], index: 1 }),
    'GET /v1/allocations': () => ({
      items: [mkAlloc(job, 0), mkAlloc(job, 1), mkAlloc(job, 2, { clientStatus: 'complete' })],
      index: 1,
    }),
  });
  try {
    const r = await unum(api, ['nodes']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split('\n'), [
      'ID        NAME  ADDRESS                STATUS  DRAIN  CPU FREE/TOTAL  MEMORY FREE/TOTAL  ALLOCS',
      'n0de0001  vm1   http://127.0.0.1:8687  ready   no              3.8/4        6.5GiB/7GiB       2',
    ]);
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

function event(index: number, over: Partial<ClusterEvent> = {}): ClusterEvent {
  return {
    index,
    time: NOW - 1000,
    topic: 'allocation',
    type: 'alloc-placed',
    allocId: '3f9a1c2e-0000-4000-8000-000000000000',
    message: `event ${index}`,
    ...over,
  };
}

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

function clock(ms: number): string {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}
