import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AllocClientStatus, AllocDesiredStatus } from './types.ts';
import { freedResources, holdsResources, isActive, isTerminal } from './alloc.ts';

const a = (clientStatus: AllocClientStatus, desiredStatus: AllocDesiredStatus = 'run') => ({
  clientStatus,
  desiredStatus,
});

test('terminal, active and holding resources', () => {
  for (const s of ['complete', 'failed', 'lost'] as const) {
    assert.equal(isTerminal(a(s)), true, s);
    assert.equal(isActive(a(s)), false, s);
    assert.equal(holdsResources(a(s)), false, s);
  }
  for (const s of ['pending', 'running'] as const) {
    assert.equal(isTerminal(a(s)), false, s);
    assert.equal(holdsResources(a(s)), true, s);
    assert.equal(holdsResources(a(s, 'stop')), false, `${s} told to stop`);
  }
  assert.equal(freedResources(a('running'), a('complete')), true);
  assert.equal(freedResources(a('running'), a('running', 'stop')), true);
  assert.equal(freedResources(a('pending'), a('running')), false);
  assert.equal(freedResources(a('failed'), a('lost')), false);
});
