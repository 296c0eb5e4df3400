import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Node } from '../core/types.ts';
import { mock } from '../testing/mock.ts';
import { SchedulerHarness } from '../testing/scheduler-harness.ts';

function setup(nodes = 1, nodeOver: Parameters<typeof mock.node>[0] = {}) {
  const h = new SchedulerHarness();
  for (let i = 0; i < nodes; i++) h.nodes.push(mock.node({ id: `n${i}`, ...nodeOver }));
  return h;
}

describe('generic scheduler', () => {
  test('places count instances with distinct indexes, names and ports', () => {
    const h = setup(1);
    const job = mock.job({ count: 3, ports: ['http'] });
    h.jobs.push(job);
    const plan = h.run(mock.evaluation(job));
    assert.equal(plan.place.length, 3);
    assert.deepEqual(
      plan.place.map((a) => a.index),
      [0, 1, 2],
    );
    assert.deepEqual(
      plan.place.map((a) => a.name),
      [`${job.id}.web[0]`, `${job.id}.web[1]`, `${job.id}.web[2]`],
    );
    const ports = plan.place.map((a) => a.resources.ports[0]?.value);
    assert.equal(new Set(ports).size, 3, 'each instance gets its own port');
    for (const p of ports) assert.ok(p! >= 20000 && p! <= 32000);
    assert.deepEqual(plan.failedGroups, {});
  });

  test('is a no-op when the job already has what it wants', () => {
    const h = setup(1);
    const job = mock.job({ count: 2 });
    h.jobs.push(job);
    h.apply(h.run(mock.evaluation(job)));
    const again = h.run(mock.evaluation(job));
    assert.equal(again.place.length, 0);
    assert.equal(again.stop.length, 0);
  });

  test('bin-packs: fills the busier node that fits before an empty one', () => {
    const h = setup(2, { cpu: 1000, memory: 1024 });
    const filler = mock.job({ cpu: 500, memory: 512 });
    h.jobs.push(filler);
    h.allocs.push(mock.alloc(filler, h.nodes[1]!));
    const job = mock.job({ cpu: 200, memory: 100 });
    h.jobs.push(job);
    const plan = h.run(mock.evaluation(job));
    assert.equal(plan.place[0]?.nodeId, 'n1');
  });

  test('a job that can never fit is reported with the reason, not placed', () => {
    const h = setup(2, { memory: 2048 });
    const job = mock.job({ count: 3, memory: 100_000 });
    h.jobs.push(job);
    const plan = h.run(mock.evaluation(job));
    assert.equal(plan.place.length, 0);
    const f = plan.failedGroups['web'];
    assert.ok(f);
    assert.equal(f.unplaced, 3);
    assert.equal(f.nodesEvaluated, 2);
    assert.equal(f.nodesExhausted['memory'], 2);
    assert.match(f.summary, /memory/);
    assert.match(f.summary, /100000 MiB/);
  });

  test('disk is packed like memory: a node whose disk is taken is exhausted on disk, and the summary says so', () => {
    const h = setup(2, { disk: 5000 });
    const filler = mock.job({ disk: 4000 });
    h.jobs.push(filler);
    h.allocs.push(mock.alloc(filler, h.nodes[0]!));
    const job = mock.job({ count: 3, disk: 2000 });
    h.jobs.push(job);
    const plan = h.run(mock.evaluation(job));
    assert.deepEqual(
      plan.place.map((a) => [a.nodeId, a.resources.disk]),
      [
        ['n1', 2000],
        ['n1', 2000],
      ],
    );
    const f = plan.failedGroups['web'];
    assert.equal(f?.unplaced, 1);
    assert.deepEqual(f.nodesExhausted, { disk: 2 });
    assert.match(f.summary, /2 nodes lack disk \(needs 2000 MiB, the most free on any node is 1000 MiB\)/);
  });

  test("a group bigger than any node's disk can never be placed", () => {
    const h = setup(1, { disk: 5000 });
    const job = mock.job({ disk: 6000 });
    h.jobs.push(job);
    const plan = h.run(mock.evaluation(job));
    assert.equal(plan.place.length, 0);
    assert.deepEqual(plan.failedGroups['web']?.nodesExhausted, { disk: 1 });
  });

  test('no ready node says so', () => {
    const h = setup(0);
    const job = mock.job();
    h.jobs.push(job);
    const plan = h.run(mock.evaluation(job));
    assert.match(plan.failedGroups['web']?.summary ?? '', /no node is ready/);
  });

  test('packs several instances of one plan without overcommitting a node', () => {
    const h = setup(1, { cpu: 1000, memory: 1000 });
    const job = mock.job({ count: 5, cpu: 300, memory: 100 });
    h.jobs.push(job);
    const plan = h.run(mock.evaluation(job));
    assert.equal(plan.place.length, 3);
    assert.equal(plan.failedGroups['web']?.unplaced, 2);
    assert.equal(plan.failedGroups['web']?.nodesExhausted['cpu'], 1);
  });

  test('constraints and drivers filter nodes with reasons', () => {
    const h = setup(0);
    h.nodes.push(mock.node({ id: 'a', attributes: { os: 'linux', hostname: 'a' } }));
    h.nodes.push(mock.node({ id: 'b', attributes: { os: 'darwin', hostname: 'b' } }));
    const job = mock.job({ constraints: [{ attribute: 'os', operator: '=', value: 'darwin' }] });
    h.jobs.push(job);
    assert.equal(h.run(mock.evaluation(job)).place[0]?.nodeId, 'b');
    const never = mock.job({ constraints: [{ attribute: 'os', operator: '=', value: 'plan9' }] });
    h.jobs.push(never);
    const f = h.run(mock.evaluation(never)).failedGroups['web'];
    assert.equal(f?.nodesFiltered['constraint os = plan9'], 2);
  });

  test('scaling down stops the highest indexes; scaling up keeps the running ones', () => {
    const h = setup(1);
    const job = mock.job({ count: 3 });
    h.jobs.push(job);
    h.apply(h.run(mock.evaluation(job)));
    const smaller = {
      ...job,
      version: 1,
      spec: { ...job.spec, groups: [{ ...job.spec.groups[0]!, count: 1 }] },
    };
    h.jobs = [smaller];
    const plan = h.run(mock.evaluation(smaller));
    assert.deepEqual(plan.stop.map((s) => h.allocs.find((a) => a.id === s.allocId)?.index).sort(), [1, 2]);
    // The survivor is carried over to the new version in place, not replaced.
    assert.equal(plan.place.length, 0);
    assert.equal(plan.inPlace.length, 1);
    assert.equal(plan.inPlace[0]?.index, 0);
    assert.equal(plan.inPlace[0]?.jobVersion, 1);
    assert.equal(plan.inPlace[0]?.id, h.allocs.find((a) => a.index === 0)?.id);
    h.apply(plan);
    assert.equal(h.allocs.find((a) => a.index === 0)?.jobVersion, 1);
  });

  test('a changed task replaces every instance and links old to new', () => {
    const h = setup(1);
    const job = mock.job({ count: 2 });
    h.jobs.push(job);
    h.apply(h.run(mock.evaluation(job)));
    const g = job.spec.groups[0]!;
    const changed = {
      ...job,
      version: 1,
      spec: { ...job.spec, groups: [{ ...g, tasks: [{ ...g.tasks[0]!, args: ['600'] }] }] },
    };
    h.jobs = [changed];
    const plan = h.run(mock.evaluation(changed));
    assert.equal(plan.stop.length, 2);
    assert.equal(plan.inPlace.length, 0);
    assert.equal(plan.place.length, 2);
    for (const a of plan.place) {
      assert.equal(a.jobVersion, 1);
      const prev = plan.stop.find((s) => s.allocId === a.previousAllocId);
      assert.equal(prev?.nextAllocId, a.id);
      assert.equal(prev?.description, 'updated to job version 1');
    }
    h.apply(plan);
    for (const a of plan.place) assert.equal(h.alloc(a.previousAllocId!)?.nextAllocId, a.id);
  });

  test('stopping a job stops every running instance', () => {
    const h = setup(1);
    const job = mock.job({ count: 2 });
    h.jobs.push(job);
    h.apply(h.run(mock.evaluation(job)));
    h.jobs = [{ ...job, stop: true }];
    const plan = h.run(mock.evaluation(job, { triggeredBy: 'job-deregister' }));
    assert.equal(plan.stop.length, 2);
    assert.equal(plan.place.length, 0);
  });

  test('a failed service instance is replaced after the reschedule delay, with backoff', () => {
    const h = setup(1);
    const job = mock.job();
    h.jobs.push(job);
    h.apply(h.run(mock.evaluation(job)));
    const first = h.allocs[0]!;
    h.setClientStatus(first.id, 'failed', h.now);
    // Too early: a follow-up evaluation is asked for at the delay.
    const early = h.run(mock.evaluation(job, { triggeredBy: 'alloc-failure' }));
    assert.equal(early.place.length, 0);
    assert.equal(early.followups.length, 1);
    assert.equal(early.followups[0]?.waitUntil, h.now + job.spec.groups[0]!.reschedule.delay);
    h.now = early.followups[0]!.waitUntil!;
    const plan = h.run(mock.evaluation(job, { triggeredBy: 'reschedule' }));
    const replacement = plan.place.find((a) => a.desiredStatus === 'run');
    assert.ok(replacement);
    assert.equal(replacement.previousAllocId, first.id);
    assert.equal(replacement.rescheduleEvents.length, 1);
    h.apply(plan);
    // The second failure waits twice as long.
    h.setClientStatus(replacement.id, 'failed', h.now);
    const next = h.run(mock.evaluation(job, { triggeredBy: 'alloc-failure' }));
    assert.equal(next.followups[0]?.waitUntil, h.now + 2 * job.spec.groups[0]!.reschedule.delay);
  });

  test('a batch job keeps completed instances and gives up after its reschedule attempts', () => {
    const h = setup(1);
    const job = mock.job({ type: 'batch', count: 2 });
    h.jobs.push(job);
    h.apply(h.run(mock.evaluation(job)));
    const [a, b] = h.allocs;
    h.setClientStatus(a!.id, 'complete');
    h.setClientStatus(b!.id, 'failed', h.now - 60_000);
    const plan = h.run(mock.evaluation(job));
    const fresh = plan.place.filter((x) => x.desiredStatus === 'run');
    assert.equal(fresh.length, 1, 'only the failed instance is retried');
    assert.equal(fresh[0]?.index, b!.index);
    h.apply(plan);
    h.setClientStatus(fresh[0]!.id, 'failed', h.now - 60_000);
    const after = h.run(mock.evaluation(job));
    assert.equal(after.place.length, 0, 'batch default: one reschedule attempt');
    assert.equal(after.followups.length, 0);
  });

  test('instances on a node that went down are replaced elsewhere', () => {
    const h = setup(2);
    const job = mock.job({ count: 1 });
    h.jobs.push(job);
    h.apply(h.run(mock.evaluation(job)));
    const a = h.allocs[0]!;
    h.nodes = h.nodes.map((n) => (n.id === a.nodeId ? { ...n, status: 'down' } : n));
    h.setClientStatus(a.id, 'lost');
    const plan = h.run(mock.evaluation(job, { triggeredBy: 'node-update' }));
    const fresh = plan.place.find((x) => x.desiredStatus === 'run');
    assert.ok(fresh);
    assert.notEqual(fresh.nodeId, a.nodeId);
    assert.equal(fresh.previousAllocId, a.id);
  });

  test('a migrating instance is replaced on another node first, then stopped; with no room it stays', () => {
    const h = setup(2, { cpu: 1000 });
    const job = mock.job({ count: 2, cpu: 400 });
    h.jobs.push(job);
    const [n0, n1] = h.nodes as [Node, Node];
    const a0 = mock.alloc(job, n0, { index: 0 });
    const a1 = mock.alloc(job, n0, { index: 1 });
    h.allocs.push(a0, a1);
    h.nodes = [{ ...n0, eligibility: 'ineligible', drain: true }, n1];
    h.allocs = [{ ...a0, desiredTransition: { migrate: true } }, a1];

    const plan = h.run(mock.evaluation(job, { triggeredBy: 'node-drain' }));
    assert.equal(plan.place.length, 1, 'only the marked instance moves');
    const fresh = plan.place[0]!;
    assert.equal(fresh.nodeId, n1.id);
    assert.equal(fresh.index, 0);
    assert.equal(fresh.previousAllocId, a0.id);
    assert.deepEqual(plan.stop, [
      { allocId: a0.id, description: `node ${n0.name} is draining`, nextAllocId: fresh.id },
    ]);
    h.apply(plan);

    // n1 has room for two instances of 400 millicores: the third mark finds none and stays running.
    const other = mock.job({ count: 1, cpu: 400 });
    h.jobs.push(other);
    h.allocs.push(mock.alloc(other, n1), { ...a1, desiredTransition: { migrate: true } });
    h.allocs = h.allocs.filter((a) => a !== a1);
    const full = h.run(mock.evaluation(job, { triggeredBy: 'node-drain' }));
    assert.deepEqual(full.place, []);
    assert.deepEqual(full.stop, [], 'not stopped without a replacement');
    assert.equal(full.failedGroups['web']?.unplaced, 1);
  });

  test('nothing is placed on ineligible nodes, and the reason says to look at them', () => {
    const h = setup(2);
    h.nodes = h.nodes.map((n) => ({ ...n, eligibility: 'ineligible' }));
    const job = mock.job({ count: 1 });
    h.jobs.push(job);
    const plan = h.run(mock.evaluation(job));
    assert.deepEqual(plan.place, []);
    assert.match(plan.failedGroups['web']?.summary ?? '', /no node is ready and eligible.*unum nodes/);
  });

  test('a change of migrate alone updates instances in place', () => {
    const h = setup(1);
    const job = mock.job({ count: 1 });
    h.jobs.push(job);
    h.apply(h.run(mock.evaluation(job)));
    const g = job.spec.groups[0]!;
    const next = {
      ...job,
      version: 1,
      spec: { ...job.spec, groups: [{ ...g, migrate: { maxParallel: 3 } }] },
    };
    h.jobs = [next];
    const plan = h.run(mock.evaluation(next));
    assert.equal(plan.inPlace.length, 1);
    assert.deepEqual([plan.place, plan.stop], [[], []]);
  });

  test('static ports conflict across instances on one node', () => {
    const h = setup(1);
    const spec = mock.jobSpec({ count: 2 });
    const g = spec.groups[0]!;
    const job = {
      id: spec.job,
      namespace: 'default',
      version: 0,
      stop: false,
      status: 'pending' as const,
      submittedAt: 0,
      spec: {
        ...spec,
        groups: [{ ...g, network: { mode: 'bridge' as const, ports: [{ name: 'http', static: 8080 }] } }],
      },
    };
    h.jobs.push(job);
    const plan = h.run(mock.evaluation(job));
    assert.equal(plan.place.length, 1);
    assert.equal(plan.place[0]?.resources.ports[0]?.value, 8080);
    assert.equal(plan.failedGroups['web']?.nodesExhausted['ports'], 1);
  });

  test('devices: a GPU goes to one task at a time, and a node without one is filtered', () => {
    const h = setup(0);
    const gpu = (id: string) => ({ type: 'gpu' as const, vendor: 'nvidia', id, name: 'Test GPU' });
    h.nodes.push(mock.node({ id: 'plain' }));
    h.nodes.push(mock.node({ id: 'gpu-box', devices: [gpu('GPU-a'), gpu('GPU-b')] }));
    const spec = mock.jobSpec({ count: 3 });
    const g = spec.groups[0]!;
    const task = {
      ...g.tasks[0]!,
      resources: { ...g.tasks[0]!.resources, devices: [{ name: 'nvidia/gpu', count: 1 }] },
    };
    const job = {
      id: spec.job,
      namespace: 'default',
      version: 0,
      stop: false,
      status: 'pending' as const,
      submittedAt: 0,
      spec: { ...spec, groups: [{ ...g, tasks: [task] }] },
    };
    h.jobs.push(job);
    const plan = h.run(mock.evaluation(job));
    assert.equal(plan.place.length, 2, 'two GPUs, two instances');
    assert.ok(plan.place.every((a) => a.nodeId === 'gpu-box'));
    const ids = plan.place.map((a) => a.resources.devices?.[0]?.id).sort();
    assert.deepEqual(ids, ['GPU-a', 'GPU-b']);
    assert.equal(plan.place[0]?.resources.devices?.[0]?.task, task.name);
    const f = plan.failedGroups['web'];
    assert.equal(f?.unplaced, 1);
    assert.equal(f?.nodesExhausted['devices'], 2, 'the plain node has none; the GPU box has none left');
  });
  test("a plan made on stale state is refused with the applier's reason", () => {
    const h = setup(1, { cpu: 1000, memory: 1000 });
    const a = mock.job({ cpu: 600 });
    const b = mock.job({ cpu: 600 });
    h.jobs.push(a, b);
    const first = h.run(mock.evaluation(a));
    const second = h.run(mock.evaluation(b));
    h.apply(first);
    assert.throws(() => h.apply(second), /no longer has room/);
  });

  test('a replaced finished instance is marked stopped and linked to its replacement', () => {
    const h = setup(1);
    const job = mock.job();
    h.jobs.push(job);
    h.apply(h.run(mock.evaluation(job)));
    const first = h.allocs[0]!;
    h.setClientStatus(first.id, 'complete');
    const plan = h.run(mock.evaluation(job));
    const replacement = plan.place[0]!;
    assert.deepEqual(plan.stop, [
      { allocId: first.id, description: 'service exited', nextAllocId: replacement.id },
    ]);
    h.apply(plan);
    assert.equal(h.alloc(first.id)?.desiredStatus, 'stop');
    assert.equal(h.alloc(first.id)?.nextAllocId, replacement.id);
  });
});
