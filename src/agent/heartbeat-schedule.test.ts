import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FALLBACK_INTERVAL_MS, JITTER, heartbeatInterval, nextBeatIn } from './heartbeat-schedule.ts';

test('the agent beats at the interval the server gives, or a third of an older server’s TTL', () => {
  assert.equal(heartbeatInterval({ intervalMs: 2_000, ttlSeconds: 8 }), 2_000);
  assert.equal(heartbeatInterval({ ttlSeconds: 9 }), 3_000, 'a server from before intervalMs');
  assert.equal(heartbeatInterval({}), FALLBACK_INTERVAL_MS);
  assert.equal(heartbeatInterval({ intervalMs: 0 }), FALLBACK_INTERVAL_MS, 'nonsense is not obeyed');
});

test('jitter only shortens the wait, by up to a tenth; a slow answer does not stretch the period', () => {
  assert.equal(
    nextBeatIn(1_000, 0, () => 0),
    1_000,
  );
  assert.equal(
    nextBeatIn(1_000, 0, () => 1),
    1_000 * (1 - JITTER),
  );
  assert.equal(
    nextBeatIn(1_000, 300, () => 0),
    700,
    'counted from the start of the previous beat',
  );
  assert.equal(
    nextBeatIn(1_000, 5_000, () => 0.5),
    0,
    'late already: at once',
  );
});
