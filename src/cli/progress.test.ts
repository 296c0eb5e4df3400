import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Progress } from './progress.ts';

function sink(isTTY: boolean) {
  const writes: string[] = [];
  return { out: { isTTY, write: (t: string) => void writes.push(t) }, writes };
}

test('on a terminal the progress line is rewritten in place, then ended', () => {
  const { out, writes } = sink(true);
  const p = new Progress(out);
  p.update('web v0: 0/3 running');
  p.update('web v0: 0/3 running');
  p.update('web v0: 3/3 running');
  p.done();
  assert.deepEqual(writes, ['\r\x1b[2Kweb v0: 0/3 running', '\r\x1b[2Kweb v0: 3/3 running', '\n']);
});

test('elsewhere each change is printed once, on its own line', () => {
  const { out, writes } = sink(false);
  const p = new Progress(out);
  p.update('a');
  p.update('a');
  p.update('b');
  p.done();
  assert.deepEqual(writes, ['a\n', 'b\n']);
});

test('a disabled progress (--json) prints nothing', () => {
  const { out, writes } = sink(true);
  const p = new Progress(out, false);
  p.update('a');
  p.done();
  assert.deepEqual(writes, []);
});
