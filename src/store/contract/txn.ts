/**
 * The Store contract: transactions: compares, branches, atomicity, group commit.
 * Part of `runStoreContract` (../contract.ts); every backend runs it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NotFoundError } from '../../core/errors.ts';
import type { KeyValue, Store, TxnResult } from '../types.ts';
import { type ContractContext } from './harness.ts';

export function txnContract({ withStore }: ContractContext): void {
  void describe('transactions', () => {
    void test('compares choose the branch; each branch returns its op results', () =>
      withStore(async (store) => {
        const { revision } = await store.put('acct', '100');
        const ok = await store.txn({
          compare: [
            { key: 'acct', target: 'mod', op: '=', value: revision },
            { key: 'acct', target: 'value', op: '=', value: '100' },
          ],
          success: [
            { type: 'put', key: 'acct', value: '90' },
            { type: 'put', key: 'log/1', value: 'debit 10' },
          ],
          failure: [{ type: 'get', key: 'acct' }],
        });
        assert.equal(ok.succeeded, true);
        assert.equal(ok.revision, revision + 1);
        assert.equal(ok.results.length, 2);
        assert.deepEqual(ok.results[0], {
          type: 'put',
          prevKv: { key: 'acct', value: '100', createRevision: 1, modRevision: 1, version: 1, lease: 0 },
        });
        assert.deepEqual(ok.results[1], { type: 'put' });

        const stale = await store.txn({
          compare: [{ key: 'acct', target: 'mod', op: '=', value: revision }],
          success: [{ type: 'put', key: 'acct', value: '80' }],
          failure: [
            { type: 'get', key: 'acct' },
            { type: 'get', prefix: 'log/' },
          ],
        });
        assert.equal(stale.succeeded, false);
        assert.equal(stale.revision, revision + 1);
        const [acct, logs] = stale.results as Array<{ type: 'get'; kvs: KeyValue[] }>;
        assert.deepEqual(
          acct?.kvs.map((kv) => kv.value),
          ['90'],
        );
        assert.deepEqual(
          logs?.kvs.map((kv) => kv.key),
          ['log/1'],
        );
        assert.equal((await store.get('acct'))?.value, '90');
      }));

    void test('a missing key compares as mod, create, version and lease 0 and no value', () =>
      withStore(async (store) => {
        const holds = async (compare: Parameters<Store['txn']>[0]['compare']): Promise<boolean> =>
          (await store.txn(compare === undefined ? { success: [] } : { compare, success: [] })).succeeded;
        for (const target of ['mod', 'create', 'version', 'lease'] as const) {
          assert.equal(await holds([{ key: 'ghost', target, op: '=', value: 0 }]), true, `${target} = 0`);
          assert.equal(await holds([{ key: 'ghost', target, op: '>', value: 0 }]), false, `${target} > 0`);
        }
        assert.equal(await holds([{ key: 'ghost', target: 'value', op: '=', value: '' }]), false);
        assert.equal(await holds([{ key: 'ghost', target: 'value', op: '!=', value: 'x' }]), true);
        // The usual "create if absent".
        const created = await store.txn({
          compare: [{ key: 'ghost', target: 'create', op: '=', value: 0 }],
          success: [{ type: 'put', key: 'ghost', value: 'boo' }],
        });
        assert.equal(created.succeeded, true);
        assert.equal(await holds([{ key: 'ghost', target: 'create', op: '=', value: 0 }]), false);
      }));

    void test('compares on create, version, value and lease with every operator', () =>
      withStore(async (store) => {
        const lease = await store.grantLease(60);
        await store.put('other', '0'); // 1
        await store.put('k', 'a', { lease: lease.id }); // 2
        await store.put('k', 'b', { lease: lease.id }); // 3
        const holds = async (
          compare: NonNullable<Parameters<Store['txn']>[0]['compare']>,
        ): Promise<boolean> => (await store.txn({ compare, success: [] })).succeeded;
        assert.equal(await holds([{ key: 'k', target: 'create', op: '=', value: 2 }]), true);
        assert.equal(await holds([{ key: 'k', target: 'create', op: '<', value: 3 }]), true);
        assert.equal(await holds([{ key: 'k', target: 'create', op: '>', value: 2 }]), false);
        assert.equal(await holds([{ key: 'k', target: 'mod', op: '>', value: 2 }]), true);
        assert.equal(await holds([{ key: 'k', target: 'mod', op: '!=', value: 3 }]), false);
        assert.equal(await holds([{ key: 'k', target: 'version', op: '=', value: 2 }]), true);
        assert.equal(await holds([{ key: 'k', target: 'version', op: '<', value: 2 }]), false);
        assert.equal(await holds([{ key: 'k', target: 'value', op: '=', value: 'b' }]), true);
        assert.equal(await holds([{ key: 'k', target: 'value', op: '!=', value: 'b' }]), false);
        assert.equal(await holds([{ key: 'k', target: 'lease', op: '=', value: lease.id }]), true);
        assert.equal(await holds([{ key: 'k', target: 'lease', op: '!=', value: 0 }]), true);
        assert.equal(await holds([{ key: 'other', target: 'lease', op: '=', value: 0 }]), true);
        // All compares must hold.
        assert.equal(
          await holds([
            { key: 'k', target: 'version', op: '=', value: 2 },
            { key: 'other', target: 'version', op: '=', value: 2 },
          ]),
          false,
        );
      }));

    void test('a get inside a transaction sees the earlier writes of the same transaction', () =>
      withStore(async (store) => {
        await store.put('g/old', 'x');
        const result = await store.txn({
          success: [
            { type: 'put', key: 'g/new', value: 'y' },
            { type: 'delete', key: 'g/old' },
            { type: 'get', prefix: 'g/' },
          ],
        });
        const get = result.results[2] as { type: 'get'; kvs: KeyValue[] };
        assert.deepEqual(
          get.kvs.map((kv) => [kv.key, kv.modRevision]),
          [['g/new', 2]],
        );
        assert.deepEqual(result.results[1], { type: 'delete', deleted: 1 });
      }));

    void test('of 20 compare-and-swaps launched at once on one modRevision, exactly one wins', () =>
      withStore(async (store) => {
        const { revision } = await store.put('cas', 'v0');
        const attempts = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            store.txn({
              compare: [{ key: 'cas', target: 'mod', op: '=', value: revision }],
              success: [{ type: 'put', key: 'cas', value: `writer-${i}` }],
              failure: [{ type: 'get', key: 'cas' }],
            }),
          ),
        );
        const winners = attempts.flatMap((result, i) => (result.succeeded ? [i] : []));
        assert.equal(winners.length, 1, `winners: ${winners.join(', ')}`);
        const winner = `writer-${winners[0]}`;
        assert.equal((await store.get('cas'))?.value, winner);
        assert.equal((await store.get('cas'))?.modRevision, revision + 1);
        assert.equal((await store.status()).revision, revision + 1);
        for (const result of attempts) {
          if (result.succeeded) continue;
          const seen = (result.results[0] as { type: 'get'; kvs: KeyValue[] }).kvs[0];
          assert.equal(seen?.value, winner, 'a loser sees the winner');
        }
      }));

    void test('concurrent read-modify-write loops with compare-and-swap lose no increment', () =>
      withStore(async (store) => {
        await store.put('counter', '0');
        const increment = async (): Promise<number> => {
          for (let attempt = 0; attempt < 1000; attempt++) {
            const current = (await store.get('counter'))!;
            const result: TxnResult = await store.txn({
              compare: [{ key: 'counter', target: 'mod', op: '=', value: current.modRevision }],
              success: [{ type: 'put', key: 'counter', value: String(Number(current.value) + 1) }],
            });
            if (result.succeeded) return result.revision;
          }
          throw new Error('increment: too many conflicts');
        };
        const workers = Array.from({ length: 8 }, async () => {
          const revisions: number[] = [];
          for (let i = 0; i < 10; i++) revisions.push(await increment());
          return revisions;
        });
        const revisions = (await Promise.all(workers)).flat();
        assert.equal((await store.get('counter'))?.value, '80');
        assert.equal((await store.get('counter'))?.version, 81);
        assert.equal(new Set(revisions).size, 80, 'each successful increment has its own revision');
      }));

    void test('a put naming an unknown lease fails with NotFoundError and writes nothing', () =>
      withStore(async (store) => {
        await store.put('before', '1');
        await assert.rejects(store.put('k', 'v', { lease: 987_654 }), NotFoundError);
        await assert.rejects(
          store.txn({
            success: [
              { type: 'put', key: 'k1', value: 'v' },
              { type: 'put', key: 'k2', value: 'v', lease: 987_654 },
            ],
          }),
          NotFoundError,
        );
        assert.equal(await store.get('k'), undefined);
        assert.equal(await store.get('k1'), undefined);
        assert.equal((await store.status()).revision, 1);
        // The store keeps working, and writes that came along with the refused one were applied.
        const [a, refused, b] = await Promise.allSettled([
          store.put('x', '1'),
          store.put('y', '1', { lease: 987_654 }),
          store.put('z', '1'),
        ]);
        assert.equal(a.status, 'fulfilled');
        assert.equal(refused.status, 'rejected');
        assert.equal(b.status, 'fulfilled');
        assert.deepEqual(
          (await store.range({ prefix: '' })).kvs.map((kv) => kv.key),
          ['before', 'x', 'z'],
        );
        assert.equal((await store.status()).revision, 3);
      }));
  });
}
