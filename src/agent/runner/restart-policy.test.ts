import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RestartTracker } from './restart-policy.ts';

const minute = 60_000;

void describe('RestartTracker', () => {
  void test('doubles the delay on each restart up to maxDelay, then gives up (mode fail)', () => {
    const t = new RestartTracker({
      attempts: 4,
      interval: 10 * minute,
      delay: 1_000,
      maxDelay: 5_000,
      mode: 'fail',
    });
    const delays = [0, 1, 2, 3].map((i) => t.next(i * 1_000));
    assert.deepEqual(
      delays.map((d) => (d.restart ? [d.attempt, d.delayMs] : d.reason)),
      [
        [1, 1_000],
        [2, 2_000],
        [3, 4_000],
        [4, 5_000],
      ],
    );
    assert.deepEqual(t.next(5_000), { restart: false, reason: 'restart attempts exhausted' });
  });

  void test('only restarts within the interval count', () => {
    const t = new RestartTracker({
      attempts: 2,
      interval: minute,
      delay: 100,
      maxDelay: 1_000,
      mode: 'fail',
    });
    assert.equal(t.next(0).restart, true);
    assert.equal(t.next(1_000).restart, true);
    assert.equal(t.next(2_000).restart, false);
    // The first restart left the window: one more is allowed, counted as the 2nd in the window.
    const d = t.next(minute + 500);
    assert.ok(d.restart);
    assert.equal(d.attempt, 2);
  });

  void test('attempts 0 never restarts', () => {
    const t = new RestartTracker({
      attempts: 0,
      interval: minute,
      delay: 100,
      maxDelay: 1_000,
      mode: 'fail',
    });
    assert.deepEqual(t.next(0), { restart: false, reason: 'restarts are disabled (restart.attempts is 0)' });
  });

  void test('mode delay waits for the interval to pass instead of failing', () => {
    const t = new RestartTracker({
      attempts: 1,
      interval: minute,
      delay: 100,
      maxDelay: 1_000,
      mode: 'delay',
    });
    assert.deepEqual(t.next(0), { restart: true, delayMs: 100, attempt: 1, waitingForInterval: false });
    const d = t.next(10_000);
    assert.deepEqual(d, { restart: true, delayMs: 50_000, attempt: 1, waitingForInterval: true });
  });
});
