import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Allocation, Node } from '../../core/types.ts';
import { mock } from '../../testing/mock.ts';
import { keys } from '../keys.ts';
import { reportAllocs } from './allocs.ts';
import { puts, view, written } from './fixtures.ts';
import { registerJob, stopJob } from './jobs.ts';
import { markNodeDown } from './nodes.ts';
import { commit } from './write.ts';

test('registering the same spec again changes nothing; a new spec is the next version', () => {
  const job = mock.job();
  assert.deepEqual(registerJob(view({ jobs: [job] }), job.spec, 1, 'token:alice'), {
    done: { job, changed: false },
  });
  const next = written(registerJob(view({ jobs: [job] }), { ...job.spec, priority: 70 }, 1, 'token:alice'));
  assert.equal(next.result.job.version, 1);
  assert.deepEqual(next.compare, [
    { key: keys.job(job.namespace, job.id), target: 'mod', op: '=', value: 7 },
  ]);
  assert.equal(puts(next, '/unum/evals/').length, 1);
  assert.deepEqual(
    (puts(next, '/unum/events/') as { actor?: string }[]).map((e) => e.actor),
    ['token:alice'],
    'the event names who made the change',
  );
  const stopped = written(stopJob(view({ jobs: [job] }), job, true, 1, 'token:bob'));
  assert.deepEqual(stopped.ops[0], { type: 'delete', key: keys.job(job.namespace, job.id) });
});

test('a node reports only for its own allocations; a lost one stays lost; one evaluation per job', () => {
  const [n1, n2] = [mock.node(), mock.node()];
  const job = mock.job({ count: 3 });
  const mine = mock.alloc(job, n1, { clientStatus: 'running' });
  const mine2 = mock.alloc(job, n1, { index: 1, clientStatus: 'running' });
  const lost = mock.alloc(job, n1, { index: 2, clientStatus: 'lost' });
  const theirs = mock.alloc(job, n2, { clientStatus: 'running' });
  const v = view({ jobs: [job], allocs: [mine, mine2, lost, theirs], nodes: [n1, n2] });
  const report = (a: Allocation, clientStatus: Allocation['clientStatus']) => ({
    allocId: a.id,
    clientStatus,
    taskStates: {},
  });
  const t = written(
    reportAllocs(
      v,
      n1.id,
      [report(mine, 'failed'), report(mine2, 'failed'), report(lost, 'running'), report(theirs, 'failed')],
      5,
    ),
  );
  const allocs = puts(t, '/unum/allocs/') as Allocation[];
  assert.deepEqual(allocs.map((a) => a.id).sort(), [mine.id, mine2.id].sort(), 'the other node is ignored');
  assert.equal(puts(t, '/unum/evals/').length, 1, 'two failures of one job: one evaluation');
  // A lost allocation reported running again stays lost (its replacement may already run).
  const again = reportAllocs(v, n1.id, [report(lost, 'running')], 5);
  assert.ok('done' in again || (puts(again, '/unum/allocs/') as Allocation[])[0]?.clientStatus === 'lost');
  assert.deepEqual(reportAllocs(v, n2.id, [report(mine, 'failed')], 5), { done: undefined });
});

test('a node that heartbeats is not marked down; a silent one is, with its active work lost', () => {
  const node = mock.node();
  const job = mock.job({ count: 2 });
  const run = mock.alloc(job, node, { clientStatus: 'running' });
  const done = mock.alloc(job, node, { index: 1, clientStatus: 'complete' });
  assert.deepEqual(markNodeDown(view({ nodes: [node], alive: [node.id] }), node.id, 1, 'leader:s1'), {
    done: { lost: 0 },
  });
  const t = written(
    markNodeDown(view({ nodes: [node], allocs: [run, done], jobs: [job] }), node.id, 1, 'leader:s1'),
  );
  assert.equal(t.result.lost, 1);
  assert.equal((puts(t, '/unum/nodes/')[0] as Node).status, 'down');
  assert.ok((puts(t, '/unum/events/') as { actor?: string }[]).every((e) => e.actor === 'leader:s1'));
  assert.deepEqual(
    (puts(t, '/unum/allocs/') as Allocation[]).map((a) => [a.id, a.clientStatus]),
    [[run.id, 'lost']],
  );
  const again = markNodeDown(view({ nodes: [{ ...node, status: 'down' }] }), node.id, 1, 'leader:s1');
  assert.deepEqual(again, { done: { lost: 0 } }, 'a down node with nothing running needs no write');
});

test('commit rebuilds a transition after a lost race, and fails clearly when the view lags', async () => {
  let builds = 0;
  let txns = 0;
  const target = {
    txn: () => Promise.resolve({ succeeded: ++txns > 1, revision: txns, results: [] }),
  };
  const result = await commit(target, { waitForIndex: () => Promise.resolve(true) }, () => {
    builds++;
    return { compare: [], ops: [{ type: 'put', key: 'k', value: 'v' }], result: builds };
  });
  assert.equal(result, 2, 'built again on fresher state after the first compare failed');
  await assert.rejects(
    commit(target, { waitForIndex: () => Promise.resolve(false) }, () => ({
      compare: [],
      ops: [],
      result: 0,
    })),
    (err: Error & { code?: string }) =>
      err.code === 'unavailable' && /did not reach revision/.test(err.message),
  );
  await assert.rejects(
    commit(
      { txn: () => Promise.resolve({ succeeded: false, revision: 1, results: [] }) },
      { waitForIndex: () => Promise.resolve(true) },
      () => ({ compare: [], ops: [], result: 0 }),
      3,
    ),
    (err: Error & { code?: string }) => err.code === 'conflict',
  );
});

test('a submission sent again with its idempotency key is answered as done, even after other versions', () => {
  const job = mock.job();
  const first = written(registerJob(view({ jobs: [job] }), { ...job.spec, priority: 70 }, 1, 'a', 'key-1'));
  assert.deepEqual(first.result.job.submissionKeys, ['key-1']);
  // Someone else's version after it.
  const second = written(
    registerJob(view({ jobs: [first.result.job] }), { ...job.spec, priority: 80 }, 2, 'b', 'key-2'),
  );
  assert.deepEqual(second.result.job.submissionKeys, ['key-1', 'key-2']);
  // The first client's retry: nothing is written, the job as it is now is the answer.
  assert.deepEqual(
    registerJob(view({ jobs: [second.result.job] }), { ...job.spec, priority: 70 }, 3, 'a', 'key-1'),
    { done: { job: second.result.job, changed: false } },
  );
  // Only the latest keys are kept.
  let j = second.result.job;
  for (let i = 0; i < 20; i++)
    j = written(registerJob(view({ jobs: [j] }), { ...job.spec, priority: 1 + (i % 2) }, 4, 'c', `k${i}`))
      .result.job;
  assert.equal(j.submissionKeys?.length, 16);
  assert.equal(j.submissionKeys?.at(-1), 'k19');
});
