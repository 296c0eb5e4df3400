/**
 * The sqlite store's leases on a FakeClock: expiry, renewal and revoke seen through the Store API,
 * with time moved by the test instead of slept through.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FakeClock } from '../../core/clock.ts';
import { NotFoundError } from '../../core/errors.ts';
import { waitFor } from '../../testing/wait.ts';
import type { WatchEvent } from '../types.ts';
import { SqliteStore } from './sqlite-store.ts';

const root = mkdtempSync(join(tmpdir(), 'unum-lease-clock-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** Lets the write queue (flushed from setImmediate) commit what is queued. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
};

void describe('sqlite store leases on a fake clock', () => {
  void test('a lease expires exactly when its TTL has passed, deleting its keys at one revision', async () => {
    const clock = new FakeClock();
    const store = new SqliteStore({ path: ':memory:', clock });
    try {
      const lease = await store.grantLease(10);
      await store.put('node/1', 'up', { lease: lease.id }); // 1
      await store.put('node/1/alloc', 'x', { lease: lease.id }); // 2
      await store.put('node/static', 'stays'); // 3
      const events: WatchEvent[] = [];
      store.watch({ prefix: 'node/' }, { onEvents: (batch) => events.push(...batch) });

      clock.advance(9_999);
      await settle();
      assert.equal((await store.status()).revision, 3, 'not expired 1 ms before its TTL');
      assert.equal((await store.leaseTimeToLive(lease.id)).remainingSeconds, 0.001);

      clock.advance(1);
      await waitFor(() => events.length === 2);
      assert.deepEqual(
        events.map((e) => `${e.type} ${e.kv.key}@${e.kv.modRevision}`),
        ['delete node/1@4', 'delete node/1/alloc@4'],
      );
      assert.deepEqual(
        (await store.range({ prefix: 'node/' })).kvs.map((kv) => kv.key),
        ['node/static'],
      );
      await assert.rejects(store.keepAlive(lease.id), NotFoundError);
      await assert.rejects(store.put('node/2', 'up', { lease: lease.id }), NotFoundError);
    } finally {
      await store.close();
    }
  });

  void test('keepAlive postpones the expiry by a full TTL from the renewal', async () => {
    const clock = new FakeClock();
    const store = new SqliteStore({ path: ':memory:', clock });
    try {
      const lease = await store.grantLease(10);
      await store.put('k', 'v', { lease: lease.id });
      clock.advance(8_000);
      await store.keepAlive(lease.id);
      clock.advance(9_999); // 17.999 s after the grant
      await settle();
      assert.equal((await store.get('k'))?.value, 'v');
      clock.advance(1);
      await waitFor(async () => (await store.get('k')) === undefined);
    } finally {
      await store.close();
    }
  });

  void test('revoke deletes the keys now, and the lease never expires afterwards', async () => {
    const clock = new FakeClock();
    const store = new SqliteStore({ path: ':memory:', clock });
    try {
      const lease = await store.grantLease(10);
      await store.put('a', '1', { lease: lease.id }); // 1
      await store.put('b', '1', { lease: lease.id }); // 2
      await store.revokeLease(lease.id); // 3
      assert.deepEqual((await store.range({ prefix: '' })).kvs, []);
      assert.equal((await store.status()).revision, 3);
      clock.advance(60_000);
      await settle();
      assert.equal((await store.status()).revision, 3);
      assert.equal(clock.pending, 0, 'no expiry timer left');
    } finally {
      await store.close();
    }
  });

  void test('on reopen every lease starts a full TTL again', async () => {
    const path = join(root, 'reopen.db');
    const clock = new FakeClock();
    const first = new SqliteStore({ path, clock });
    const lease = await first.grantLease(10);
    await first.put('k', 'v', { lease: lease.id });
    clock.advance(9_000);
    await first.close();

    const second = new SqliteStore({ path, clock });
    try {
      assert.equal((await second.leaseTimeToLive(lease.id)).remainingSeconds, 10);
      clock.advance(9_999);
      await settle();
      assert.equal((await second.get('k'))?.value, 'v');
      clock.advance(1);
      await waitFor(async () => (await second.get('k')) === undefined);
    } finally {
      await second.close();
    }
  });
});
