/**
 * Terminal escape sequences from task output or stored messages are shown as visible escapes by
 * `logs`, `status` and `events`, unless `--raw` (against a scripted fake of the HTTP API).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PlacementFailure } from '../core/types.ts';
import { NODE, NOW, detail, event, fakeApi, mkAlloc, mkJob, task, unum } from './command-fixtures.ts';
import { printable } from './output.ts';

/** Clears the screen, sets the window title, rings the bell; a CSI introducer (C1) and a bidi override. */
const HOSTILE = '\x1b[2J\x1b]0;pwned\x07ok\x9b31m\u202eevil';
const SHOWN = '\\x1b[2J\\x1b]0;pwned\\x07ok\\x9b31m\\u202eevil';

test('printable shows control characters as escapes and keeps tabs and text', () => {
  assert.equal(printable(HOSTILE), SHOWN);
  assert.equal(printable('a\tb é 日本'), 'a\tb é 日本');
  assert.equal(printable('\r\0\x7f'), '\\x0d\\x00\\x7f');
});

test('logs shows escapes from task output as text; --raw passes them through', async () => {
  const job = mkJob();
  const alloc = mkAlloc(job, 0);
  const api = await fakeApi({
    'GET /v1/jobs/:id': () => detail(job),
    'GET /v1/jobs/:id/allocations': () => ({ items: [alloc], index: 3 }),
    'GET /v1/allocations/:id/logs': (req) => ({
      chunks: req.query.get('stream') === 'stdout' ? [`${HOSTILE}\tend\n`] : [],
    }),
  });
  try {
    const r = await unum(api, ['logs', 'web', '--no-prefix']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${SHOWN}\tend\n`);
    assert.ok(!r.stdout.includes('\x1b'));
    const raw = await unum(api, ['logs', 'web', '--no-prefix', '--raw']);
    assert.equal(raw.stdout, `${HOSTILE}\tend\n`);
    const help = await unum(api, ['logs', '--help']);
    assert.match(help.stdout, /--raw/);
  } finally {
    await api.close();
  }
});

test('status shows escapes in task event messages, descriptions and placement reasons as text', async () => {
  const job = mkJob();
  const alloc = mkAlloc(job, 0, {
    clientDescription: HOSTILE,
    taskStates: {
      server: task({ events: [{ time: NOW - 20_000, type: 'terminated', message: `exited: ${HOSTILE}` }] }),
    },
  });
  const failure: PlacementFailure = {
    unplaced: 1,
    nodesEvaluated: 1,
    nodesFiltered: {},
    nodesExhausted: {},
    summary: `constraint label regexp ${HOSTILE}`,
  };
  const api = await fakeApi({
    'GET /v1/jobs/:id': () => detail(job, { web: failure }),
    'GET /v1/jobs/:id/allocations': () => ({ items: [alloc], index: 5 }),
    'GET /v1/nodes': () => ({ items: [{ ...NODE, name: `vm\x1b[8m1` }], index: 5 }),
  });
  try {
    const r = await unum(api, ['status', 'web']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes('\x1b'), r.stdout);
    assert.ok(!r.stdout.includes('\x9b'));
    assert.ok(r.stdout.includes(`exited: ${SHOWN}`));
    assert.ok(r.stdout.includes(`constraint label regexp ${SHOWN}`));
    assert.ok(r.stdout.includes('vm\\x1b[8m1'));
    const raw = await unum(api, ['status', 'web', '--raw']);
    assert.ok(raw.stdout.includes(`exited: ${HOSTILE}`));
    assert.match((await unum(api, ['status', '--help'])).stdout, /--raw/);
  } finally {
    await api.close();
  }
});

test('events shows escapes in stored messages as text; --json keeps them as JSON escapes', async () => {
  const hostile = event(3, { message: HOSTILE });
  const api = await fakeApi({
    'GET /v1/status': () => ({ revision: 10 }),
    'GET /v1/events': () => ({ events: [hostile], index: 3 }),
  });
  try {
    const r = await unum(api, ['events']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes('\x1b'), r.stdout);
    assert.ok(r.stdout.includes(SHOWN));
    const raw = await unum(api, ['events', '--raw']);
    assert.ok(raw.stdout.includes(HOSTILE));
    const json = await unum(api, ['events', '--json']);
    assert.equal((JSON.parse(json.stdout) as { events: { message: string }[] }).events[0]?.message, HOSTILE);
    assert.match((await unum(api, ['events', '--help'])).stdout, /--raw/);
  } finally {
    await api.close();
  }
});
