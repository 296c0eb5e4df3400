/**
 * The Store contract: close.
 * Part of `runStoreContract` (../contract.ts); every backend runs it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UnavailableError } from '../../core/errors.ts';
import { type ContractContext, record } from './harness.ts';

export function lifecycleContract({ newStore, waitFor }: ContractContext): void {
  void describe('close', () => {
    void test('after close every call fails with UnavailableError and watches end', () => {
      return (async () => {
        const store = await newStore();
        await store.put('k', 'v');
        const lease = await store.grantLease(60);
        const watch = record(store, { prefix: '' });
        await store.close();
        await store.close();
        await waitFor(() => watch.errors.length > 0);
        assert.ok(watch.errors[0] instanceof UnavailableError, `got ${String(watch.errors[0])}`);
        const calls: Array<[string, () => Promise<unknown>]> = [
          ['get', () => store.get('k')],
          ['range', () => store.range({ prefix: '' })],
          ['put', () => store.put('k', 'w')],
          ['delete', () => store.delete({ key: 'k' })],
          ['txn', () => store.txn({ success: [] })],
          ['grantLease', () => store.grantLease(10)],
          ['keepAlive', () => store.keepAlive(lease.id)],
          ['revokeLease', () => store.revokeLease(lease.id)],
          ['leaseTimeToLive', () => store.leaseTimeToLive(lease.id)],
          ['compact', () => store.compact(1)],
          ['status', () => store.status()],
        ];
        for (const [what, call] of calls) await assert.rejects(call(), UnavailableError, what);
        let inside = true;
        const late: Array<{ err: Error; inside: boolean }> = [];
        store.watch({ key: 'k' }, { onEvents() {}, onError: (err) => late.push({ err, inside }) });
        inside = false;
        await waitFor(() => late.length > 0);
        assert.ok(late[0]?.err instanceof UnavailableError);
        assert.equal(late[0].inside, false, 'not called from inside watch()');
      })();
    });
  });
}
