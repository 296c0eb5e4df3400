import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Allocation, Plan } from '../core/types.ts';
import { mock } from '../testing/mock.ts';
import { SchedulerHarness } from '../testing/scheduler-harness.ts';
import { checkPlan } from './check-plan.ts';

const gpu = (id: string) => ({ type: 'gpu' as const, vendor: 'nvidia', id, name: 'Test GPU' });

function setup() {
  const h = new SchedulerHarness();
  h.nodes.push(mock.node({ id: 'n1', cpu: 1000, memory: 1000, devices: [gpu('GPU-a')] }));
  const job = mock.job({ cpu: 600, memory: 100 });
  h.jobs.push(job);
  return { h, job };
}

function planOf(over: Partial<Plan>): Plan {
  return {
    evalId: 'e',
    namespace: 'default',
    jobId: 'j',
    jobVersion: 0,
    place: [],
    inPlace: [],
    stop: [],
    preempt: [],
    failedGroups: {},
    followups: [],
    ...over,
  };
}

describe('checkPlan', () => {
  test('accepts a placement that fits on a ready node', () => {
    const { h, job } = setup();
    const a = mock.alloc(job, h.nodes[0]!, { clientStatus: 'pending' });
    const check = checkPlan(h, planOf({ place: [a] }));
    assert.deepEqual(check, { ok: true, verdicts: [{ allocId: a.id, ok: true }] });
  });

  test('refuses a placement whose disk was taken meanwhile', () => {
    const h = new SchedulerHarness();
    h.nodes.push(mock.node({ id: 'n1', disk: 3000 }));
    const job = mock.job({ disk: 2000 });
    h.jobs.push(job);
    h.allocs.push(mock.alloc(job, h.nodes[0]!, { index: 0 }));
    const late = mock.alloc(job, h.nodes[0]!, { index: 1, clientStatus: 'pending' });
    const check = checkPlan(h, planOf({ place: [late] }));
    assert.equal(!check.ok && check.reason, `node n1 no longer has room for ${late.name}`);
  });

  test('refuses a placement on a node that is gone, down, draining, ineligible or silent', () => {
    const { h, job } = setup();
    const a = mock.alloc(job, h.nodes[0]!);
    const reason = 'node n1 is no longer ready';
    const cases: [string, () => void][] = [
      ['removed', () => (h.nodes = [])],
      ['down', () => (h.nodes = [{ ...h.nodes[0]!, status: 'down' }])],
      ['draining', () => (h.nodes = [{ ...h.nodes[0]!, drain: true }])],
      ['ineligible', () => (h.nodes = [{ ...h.nodes[0]!, eligibility: 'ineligible' }])],
      ['silent', () => h.silentNodes.add('n1')],
    ];
    for (const [name, breakNode] of cases) {
      const saved = [...h.nodes];
      breakNode();
      const check = checkPlan(h, planOf({ place: [a] }));
      assert.equal(check.ok, false, name);
      assert.equal(!check.ok && check.reason, reason, name);
      h.nodes = saved;
      h.silentNodes.clear();
    }
  });

  test('refuses a placement when the node has no room left', () => {
    const { h, job } = setup();
    h.allocs.push(mock.alloc(job, h.nodes[0]!));
    const a = mock.alloc(job, h.nodes[0]!, { index: 1 });
    const check = checkPlan(h, planOf({ place: [a] }));
    assert.equal(!check.ok && check.reason, `node n1 no longer has room for ${a.name}`);
    assert.deepEqual(check.verdicts, [
      { allocId: a.id, ok: false, reason: `node n1 no longer has room for ${a.name}` },
    ]);
  });

  test('two placements of one plan cannot share the last room of a node', () => {
    const { h, job } = setup();
    const a = mock.alloc(job, h.nodes[0]!);
    const b = mock.alloc(job, h.nodes[0]!, { index: 1 });
    const check = checkPlan(h, planOf({ place: [a, b] }));
    assert.equal(check.ok, false);
    assert.deepEqual(
      check.verdicts.map((v) => v.ok),
      [true, false],
    );
  });

  test('refuses a placement whose port was taken', () => {
    const { h } = setup();
    const small = mock.job({ cpu: 10, memory: 10 });
    const ports = [{ name: 'http', value: 25000 }];
    h.allocs.push(mock.alloc(small, h.nodes[0]!, { resources: { cpu: 10, memory: 10, ports } }));
    const a = mock.alloc(small, h.nodes[0]!, { index: 1, resources: { cpu: 10, memory: 10, ports } });
    const check = checkPlan(h, planOf({ place: [a] }));
    assert.equal(!check.ok && check.reason, `a port of ${a.name} was taken on n1`);
  });

  test('refuses a placement whose device was taken', () => {
    const { h } = setup();
    const small = mock.job({ cpu: 10, memory: 10 });
    const devices = [{ task: 'server', type: 'gpu', vendor: 'nvidia', id: 'GPU-a' }];
    const resources = { cpu: 10, memory: 10, ports: [], devices };
    h.allocs.push(mock.alloc(small, h.nodes[0]!, { resources }));
    const a = mock.alloc(small, h.nodes[0]!, { index: 1, resources });
    const check = checkPlan(h, planOf({ place: [a] }));
    assert.equal(!check.ok && check.reason, `a device of ${a.name} was taken on n1`);
  });

  test('a stop or a preemption in the same plan gives its room back first', () => {
    const { h, job } = setup();
    const old = mock.alloc(job, h.nodes[0]!);
    h.allocs.push(old);
    const a = mock.alloc(job, h.nodes[0]!, { index: 1 });
    assert.equal(checkPlan(h, planOf({ place: [a] })).ok, false);
    const stop = [{ allocId: old.id, description: 'replaced' }];
    assert.equal(checkPlan(h, planOf({ place: [a], stop })).ok, true);
    assert.equal(checkPlan(h, planOf({ place: [a], preempt: stop })).ok, true);
  });

  test('stopping a finished allocation gives back nothing', () => {
    const { h, job } = setup();
    const running = mock.alloc(job, h.nodes[0]!);
    const failed: Allocation = mock.alloc(job, h.nodes[0]!, { index: 1, clientStatus: 'failed' });
    h.allocs.push(running, failed);
    const a = mock.alloc(job, h.nodes[0]!, { index: 1 });
    const check = checkPlan(h, planOf({ place: [a], stop: [{ allocId: failed.id, description: 'x' }] }));
    assert.equal(check.ok, false);
  });

  test('an in-place update needs its allocation to still exist', () => {
    const { h, job } = setup();
    const a = mock.alloc(job, h.nodes[0]!);
    const check = checkPlan(h, planOf({ inPlace: [a] }));
    assert.equal(!check.ok && check.reason, `${a.name} no longer exists`);
    h.allocs.push(a);
    assert.equal(checkPlan(h, planOf({ inPlace: [{ ...a, jobVersion: 1 }] })).ok, true);
  });
});
