/** The command line that re-checks a saved history, on files. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { toJsonLines, type Operation } from './history.ts';

const dir = mkdtempSync(join(tmpdir(), 'unum-lin-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(history: Operation[] | string, ...args: string[]) {
  const file = join(dir, `h${Math.random().toString(36).slice(2)}.jsonl`);
  writeFileSync(file, typeof history === 'string' ? history : toJsonLines(history));
  const cli = join(import.meta.dirname, 'check.ts');
  return spawnSync(process.execPath, [cli, file, ...args], { encoding: 'utf8' });
}

const w1: Operation = { process: 1, key: 'a', op: 'write', input: 1, invoke: 1, complete: 2 };
const w2: Operation = { process: 2, key: 'a', op: 'write', input: 2, invoke: 3, complete: 4 };
const stale: Operation = { process: 3, key: 'a', op: 'read', output: 1, invoke: 5, complete: 6 };

test('a linearizable history: verdict and counts, exit 0', () => {
  const r = run([w1, w2, { ...stale, output: 2 }, { ...w1, key: 'b' }]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /: linearizable\noperations: 4, keys: 2,/);
});

test('a violation: the explanation, exit 1', () => {
  const r = run([w1, w2, stale]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /: violation\n/);
  assert.match(r.stdout, /key "a": not linearizable: stale read: the read by client 3 returned 1/);
  assert.match(r.stdout, /client 3 {2}read → 1 {3}← cannot be linearized/);
});

test('a search over its budget: undecided, exit 2', () => {
  const r = run([w1, w2, stale], '--max-steps', '2');
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stdout, /: undecided\n[^]*undecided \(search gave up; raise --max-steps\): a/);
});

test('an unreadable file: the line and field, exit 3', () => {
  const r = run(toJsonLines([w1]) + '{"process":1,"key":"a","op":"write","invoke":"x"}\n');
  assert.equal(r.status, 3);
  assert.match(r.stderr, /line 2: invoke: expected a number, got "x"/);
});
