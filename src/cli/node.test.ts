/** `unum node drain|eligible|ineligible` against a scripted fake of the HTTP API. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Allocation, Node } from '../core/types.ts';
import { NODE, NOW, fakeApi, mkAlloc, mkJob, notFound, steps, unum } from './command-fixtures.ts';
import { assessDrain } from './drain.ts';

const draining: Node = {
  ...NODE,
  eligibility: 'ineligible',
  drain: true,
  drainStrategy: { startedAt: NOW, deadline: NOW + 3_600_000 },
};
const drained: Node = { ...NODE, eligibility: 'ineligible', drain: false };
const moving = { desiredTransition: { migrate: true } };

test('drain errors: a bad deadline or flags before any request; an unknown node from the server', async () => {
  const api = await fakeApi({
    'POST /v1/nodes/:id/drain': (_req, p) => notFound(`no node ${p['id']}`),
  });
  try {
    const usage: [string[], RegExp][] = [
      [['node', 'drain', 'vm1', '--deadline', 'soon'], /^error: --deadline: expected a duration like "30m"/m],
      [
        ['node', 'drain', 'vm1', '--deadline', '90d'],
        /^error: --deadline: expected a duration of at most 30d/m,
      ],
      [['node', 'drain', 'vm1', '--cancel', '--deadline', '1h'], /^error: give one of --deadline/m],
      [['node', 'drain'], /^error: missing the node: unum node drain NODE$/m],
      [['node', 'eligible', 'vm1', '--deadline', '1h'], /^error: --deadline is for "unum node drain"$/m],
      [['node', 'reboot', 'vm1'], /^error: unknown subcommand "unum node reboot"/m],
      [['node'], /^error: unum node needs a subcommand/m],
    ];
    for (const [argv, pattern] of usage) {
      const r = await unum(api, argv);
      assert.equal(r.code, 2, `unum ${argv.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern, argv.join(' '));
      assert.match(r.stderr, /Run "unum node --help" for usage\./);
    }
    assert.equal(api.requests.length, 0, 'no request was sent');

    const r = await unum(api, ['node', 'drain', 'vm9']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'error: no node vm9\n');
    assert.deepEqual(api.requests[0]?.body, {}, 'the server chooses the default deadline');
  } finally {
    await api.close();
  }
});

test('drain shows progress until the node is empty, then says how to use it again', async () => {
  const job = mkJob({ count: 2 });
  const a = (index: number, over: Partial<Allocation> = {}) => mkAlloc(job, index, over);
  const api = await fakeApi({
    'POST /v1/nodes/:id/drain': () => draining,
    'GET /v1/allocations': steps([
      [a(0), a(1)],
      [a(0, moving), a(1)],
      [a(0, { ...moving, desiredStatus: 'stop' }), a(1, moving)],
      [
        a(0, { clientStatus: 'complete', desiredStatus: 'stop' }),
        a(1, { clientStatus: 'complete', desiredStatus: 'stop' }),
      ],
    ]),
    // The drain ends with the node's own change, after its allocations are gone.
    'GET /v1/nodes': (req) => ({
      items: [Number(req.query.get('index') ?? 0) >= 1 ? drained : draining],
      index: 2,
    }),
  });
  try {
    const r = await unum(api, ['node', 'drain', 'vm1', '--deadline', '1h']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(api.requests[0]?.body, { deadline: '1h' });
    assert.deepEqual(r.stderr.trimEnd().split('\n'), [
      'vm1: draining, 2 allocations left (2 waiting), deadline in 1h',
      'vm1: draining, 2 allocations left (1 migrating, 1 waiting), deadline in 1h',
      'vm1: draining, 2 allocations left (1 stopping, 1 migrating), deadline in 1h',
      'vm1: draining, no allocation left, deadline in 1h',
      'vm1: drained',
    ]);
    assert.equal(
      r.stdout,
      'node vm1 drained: nothing runs there; it stays ineligible until "unum node eligible vm1"\n',
    );
    const waits = api.requests.filter((q) => q.path === '/v1/allocations').map((q) => q.query.get('node'));
    assert.ok(
      waits.every((n) => n === NODE.id),
      'it follows the allocations of that node',
    );
  } finally {
    await api.close();
  }
});

test('Ctrl-C stops following, not the drain, and says how to follow or cancel it', async () => {
  const interrupt = new AbortController();
  const api = await fakeApi({
    'POST /v1/nodes/:id/drain': () => draining,
    'GET /v1/allocations': () => {
      interrupt.abort();
      return { items: [mkAlloc(mkJob(), 0)], index: 1 };
    },
    'GET /v1/nodes': () => ({ items: [draining], index: 1 }),
  });
  try {
    const r = await unum(api, ['node', 'drain', 'vm1'], interrupt.signal);
    assert.equal(r.code, 130);
    assert.match(r.stderr, /vm1 is still draining on the servers/);
    assert.match(r.stderr, /unum node drain vm1 --monitor/);
    assert.match(r.stderr, /unum node drain vm1 --cancel/);
    assert.equal(api.requests.filter((q) => q.method === 'POST').length, 1, 'nothing asked to cancel it');
  } finally {
    await api.close();
  }
});

test('cancel, detach, eligible and ineligible say what they did; --json prints the node', async () => {
  const api = await fakeApi({
    'POST /v1/nodes/:id/drain': (req) =>
      (req.body as { cancel?: boolean }).cancel ? { ...NODE, eligibility: 'eligible' } : draining,
    'POST /v1/nodes/:id/eligibility': (req) => ({
      ...NODE,
      eligibility: (req.body as { eligible: boolean }).eligible ? 'eligible' : 'ineligible',
    }),
  });
  try {
    const cancel = await unum(api, ['node', 'drain', 'vm1', '--cancel']);
    assert.deepEqual([cancel.code, cancel.stdout], [0, 'node vm1: not draining; it is eligible\n']);
    assert.deepEqual(api.requests.at(-1)?.body, { cancel: true });
    const detach = await unum(api, ['node', 'drain', 'vm1', '--detach', '--deadline', '0s', '--json']);
    assert.equal(detach.code, 0);
    assert.equal((JSON.parse(detach.stdout) as Node).drain, true);
    assert.deepEqual(api.requests.at(-1)?.body, { deadline: '0s' });
    const off = await unum(api, ['node', 'ineligible', 'vm1']);
    assert.equal(off.stdout, 'node vm1 is ineligible: nothing new is placed there; what runs there stays\n');
    assert.deepEqual(api.requests.at(-1)?.body, { eligible: false });
    const on = await unum(api, ['node', 'eligible', 'vm1']);
    assert.equal(on.stdout, 'node vm1 is eligible: new work may be placed there\n');
    assert.deepEqual(api.requests.at(-1)?.body, { eligible: true });
  } finally {
    await api.close();
  }
});

test('the judgement of a drain: canceled by someone else, deadline passed', () => {
  const state = assessDrain({ ...NODE, eligibility: 'eligible' }, [], NOW);
  assert.deepEqual([state.status, state.line], ['canceled', 'vm1: drain canceled']);
  const late = assessDrain(
    { ...draining, drainStrategy: { startedAt: NOW - 10, deadline: NOW - 1 } },
    [mkAlloc(mkJob(), 0, { desiredStatus: 'stop' })],
    NOW,
  );
  assert.equal(late.line, 'vm1: draining, 1 allocation left (1 stopping), deadline passed');
});
