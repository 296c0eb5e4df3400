import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  allocStatus,
  colorEnabled,
  colors,
  formatAgo,
  formatCores,
  formatMemory,
  keyValues,
  table,
  visibleWidth,
} from './output.ts';

test('table aligns every column on its widest cell, two spaces apart', () => {
  const out = table(
    ['ID', 'NAME', 'STATUS'],
    [
      ['3f9a1c2e', 'web.web[0]', 'running'],
      ['a1', 'web.web[10]', 'pending'],
    ],
  );
  assert.equal(
    out,
    'ID        NAME         STATUS\n' +
      '3f9a1c2e  web.web[0]   running\n' +
      'a1        web.web[10]  pending\n',
  );
});

test('table right-aligns numeric columns and leaves no trailing blanks', () => {
  const out = table(
    ['NAME', 'RESTARTS', 'NOTE'],
    [
      ['a', '1', ''],
      ['b', '120', 'x'],
    ],
    { align: ['left', 'right', 'left'] },
  );
  const lines = out.trimEnd().split('\n');
  assert.deepEqual(lines, ['NAME  RESTARTS  NOTE', 'a            1', 'b          120  x']);
  for (const l of lines) assert.equal(l, l.trimEnd());
});

test('table measures cells without their color codes', () => {
  const c = colors(true);
  const out = table(
    ['STATUS', 'AGE'],
    [
      [c.green('running'), '3m'],
      ['failed', '1h'],
    ],
  );
  const [, first, second] = out.trimEnd().split('\n');
  // "3m" and "1h" start in the same screen column although one row carries escape codes.
  assert.equal(visibleWidth(first!.slice(0, first!.indexOf('3m'))), second!.indexOf('1h'));
});

test('colors are off when the output is not a terminal, or NO_COLOR is set', () => {
  const tty = { isTTY: true, write() {} };
  const pipe = { isTTY: false, write() {} };
  assert.equal(colorEnabled(tty, {}), true);
  assert.equal(colorEnabled(pipe, {}), false);
  assert.equal(colorEnabled(tty, { NO_COLOR: '1' }), false);
  assert.equal(colorEnabled(tty, { TERM: 'dumb' }), false);
  assert.equal(colors(false).red('x'), 'x');
  assert.notEqual(colors(true).red('x'), 'x');
});

test('keyValues aligns the values', () => {
  assert.equal(
    keyValues([
      ['ID', 'web'],
      ['Namespace', 'default'],
    ]),
    'ID         web\nNamespace  default\n',
  );
});

test('sizes and ages read the way people write them', () => {
  assert.equal(formatMemory(512), '512MiB');
  assert.equal(formatMemory(2048), '2GiB');
  assert.equal(formatMemory(1536), '1.5GiB');
  assert.equal(formatCores(1500), '1.5');
  assert.equal(formatCores(4000), '4');
  assert.equal(formatAgo(1_000, 1_500), 'just now');
  assert.equal(formatAgo(0, 180_000), '3m ago');
});

test('an allocation being stopped shows as stopping, an unhealthy one as unhealthy', () => {
  assert.equal(allocStatus({ clientStatus: 'running', desiredStatus: 'stop' }), 'stopping');
  assert.equal(allocStatus({ clientStatus: 'running', desiredStatus: 'run', healthy: false }), 'unhealthy');
  assert.equal(allocStatus({ clientStatus: 'complete', desiredStatus: 'stop' }), 'complete');
});
