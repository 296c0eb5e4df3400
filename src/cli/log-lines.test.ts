import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineBuffer, LogMux, logTag, tagLine } from './log-lines.ts';

test('LineBuffer gives whole lines and keeps a partial one until it ends', () => {
  const b = new LineBuffer();
  assert.deepEqual(b.push('hel'), []);
  assert.deepEqual(b.push('lo\nwor'), ['hello']);
  assert.deepEqual(b.push('ld\n\nlast'), ['world', '']);
  assert.equal(b.flush(), 'last');
  assert.equal(b.flush(), undefined);
});

test('LineBuffer drops the CR of CRLF line ends', () => {
  const b = new LineBuffer();
  assert.deepEqual(b.push('a\r\nb\r'), ['a']);
  assert.deepEqual(b.push('\n'), ['b']);
});

test(
  'LineBuffer stays linear on a 100 MB line arriving in small chunks (no timing: it just finishes)',
  { timeout: 60_000 },
  () => {
    const b = new LineBuffer();
    const chunk = 'x'.repeat(16 * 1024);
    const chunks = (100 * 1024 * 1024) / chunk.length;
    for (let i = 0; i < chunks; i++) assert.equal(b.push(chunk).length, 0);
    const [line, next] = b.push('\nnext\n');
    assert.equal(line?.length, 100 * 1024 * 1024);
    assert.equal(next, 'next');
    assert.equal(b.flush(), undefined);
  },
);

test('tags name the allocation, and the task only when the group has several', () => {
  const alloc = { id: '3f9a1c2e-0000-4000-8000-000000000000', name: 'web.web[0]' };
  assert.equal(logTag(alloc, 'server', 1), '3f9a1c2e web.web[0]');
  assert.equal(logTag(alloc, 'sidecar', 2), '3f9a1c2e web.web[0]/sidecar');
  assert.equal(tagLine('a', 3, 'x'), '[a]   x');
});

test('LogMux keeps the lines of concurrent streams whole, each tagged with its source', () => {
  const out: string[] = [];
  const mux = new LogMux({ prefix: true, write: (t) => out.push(t) });
  const a = mux.source('aaaa web.web[0]');
  const b = mux.source('bbbb web.web[10]');
  a.push('GET / 2');
  b.push('starting\nGET /');
  a.push('00\nGET /x');
  b.push(' 404\n');
  a.push(' 200\n');
  b.push('no newline at the end');
  b.end();
  a.end();
  assert.deepEqual(out, [
    '[bbbb web.web[10]] starting\n',
    '[aaaa web.web[0]]  GET / 200\n',
    '[bbbb web.web[10]] GET / 404\n',
    '[aaaa web.web[0]]  GET /x 200\n',
    '[bbbb web.web[10]] no newline at the end\n',
  ]);
});

test('LogMux pads earlier tags once a wider one appears (a replacement with a higher index)', () => {
  const out: string[] = [];
  const mux = new LogMux({ prefix: true, write: (t) => out.push(t) });
  const a = mux.source('a web[1]');
  a.push('one\n');
  mux.source('b web[10]').push('two\n');
  a.push('three\n');
  assert.deepEqual(out, ['[a web[1]] one\n', '[b web[10]] two\n', '[a web[1]]  three\n']);
});

test('LogMux without prefix writes the bare lines', () => {
  const out: string[] = [];
  const mux = new LogMux({ prefix: false, write: (t) => out.push(t) });
  const s = mux.source('x');
  s.push('a\nb');
  s.end();
  assert.deepEqual(out, ['a\n', 'b\n']);
});
