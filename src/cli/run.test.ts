/**
 * `unum run` against a scripted fake of the HTTP API: what a person sees for a rollout that
 * succeeds, fails or cannot be placed. (End-to-end tests against a real server live in test/.)
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Job, PlacementFailure } from '../core/types.ts';
import { NOW, detail, fakeApi, mkAlloc, mkJob, steps, task, unum } from './command-fixtures.ts';

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
