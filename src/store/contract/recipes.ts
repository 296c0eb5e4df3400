/**
 * The Store contract: the lock and the election recipes (../recipes/) on the backend — mutual
 * exclusion with fencing, first come first served, each waiter watching only its predecessor, a
 * lost lease handing the lock on, sessions. Part of `runStoreContract` (../contract.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Election } from '../recipes/election.ts';
import { Mutex, type Lock } from '../recipes/mutex.ts';
import { Session } from '../recipes/session.ts';
import type { Store, WatchOptions } from '../types.ts';
import type { ContractContext } from './harness.ts';

/** The store, recording the selector of every watch made through it. */
function watching(store: Store): { store: Store; watched: string[] } {
  const watched: string[] = [];
  const proxy = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'watch')
        return (options: WatchOptions, listener: Parameters<Store['watch']>[1]) => {
          watched.push(options.key ?? `${options.prefix}*`);
          return target.watch(options, listener);
        };
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { store: proxy, watched };
}

export function recipesContract({ withStore, waitFor }: ContractContext): void {
  void describe('lock and election recipes', () => {
    void test('a lock excludes: fenced increments by five contenders all land, one holder at a time', () =>
      withStore(async (store) => {
        await store.put('counter', '0');
        let inside = 0;
        let most = 0;
        const contender = async () => {
          const lease = await store.grantLease(60);
          const mutex = new Mutex(store, 'locks/c/', lease.id);
          for (let i = 0; i < 6; i++) {
            const lock = await mutex.lock();
            most = Math.max(most, ++inside);
            const n = Number((await store.get('counter'))!.value);
            await new Promise((r) => setImmediate(r));
            const res = await store.txn({
              compare: [...lock.fence],
              success: [{ type: 'put', key: 'counter', value: String(n + 1) }],
            });
            assert.ok(res.succeeded, 'a fenced write of the holder lands');
            inside--;
            await mutex.unlock(lock);
          }
        };
        await Promise.all([contender(), contender(), contender(), contender(), contender()]);
        assert.equal((await store.get('counter'))!.value, '30');
        assert.equal(most, 1, 'never two holders at once');
      }));

    void test('waiters are served in the order they came, each watching only the one before it', () =>
      withStore(async (raw) => {
        const { store, watched } = watching(raw);
        const leases = await Promise.all([1, 2, 3, 4].map(() => store.grantLease(60)));
        const mutexes = leases.map((l) => new Mutex(store, 'locks/q/', l.id));
        const first = await mutexes[0]!.lock();
        const order: number[] = [];
        const held: Promise<Lock>[] = [];
        for (const i of [1, 2, 3]) {
          held.push(
            mutexes[i]!.lock().then((lock) => {
              order.push(i);
              return lock;
            }),
          );
          // In line before the next one comes.
          await waitFor(async () => (await store.range({ prefix: 'locks/q/' })).kvs.length === i + 1);
        }
        await waitFor(() => watched.length >= 3, { description: 'three waiters watching' });
        const keys = (await store.range({ prefix: 'locks/q/' })).kvs
          .sort((a, b) => a.createRevision - b.createRevision)
          .map((kv) => kv.key);
        assert.deepEqual(watched, keys.slice(0, 3), 'each waiter watches its predecessor, no prefix');
        await mutexes[0]!.unlock(first);
        for (const [n, i] of [1, 2, 3].entries()) {
          const lock = await held[n]!;
          assert.deepEqual(order, [1, 2, 3].slice(0, n + 1));
          assert.ok(lock.revision > first.revision, 'fencing tokens grow');
          await mutexes[i]!.unlock(lock);
        }
        assert.equal(watched.length, 3, 'a release woke one waiter, which did not watch again');
      }));

    void test('a holder whose lease ends loses the lock: its fenced writes fail, the next waiter gets it', () =>
      withStore(async (store) => {
        const a = await store.grantLease(60);
        const b = await store.grantLease(60);
        const lockA = await new Mutex(store, 'locks/l/', a.id).lock();
        const waiting = new Mutex(store, 'locks/l/', b.id).lock();
        await store.revokeLease(a.id);
        const lockB = await waiting;
        assert.ok(lockB.revision > lockA.revision);
        const late = await store.txn({
          compare: [...lockA.fence],
          success: [{ type: 'put', key: 'guarded', value: 'from a deposed holder' }],
        });
        assert.equal(late.succeeded, false, 'the deposed holder cannot write');
        assert.equal(await store.get('guarded'), undefined);
      }));

    void test('tryLock takes a free lock and leaves no place behind when it is held; abort leaves the line', () =>
      withStore(async (store) => {
        const [a, b, c, d] = await Promise.all([1, 2, 3, 4].map(() => store.grantLease(60)));
        const held = await new Mutex(store, 'locks/t/', a!.id).lock();
        assert.equal(await new Mutex(store, 'locks/t/', b!.id).tryLock(), undefined);
        assert.equal((await store.range({ prefix: 'locks/t/' })).kvs.length, 1);
        const ac = new AbortController();
        const cWaits = new Mutex(store, 'locks/t/', c!.id).lock(ac.signal);
        await waitFor(async () => (await store.range({ prefix: 'locks/t/' })).kvs.length === 2);
        const dWaits = new Mutex(store, 'locks/t/', d!.id).lock();
        await waitFor(async () => (await store.range({ prefix: 'locks/t/' })).kvs.length === 3);
        ac.abort(new Error('gave up'));
        await assert.rejects(cWaits, /gave up/);
        await new Mutex(store, 'locks/t/', a!.id).unlock(held);
        const dLock = await dWaits;
        assert.equal((await new Mutex(store, 'locks/t/', d!.id).holder())?.key, dLock.key);
      }));

    void test('an election: the first candidate leads, the next takes office when it resigns, observers see both', () =>
      withStore(async (store) => {
        const election = new Election(store, 'elect/');
        const seen: (string | undefined)[] = [];
        const stop = election.observe((l) => seen.push(l?.value));
        const s1 = await Session.open(store, 60);
        const s2 = await Session.open(store, 60);
        const first = await election.campaign(s1.leaseId, 'server-1', AbortSignal.timeout(30_000));
        const second = election.campaign(s2.leaseId, 'server-2', AbortSignal.timeout(30_000));
        await waitFor(async () => (await store.range({ prefix: 'elect/' })).kvs.length === 2);
        assert.equal((await election.leader())?.value, 'server-1');
        await election.resign(first);
        const term2 = await second;
        assert.ok(term2.revision > first.revision);
        assert.equal((await election.leader())?.value, 'server-2');
        await s2.close();
        await waitFor(() => seen.at(-1) === undefined && seen.length >= 3, {
          description: `observed ${JSON.stringify(seen)}`,
        });
        assert.deepEqual(
          seen.filter((v, i) => i === 0 || v !== seen[i - 1]),
          [undefined, 'server-1', 'server-2', undefined].slice(seen[0] === undefined ? 0 : 1),
        );
        stop();
        await s1.close();
      }));

    void test('a session notices its lease is gone', () =>
      withStore(async (store) => {
        const s = await Session.open(store, 1);
        await store.revokeLease(s.leaseId);
        await waitFor(() => s.lost.aborted, { timeoutMs: 10_000, description: 'the session lost' });
        await s.close();
      }));
  });
}
