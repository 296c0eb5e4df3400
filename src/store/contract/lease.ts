/**
 * The Store contract: leases: grant, keep alive, time to live, revoke, expiry.
 * Part of `runStoreContract` (../contract.ts); every backend runs it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NotFoundError } from '../../core/errors.ts';
import { type ContractContext, describeEvent, record } from './harness.ts';

export function leaseContract({ withStore, waitForEvents, waitFor }: ContractContext): void {
  void describe('leases', () => {
    void test('grant, attach keys, time to live, keep alive and revoke', () =>
      withStore(async (store) => {
        const lease = await store.grantLease(60);
        assert.equal(lease.ttlSeconds, 60);
        assert.ok(Number.isSafeInteger(lease.id) && lease.id > 0);
        const other = await store.grantLease(60);
        assert.notEqual(other.id, lease.id);
        assert.equal((await store.status()).revision, 0, 'a grant is not a key change');
        await store.put('l/b', '1', { lease: lease.id });
        await store.put('l/a', '1', { lease: lease.id });
        await store.put('l/free', '1');
        assert.equal((await store.get('l/a'))?.lease, lease.id);
        const ttl = await store.leaseTimeToLive(lease.id);
        assert.equal(ttl.id, lease.id);
        assert.equal(ttl.ttlSeconds, 60);
        assert.ok(
          ttl.remainingSeconds > 0 && ttl.remainingSeconds <= 60,
          `remaining ${ttl.remainingSeconds}`,
        );
        assert.deepEqual(ttl.keys, ['l/a', 'l/b']);
        assert.deepEqual(await store.keepAlive(lease.id), { id: lease.id, ttlSeconds: 60 });

        const watch = record(store, { prefix: 'l/' });
        const before = (await store.status()).revision;
        await store.revokeLease(lease.id);
        await waitForEvents(watch, 2, 'revoke events');
        assert.deepEqual(watch.events.map(describeEvent), [
          `delete l/a@${before + 1}`,
          `delete l/b@${before + 1}`,
        ]);
        assert.equal((await store.status()).revision, before + 1, 'one revision for all the keys');
        assert.deepEqual(
          (await store.range({ prefix: 'l/' })).kvs.map((kv) => kv.key),
          ['l/free'],
        );
        await assert.rejects(store.leaseTimeToLive(lease.id), NotFoundError);
        await assert.rejects(store.keepAlive(lease.id), NotFoundError);
        await assert.rejects(store.revokeLease(lease.id), NotFoundError);
        await assert.rejects(store.put('l/c', '1', { lease: lease.id }), NotFoundError);
        // Revoking a lease with no keys moves nothing.
        await store.revokeLease(other.id);
        assert.equal((await store.status()).revision, before + 1);
      }));

    void test('unknown leases are NotFoundError for keep alive, revoke and time to live', () =>
      withStore(async (store) => {
        await assert.rejects(store.keepAlive(424_242), NotFoundError);
        await assert.rejects(store.revokeLease(424_242), NotFoundError);
        await assert.rejects(store.leaseTimeToLive(424_242), NotFoundError);
      }));

    void test('a put without a lease detaches the key from its lease', () =>
      withStore(async (store) => {
        const lease = await store.grantLease(60);
        await store.put('d/k', '1', { lease: lease.id });
        await store.put('d/k', '2');
        assert.equal((await store.get('d/k'))?.lease, 0);
        assert.deepEqual((await store.leaseTimeToLive(lease.id)).keys, []);
        await store.revokeLease(lease.id);
        assert.equal((await store.get('d/k'))?.value, '2');
      }));

    void test('keepAlive renews a lease to its full TTL', () =>
      withStore(async (store) => {
        const lease = await store.grantLease(3);
        // Let some of the TTL pass (observed, not slept on), then renew.
        await waitFor(async () => (await store.leaseTimeToLive(lease.id)).remainingSeconds <= 2.5, {
          timeoutMs: 10_000,
        });
        assert.deepEqual(await store.keepAlive(lease.id), { id: lease.id, ttlSeconds: 3 });
        const renewed = await store.leaseTimeToLive(lease.id);
        assert.ok(renewed.remainingSeconds > 2.5, `remaining after keepAlive: ${renewed.remainingSeconds}`);
      }));

    void test('an expired lease deletes its keys in one revision and watchers see it', () =>
      withStore(async (store) => {
        const lease = await store.grantLease(1);
        await store.put('e/node-1', 'up', { lease: lease.id });
        await store.put('e/node-1/alloc', 'x', { lease: lease.id });
        await store.put('e/static', 'stays');
        const watch = record(store, { prefix: 'e/', prevKv: true });
        await waitForEvents(watch, 2, 'lease expiry');
        assert.deepEqual(
          watch.events.map((event) => [event.type, event.kv.key, event.prevKv?.value]),
          [
            ['delete', 'e/node-1', 'up'],
            ['delete', 'e/node-1/alloc', 'x'],
          ],
        );
        assert.equal(watch.events[0]?.kv.modRevision, watch.events[1]?.kv.modRevision);
        assert.equal(watch.events[0]?.kv.modRevision, 4);
        assert.deepEqual(
          (await store.range({ prefix: 'e/' })).kvs.map((kv) => kv.key),
          ['e/static'],
        );
        await assert.rejects(store.keepAlive(lease.id), NotFoundError);
        await assert.rejects(store.leaseTimeToLive(lease.id), NotFoundError);
      }));
  });
}
