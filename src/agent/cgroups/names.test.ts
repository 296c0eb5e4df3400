import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidError } from '../../core/errors.ts';
import { isValidCgroupName, taskCgroupName, validateCgroupName } from './names.ts';

test('a task cgroup name is <allocId>.<task>', () => {
  const id = '0b6f7a3e-5c1d-4e8f-9a2b-3c4d5e6f7a8b';
  assert.equal(taskCgroupName(id, 'web'), `${id}.web`);
  assert.equal(taskCgroupName(id, 'log.shipper-2'), `${id}.log.shipper-2`);
});

test('ids and task names that could leave the parent are refused', () => {
  assert.throws(() => taskCgroupName('../x', 'web'), InvalidError);
  assert.throws(
    () => taskCgroupName('a.b', 'web'),
    InvalidError,
    'a dot in the id would make the name ambiguous',
  );
  assert.throws(() => taskCgroupName('abc', 'a/b'), InvalidError);
  assert.throws(() => taskCgroupName('abc', '..'), InvalidError);
  assert.throws(() => taskCgroupName('abc', ''), InvalidError);
});

test('cgroup names are one path segment: no "/", never "." or "..", not hidden', () => {
  for (const good of ['a', 'A1', 'abc.web', 'x_y-z', 'a..b', 'a'.repeat(200)])
    assert.ok(isValidCgroupName(good), good);
  for (const bad of [
    '',
    '.',
    '..',
    '../x',
    'a/b',
    '/a',
    '.hidden',
    '-a',
    'a b',
    'a\nb',
    'é',
    'a'.repeat(201),
  ])
    assert.equal(isValidCgroupName(bad), false, JSON.stringify(bad));
  assert.throws(() => validateCgroupName('../x'), InvalidError);
});
