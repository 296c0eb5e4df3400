import assert from 'node:assert/strict';
import { test } from 'node:test';
import { policiesAllow, type PolicyRule } from './acl.ts';

const policy = (...rules: PolicyRule[]) => ({ rules });

test('a rule grants its capabilities in its namespaces only; nothing is granted by default', () => {
  const dev = policy({ namespace: 'dev', capabilities: ['job:read', 'job:write'] });
  assert.equal(policiesAllow([dev], 'job:write', 'dev'), true);
  assert.equal(policiesAllow([dev], 'job:write', 'prod'), false);
  assert.equal(policiesAllow([dev], 'logs:read', 'dev'), false);
  assert.equal(policiesAllow([], 'job:read', 'default'), false);
  const teams = policy({ namespace: 'team-*', capabilities: ['job:read'] });
  assert.equal(policiesAllow([teams], 'job:read', 'team-a'), true);
  assert.equal(policiesAllow([teams], 'job:read', 'teams'), false);
  assert.equal(policiesAllow([dev, teams], 'job:read', 'team-b'), true);
});

test('cluster capabilities need a rule for every namespace', () => {
  const nsOnly = policy({ namespace: 'dev', capabilities: ['node:read', 'operator:write'] });
  assert.equal(policiesAllow([nsOnly], 'node:read', 'dev'), false);
  const all = policy({ namespace: '*', capabilities: ['node:read'] });
  assert.equal(policiesAllow([all], 'node:read', 'anything'), true);
  assert.equal(policiesAllow([all], 'operator:write', 'anything'), false);
});
