import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FakeClock } from '../../core/clock.ts';
import { NotFoundError } from '../../core/errors.ts';
import { Lessor } from './lessor.ts';

function setup(): { clock: FakeClock; lessor: Lessor; expired: number[] } {
  const clock = new FakeClock();
  const expired: number[] = [];
  const lessor = new Lessor({ clock, onExpire: (id) => expired.push(id) });
  return { clock, lessor, expired };
}

void describe('lessor', () => {
  void test('a lease expires exactly when its TTL has passed on the clock', () => {
    const { clock, lessor, expired } = setup();
    lessor.add(1, 10);
    clock.advance(9_999);
    assert.deepEqual(expired, []);
    assert.equal(lessor.alive(1), true);
    assert.deepEqual(lessor.timeToLive(1), { ttlSeconds: 10, remainingSeconds: 0.001 });
    clock.advance(1);
    assert.deepEqual(expired, [1]);
    assert.equal(lessor.alive(1), false);
    // Expiring but not yet revoked by the backend: no renewal, but a revoke may still run.
    assert.equal(lessor.has(1), true);
    assert.throws(() => lessor.keepAlive(1), NotFoundError);
    assert.throws(() => lessor.timeToLive(1), NotFoundError);
    clock.advance(60_000);
    assert.deepEqual(expired, [1], 'handed to the backend once');
  });

  void test('keepAlive restarts the full TTL from now', () => {
    const { clock, lessor, expired } = setup();
    lessor.add(1, 10);
    clock.advance(6_000);
    assert.deepEqual(lessor.keepAlive(1), { id: 1, ttlSeconds: 10 });
    clock.advance(9_999); // 15.999 s after the grant, 9.999 s after the renewal
    assert.deepEqual(expired, []);
    clock.advance(1);
    assert.deepEqual(expired, [1]);
  });

  void test('leases expire in order of expiry, on one timer', () => {
    const { clock, lessor, expired } = setup();
    lessor.add(1, 30);
    lessor.add(2, 10);
    lessor.add(3, 20);
    assert.equal(clock.pending, 1, 'one timer for the earliest expiry');
    clock.advance(10_000);
    assert.deepEqual(expired, [2]);
    clock.advance(10_000);
    assert.deepEqual(expired, [2, 3]);
    clock.advance(10_000);
    assert.deepEqual(expired, [2, 3, 1]);
    lessor.remove(1);
    lessor.remove(2);
    lessor.remove(3);
    clock.advance(0);
    assert.equal(clock.pending, 0, 'no timer once no lease is left');
  });

  void test('a removed (revoked) lease never expires and is not found', () => {
    const { clock, lessor, expired } = setup();
    lessor.add(1, 10);
    lessor.remove(1);
    clock.advance(20_000);
    assert.deepEqual(expired, []);
    assert.equal(lessor.has(1), false);
    assert.throws(() => lessor.keepAlive(1), NotFoundError);
    assert.throws(() => lessor.keepAlive(42), NotFoundError);
  });

  void test('when the backend cannot revoke an expired lease, it is expired again', () => {
    const { clock, lessor, expired } = setup();
    lessor.add(1, 10);
    clock.advance(10_000);
    assert.deepEqual(expired, [1]);
    lessor.expiryFailed(1);
    clock.advance(0);
    assert.deepEqual(expired, [1, 1]);
  });

  void test('close stops expiry', () => {
    const { clock, lessor, expired } = setup();
    lessor.add(1, 10);
    lessor.close();
    assert.equal(clock.pending, 0);
    clock.advance(20_000);
    assert.deepEqual(expired, []);
  });
});
