import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseJobSpec } from '../core/job-spec.ts';
import type { Allocation, Job, TaskState } from '../core/types.ts';
import { assessRollout, assessStop, describeFailure } from './rollout.ts';

function job(
  over: { type?: 'service' | 'batch'; count?: number; check?: boolean; version?: number } = {},
): Job {
  const spec = parseJobSpec({
    job: 'web',
    type: over.type ?? 'service',
    groups: [
      {
        name: 'web',
        count: over.count ?? 3,
        network: { ports: ['http'] },
        tasks: [{ name: 'server', command: 'python3' }],
        services: over.check
          ? [{ name: 'web', port: 'http', check: { type: 'http', path: '/' } }]
          : [{ name: 'web', port: 'http' }],
      },
    ],
  });
  return {
    id: 'web',
    namespace: 'default',
    version: over.version ?? 1,
    stop: false,
    status: 'running',
    submittedAt: 0,
    spec,
  };
}

let n = 0;
function alloc(j: Job, over: Partial<Allocation> = {}): Allocation {
  const group = j.spec.groups[0]!;
  const index = over.index ?? n++;
  return {
    id: `alloc-${n}-${index}`,
    namespace: 'default',
    jobId: j.id,
    jobVersion: j.version,
    jobType: j.spec.type,
    name: `web.web[${index}]`,
    group: 'web',
    index,
    nodeId: 'node-1',
    groupSpec: group,
    resources: { cpu: 100, memory: 64, ports: [] },
    desiredStatus: 'run',
    clientStatus: 'running',
    taskStates: {},
    evalId: 'e',
    rescheduleEvents: [],
    createdAt: 0,
    modifiedAt: 0,
    ...over,
  };
}

const deadTask = (over: Partial<TaskState> = {}): TaskState => ({
  state: 'dead',
  failed: true,
  restarts: 3,
  events: [
    { time: 1, type: 'started', message: 'started (pid 10)' },
    { time: 2, type: 'terminated', message: 'exited with code 2', exitCode: 2 },
    { time: 3, type: 'not-restarting', message: 'restart attempts used up' },
  ],
  ...over,
});

test('a service rollout is done when every instance of the new version runs', () => {
  const j = job();
  const running = [0, 1, 2].map((index) => alloc(j, { index }));
  assert.equal(assessRollout(j, running.slice(0, 2)).done, false);
  const s = assessRollout(j, running);
  assert.equal(s.done, true);
  assert.equal(s.line, 'web v1: 3/3 running');
});

test('instances of other versions, and instances being stopped, do not count', () => {
  const j = job();
  const old = [0, 1, 2].map((index) => alloc(j, { index, jobVersion: 0 }));
  const s = assessRollout(j, [...old, alloc(j, { index: 0 }), alloc(j, { index: 1, desiredStatus: 'stop' })]);
  assert.equal(s.done, false);
  assert.equal(s.counts.running, 1);
  assert.equal(s.line, 'web v1: 1/3 running');
});

test('with health checks, running is not enough: every instance must be healthy', () => {
  const j = job({ check: true });
  const allocs = [
    alloc(j, { index: 0, healthy: true }),
    alloc(j, { index: 1, healthy: true }),
    alloc(j, { index: 2 }),
  ];
  const s = assessRollout(j, allocs);
  assert.equal(s.done, false);
  assert.equal(s.line, 'web v1: 3/3 running, 2/3 healthy');
  allocs[2]!.healthy = true;
  assert.equal(assessRollout(j, allocs).done, true);
});

test('a batch rollout is done when every instance completed', () => {
  const j = job({ type: 'batch', count: 2 });
  const s = assessRollout(j, [alloc(j, { index: 0, clientStatus: 'complete' }), alloc(j, { index: 1 })]);
  assert.equal(s.done, false);
  assert.equal(s.line, 'web v1: 1/2 complete, 1 running');
  assert.equal(
    assessRollout(j, [
      alloc(j, { index: 0, clientStatus: 'complete' }),
      alloc(j, { index: 1, clientStatus: 'complete' }),
    ]).done,
    true,
  );
});

test('a failed instance of the version fails the rollout, naming the task and why it stopped', () => {
  const j = job();
  const failed = alloc(j, { index: 1, clientStatus: 'failed', taskStates: { server: deadTask() } });
  const s = assessRollout(j, [
    alloc(j, { index: 0 }),
    failed,
    alloc(j, { index: 2, clientStatus: 'pending' }),
  ]);
  assert.equal(s.done, false);
  assert.equal(s.failed?.alloc, failed);
  assert.equal(s.failed?.task, 'server');
  // The termination (exit code 2) explains more than "not restarting".
  assert.equal(s.failed?.event?.message, 'exited with code 2');
  assert.equal(s.line, 'web v1: 1/3 running, 1 pending, 1 failed');
});

test('a failure of an older version does not fail the new one', () => {
  const j = job();
  const s = assessRollout(j, [
    alloc(j, { jobVersion: 0, clientStatus: 'failed', taskStates: { server: deadTask() } }),
  ]);
  assert.equal(s.failed, undefined);
});

test('describeFailure falls back to the last event when no task says why', () => {
  const j = job();
  const a = alloc(j, {
    clientStatus: 'failed',
    taskStates: {
      server: deadTask({ failed: false, events: [{ time: 5, type: 'killing', message: 'lost' }] }),
    },
  });
  assert.equal(describeFailure(a).event?.message, 'lost');
  assert.deepEqual(describeFailure(alloc(j, { taskStates: {} })).task, undefined);
});

test('a stop is done when nothing runs or waits to run any more', () => {
  const j = job();
  assert.equal(assessStop('web', [alloc(j), alloc(j, { clientStatus: 'complete' })]).done, false);
  const s = assessStop('web', [alloc(j, { clientStatus: 'complete' }), alloc(j, { clientStatus: 'failed' })]);
  assert.equal(s.done, true);
  assert.equal(s.line, 'web: 0 still running, 2 stopped');
});
