import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Allocation, Job, Node } from '../core/types.ts';
import { mock } from '../testing/mock.ts';
import { reconcile } from './reconcile.ts';

const node = mock.node({ id: 'n1' });
const ctx = { now: 1_000_000, node: (id: string): Node | undefined => (id === node.id ? node : undefined) };

/** The job at a new version with its only group changed by `change`. */
function bump(job: Job, change: (g: Job['spec']['groups'][number]) => Job['spec']['groups'][number]): Job {
  return { ...job, version: job.version + 1, spec: { ...job.spec, groups: [change(job.spec.groups[0]!)] } };
}

function running(job: Job, count: number): Allocation[] {
  return Array.from({ length: count }, (_, index) => mock.alloc(job, node, { index, createdAt: index }));
}

describe('reconcile', () => {
  test('scaling up places the missing indexes and keeps the others', () => {
    const job = mock.job({ count: 3 });
    const r = reconcile(job, running(job, 1), ctx);
    assert.deepEqual(
      r.place.map((p) => p.index),
      [1, 2],
    );
    assert.deepEqual([r.stop, r.inPlace, r.destructive, r.followups], [[], [], [], []]);
  });

  test('scaling down stops the highest indexes and updates the rest in place', () => {
    const job = mock.job({ count: 3 });
    const allocs = running(job, 3);
    const smaller = bump(job, (g) => ({ ...g, count: 1 }));
    const r = reconcile(smaller, allocs, ctx);
    assert.deepEqual(r.stop, [
      { allocId: allocs[1]!.id, description: 'scaled down to 1' },
      { allocId: allocs[2]!.id, description: 'scaled down to 1' },
    ]);
    assert.deepEqual(
      r.inPlace.map((a) => [a.id, a.jobVersion, a.modifiedAt]),
      [[allocs[0]!.id, 1, ctx.now]],
    );
    assert.deepEqual([r.place, r.destructive], [[], []]);
  });

  test('a changed task is a destructive update; a changed count alone is not', () => {
    const job = mock.job({ count: 2 });
    const allocs = running(job, 2);
    const changed = bump(job, (g) => ({ ...g, tasks: [{ ...g.tasks[0]!, args: ['600'] }] }));
    const r = reconcile(changed, allocs, ctx);
    assert.deepEqual(
      r.destructive.map((d) => [d.alloc.id, d.description]),
      allocs.map((a) => [a.id, 'updated to job version 1']),
    );
    assert.deepEqual([r.place, r.inPlace, r.stop], [[], [], []]);
  });

  test('stopping or removing a job stops every allocation still meant to run', () => {
    const job = mock.job({ count: 2 });
    const allocs = [...running(job, 2), mock.alloc(job, node, { index: 2, desiredStatus: 'stop' })];
    const stopped = reconcile({ ...job, stop: true }, allocs, ctx);
    assert.deepEqual(
      stopped.stop.map((s) => s.description),
      ['job stopped', 'job stopped'],
    );
    assert.deepEqual(
      reconcile(undefined, allocs, ctx).stop.map((s) => s.description),
      ['job removed', 'job removed'],
    );
    assert.deepEqual([stopped.place, stopped.inPlace, stopped.destructive], [[], [], []]);
  });

  test('an instance on a node that is gone is stopped and replaced at its index', () => {
    const job = mock.job({ count: 1 });
    const a = mock.alloc(job, mock.node({ id: 'elsewhere' }));
    const r = reconcile(job, [a], ctx);
    assert.deepEqual(r.stop, [{ allocId: a.id, description: 'node is down' }]);
    assert.equal(r.place[0]?.previous?.id, a.id);
    assert.equal(r.place[0]?.index, 0);
  });

  test('a failed instance waits for its reschedule delay as a follow-up', () => {
    const job = mock.job({ count: 1 });
    const a = mock.alloc(job, node, { clientStatus: 'failed', modifiedAt: ctx.now });
    const r = reconcile(job, [a], ctx);
    assert.deepEqual(r.place, []);
    assert.equal(r.followups[0]?.waitUntil, ctx.now + job.spec.groups[0]!.reschedule.delay);
    const later = reconcile(job, [a], { ...ctx, now: r.followups[0]!.waitUntil });
    assert.equal(later.place[0]?.replaces, 'failed; rescheduled');
    assert.equal(later.place[0]?.rescheduleEvents.length, 1);
  });
});
