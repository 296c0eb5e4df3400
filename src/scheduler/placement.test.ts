import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { groupResources } from '../core/job-spec.ts';
import { mock } from '../testing/mock.ts';
import { CycleState, stateKey, type FilterPlugin, type PlacementRequest } from './framework.ts';
import { defaultProfile, filters, placeOne } from './placement.ts';

function request(over: Parameters<typeof mock.jobSpec>[0] = {}): PlacementRequest {
  const job = mock.jobSpec(over);
  const group = job.groups[0]!;
  return { job, group, resources: groupResources(group) };
}

const byName = (name: string) => filters.find((f) => f.name === name)!;
const noAllocs = { allocsOnNode: () => [] };

describe('filter statuses', () => {
  test('more memory than the node has at all is unresolvable; more than is free now is unschedulable', () => {
    const node = mock.node({ memory: 1000 });
    const state = new CycleState(noAllocs);
    const usage = state.usageOf(node);
    const resources = byName('resources');
    assert.deepEqual(resources.filter(node, request({ memory: 2000 }), usage, state), {
      status: 'unresolvable',
      reason: 'memory exhausted',
      dimension: 'memory',
    });
    usage.memory = 900;
    assert.deepEqual(resources.filter(node, request({ memory: 200 }), usage, state), {
      status: 'unschedulable',
      reason: 'memory exhausted',
      dimension: 'memory',
    });
  });

  test('a constraint the node does not match is unresolvable', () => {
    const node = mock.node();
    const state = new CycleState(noAllocs);
    const req = request({ constraints: [{ attribute: 'os', operator: '=', value: 'plan9' }] });
    const r = byName('constraints').filter(node, req, state.usageOf(node), state);
    assert.deepEqual(r, { status: 'unresolvable', reason: 'constraint os = plan9' });
  });

  test('a catastrophic regexp constraint returns at once (RE2; a backtracking engine would hang here)', () => {
    const node = mock.node({ attributes: { os: 'linux', hostname: 'n', label: `${'a'.repeat(50_000)}b` } });
    const state = new CycleState(noAllocs);
    const filter = byName('constraints');
    const req = request({ constraints: [{ attribute: 'label', operator: 'regexp', value: '^(a+)+$' }] });
    assert.deepEqual(filter.filter(node, req, state.usageOf(node), state), {
      status: 'unresolvable',
      reason: 'constraint label regexp ^(a+)+$',
    });
    const matching = request({
      constraints: [{ attribute: 'label', operator: 'regexp', value: '^(a+)+b$' }],
    });
    assert.equal(filter.filter(node, matching, state.usageOf(node), state).status, 'ok');
  });

  test('placeOne counts unresolvable nodes and keeps the reasons', () => {
    const nodes = [mock.node({ id: 'a', memory: 1000 }), mock.node({ id: 'b', memory: 1000 })];
    const outcome = placeOne(nodes, request({ memory: 5000 }), new CycleState(noAllocs), () => 0);
    assert.equal(outcome.node, undefined);
    assert.equal(outcome.unresolvable, 2);
    assert.deepEqual(outcome.failure?.nodesExhausted, { memory: 2 });
  });

  test('a plugin that throws is an error status for that node, not a failed pass', () => {
    const broken: FilterPlugin = {
      name: 'broken',
      filter(node) {
        if (node.id === 'a') throw new Error('boom');
        return { status: 'ok' };
      },
    };
    const nodes = [mock.node({ id: 'a' }), mock.node({ id: 'b' })];
    const profile = { ...defaultProfile, filters: [broken, ...defaultProfile.filters] };
    const outcome = placeOne(nodes, request(), new CycleState(noAllocs), () => 0, profile);
    assert.equal(outcome.node?.id, 'b');
  });

  test('plugins share data through the cycle state of one pass', () => {
    const seen = stateKey<string[]>('test.seen');
    const recorder: FilterPlugin = {
      name: 'recorder',
      filter(node, _req, _usage, state) {
        state.write(seen, [...(state.read(seen) ?? []), node.id]);
        return node.id === 'a' ? { status: 'unschedulable', reason: 'not a' } : { status: 'ok' };
      },
    };
    const state = new CycleState(noAllocs);
    const nodes = [mock.node({ id: 'a' }), mock.node({ id: 'b' })];
    const outcome = placeOne(nodes, request(), state, () => 0, { ...defaultProfile, filters: [recorder] });
    assert.equal(outcome.node?.id, 'b');
    assert.deepEqual(state.read(seen), ['a', 'b']);
  });
});
