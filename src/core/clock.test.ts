import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock, systemClock } from './clock.ts';

test('a fake clock fires timers in due order, each at its own time', () => {
  const clock = new FakeClock(1000);
  const fired: [string, number][] = [];
  clock.setTimeout(() => fired.push(['b', clock.now()]), 20);
  clock.setTimeout(() => {
    fired.push(['a', clock.now()]);
    clock.setTimeout(() => fired.push(['c', clock.now()]), 5);
  }, 10);
  const cancelled = clock.setTimeout(() => fired.push(['x', clock.now()]), 15);
  clock.clearTimeout(cancelled);
  clock.advance(12);
  assert.deepEqual(fired, [['a', 1010]]);
  clock.advance(100);
  assert.deepEqual(fired, [
    ['a', 1010],
    ['c', 1015],
    ['b', 1020],
  ]);
  assert.equal(clock.now(), 1112);
  assert.equal(clock.pending, 0);
});

test('sleep resolves when the fake clock passes it, or at once on abort', async () => {
  const clock = new FakeClock();
  let slept = false;
  const p = clock.sleep(50).then(() => (slept = true));
  clock.advance(49);
  await Promise.resolve();
  assert.equal(slept, false);
  clock.advance(1);
  await p;
  assert.equal(slept, true);
  const abort = new AbortController();
  const q = clock.sleep(1_000_000, abort.signal);
  abort.abort();
  await q;
  assert.equal(clock.pending, 0, 'an aborted sleep leaves no timer behind');
});

test('the system clock sleeps for real and can be cancelled', async () => {
  let fired = false;
  const t = systemClock.setTimeout(() => (fired = true), 1);
  systemClock.clearTimeout(t);
  await systemClock.sleep(5);
  assert.equal(fired, false);
  assert.ok(Math.abs(systemClock.now() - Date.now()) < 1000);
});
