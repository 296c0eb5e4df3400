import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_REGEXP_LENGTH, regexpMatches, regexpProblem } from './regexp.ts';

describe('constraint regular expressions', () => {
  test('match anywhere in the text, as RegExp.test does; ^ and $ anchor', () => {
    assert.equal(regexpMatches('x86', 'linux-x86_64'), true);
    assert.equal(regexpMatches('^x86', 'linux-x86_64'), false);
    assert.equal(regexpMatches('^(amd64|x64)$', 'x64'), true);
    assert.equal(regexpMatches('(?i)^LINUX$', 'linux'), true);
  });

  test('a catastrophic pattern returns at once against a long text (a backtracking engine hangs)', () => {
    const text = `${'a'.repeat(100_000)}b`;
    assert.equal(regexpMatches('^(a+)+$', text), false);
    assert.equal(regexpMatches('^(a|aa)+$', text), false);
    assert.equal(regexpMatches('^(a|a?)+$', text), false);
    assert.equal(regexpMatches('^(a+)+b$', text), true);
  });

  test('patterns too long, too large or outside RE2 syntax are problems, said so', () => {
    assert.equal(regexpProblem('a'.repeat(MAX_REGEXP_LENGTH)), undefined);
    assert.match(regexpProblem('a'.repeat(MAX_REGEXP_LENGTH + 1)) ?? '', /at most 256 characters, got 257/);
    assert.match(regexpProblem('(a') ?? '', /RE2 syntax.*missing closing \)/);
    assert.match(regexpProblem('(?=a)b') ?? '', /RE2 syntax/);
    assert.match(regexpProblem('(a)\\1') ?? '', /RE2 syntax/);
    assert.match(regexpProblem('(((a{1000}){1000}){1000})') ?? '', /RE2 syntax/);
    assert.match(regexpProblem('a{1000}b{1000}c{1000}d{1000}e{1000}f{1000}') ?? '', /too large/);
    assert.equal(regexpMatches('(a', 'a'), false);
  });
});
