/**
 * What goes wrong with etcd clients, each against a real etcd: watches across a member's SIGKILL
 * and restart, compaction seen by reads and by a resuming watch, lease keep-alive across a restart,
 * etcd's request size limit, unreachable and unresponsive members. Plus the places where the store
 * translates etcd's raw behaviour (see README.md, "Where etcd differs").
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { CompactedError, InvalidError, NotFoundError, UnavailableError } from '../../core/errors.ts';
import { ETCD_MISSING, type EtcdCluster, type EtcdMember, startEtcd } from '../../testing/etcd.ts';
import { freePort } from '../../testing/net.ts';
import { waitFor } from '../../testing/wait.ts';
import type { WatchEvent } from '../types.ts';
import { EtcdStore } from './etcd-store.ts';

const describeEvent = (e: WatchEvent): string => `${e.type} ${e.kv.key}@${e.kv.modRevision}`;

/**
 * Retries a write that failed with UnavailableError (an election on a loaded machine), as callers
 * are told to. A retried write may apply twice: the tests compare with what etcd recorded, not with
 * what they sent.
 */
async function retry<T>(write: () => Promise<T>): Promise<T> {
  let last: unknown;
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      return await write();
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      last = err;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw last;
}

function record(
  store: EtcdStore,
  options: Parameters<EtcdStore['watch']>[0],
): { events: WatchEvent[]; errors: Error[] } {
  const recorder = { events: [] as WatchEvent[], errors: [] as Error[] };
  store.watch(options, {
    onEvents: (batch) => recorder.events.push(...batch),
    onError: (err) => recorder.errors.push(err),
  });
  return recorder;
}

void describe('etcd store: a member killed and restarted (3 members)', () => {
  let cluster: EtcdCluster;
  before(async () => {
    cluster = await startEtcd({ members: 3 });
  });
  after(() => cluster.stop());

  /** A store on one follower (the one the test kills) and one on the two other members. */
  async function split(): Promise<{ victim: EtcdMember; watcher: EtcdStore; writer: EtcdStore }> {
    const victim = await cluster.follower();
    const others = cluster.members.filter((m) => m !== victim).map((m) => m.endpoint);
    return {
      victim,
      watcher: new EtcdStore({ url: `etcd://${victim.endpoint}` }),
      writer: new EtcdStore({ url: `etcd://${others.join(',')}` }),
    };
  }

  void test('a watch resumes after its member is SIGKILLed and restarted: no event lost, none twice', async () => {
    const { victim, watcher, writer } = await split();
    try {
      const start = (await retry(() => writer.put('resume/start', 'x'))).revision;
      const resumed = record(watcher, { prefix: 'resume/', fromRevision: start + 1 });
      // The reference: a watch on the members that stay up.
      const reference = record(writer, { prefix: 'resume/', fromRevision: start + 1 });
      for (let i = 0; i < 10; i++) await retry(() => writer.put(`resume/${i}`, 'a'));
      await waitFor(() => resumed.events.length >= 10, { description: 'events before the kill' });

      await victim.kill();
      // Changes the watcher cannot see while its member is down, including a multi-key revision.
      for (let i = 10; i < 20; i++) await retry(() => writer.put(`resume/${i}`, 'b'));
      await retry(() => writer.delete({ prefix: 'resume/1' }));
      await victim.start();
      for (let i = 20; i < 25; i++) await retry(() => writer.put(`resume/${i}`, 'c'));
      // A last write: anything delivered twice would come before it.
      const sentinel = (await retry(() => writer.put('resume/zz', 'end'))).revision;
      const done = (r: { events: WatchEvent[]; errors: Error[] }): boolean =>
        r.errors.length > 0 || r.events.some((e) => e.kv.modRevision === sentinel);
      await waitFor(() => done(resumed) && done(reference), {
        timeoutMs: 20_000,
        description: 'the sentinel',
      });
      assert.deepEqual(resumed.errors, []);
      assert.deepEqual(reference.errors, []);
      assert.deepEqual(resumed.events.map(describeEvent), reference.events.map(describeEvent));
      const seen = resumed.events.map(describeEvent);
      assert.equal(new Set(seen).size, seen.length, 'no event twice');
      const keys = new Set(resumed.events.map((e) => e.kv.key));
      for (let i = 0; i < 25; i++) assert.ok(keys.has(`resume/${i}`), `resume/${i} seen`);
      assert.ok(
        seen.filter((line) => line.startsWith('delete resume/1')).length >= 11,
        'the prefix delete seen',
      );
      assert.ok(watcher.watchStreamsOpened >= 2, 'the watch stream was re-established');
    } finally {
      await watcher.close();
      await writer.close();
    }
  });

  void test('a watch that resumes after its history was compacted ends with CompactedError', async () => {
    const { victim, watcher, writer } = await split();
    try {
      const first = await retry(() => writer.put('gone/0', 'x'));
      const watch = record(watcher, { key: 'gone/0', fromRevision: first.revision });
      await waitFor(() => watch.events.length === 1);
      await victim.kill();
      await retry(() => writer.put('gone/0', 'y'));
      const last = await retry(() => writer.put('gone/0', 'z'));
      await retry(() => writer.compact(last.revision));
      await victim.start();
      await waitFor(() => watch.errors.length > 0, { timeoutMs: 20_000, description: 'the watch ends' });
      assert.ok(watch.errors[0] instanceof CompactedError, `got ${String(watch.errors[0])}`);
      assert.equal(watch.errors[0].compactRevision, last.revision);
      assert.deepEqual(watch.events.map(describeEvent), [`put gone/0@${first.revision}`]);
      // Reads at a compacted revision, through the member that was down, are CompactedError too.
      await assert.rejects(watcher.get('gone/0', { revision: first.revision }), (err) => {
        assert.ok(err instanceof CompactedError);
        assert.equal(err.compactRevision, last.revision);
        return true;
      });
      assert.equal((await watcher.status()).compactRevision, last.revision, 'compacted by another client');
    } finally {
      await watcher.close();
      await writer.close();
    }
  });
});

void describe('etcd store: one member', () => {
  let cluster: EtcdCluster;
  let store: EtcdStore;
  before(async () => {
    cluster = await startEtcd({ members: 1 });
    store = new EtcdStore({ url: cluster.url });
  });
  after(async () => {
    await store.close();
    await cluster.stop();
  });

  void test('a kept-alive lease and its key outlive a SIGKILL and restart of the member; an idle one expires', async () => {
    const kept = await store.grantLease(2);
    const idle = await store.grantLease(2);
    await store.put('lease/kept', 'x', { lease: kept.id });
    await store.put('lease/idle', 'x', { lease: idle.id });
    let afterRestart = 0;
    let restarted = false;
    let stop = false;
    const renew = (async () => {
      while (!stop) {
        try {
          await store.keepAlive(kept.id);
          if (restarted) afterRestart++;
        } catch (err) {
          // Expected while the member is down; anything else fails the test.
          if (!(err instanceof UnavailableError)) throw err;
        }
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
    })();
    try {
      await cluster.members[0]!.kill();
      await cluster.members[0]!.start();
      restarted = true;
      // Renewals go on over a new keep-alive stream, for longer than the TTL.
      await waitFor(async () => afterRestart >= 10 && (await store.get('lease/idle')) === undefined, {
        timeoutMs: 20_000,
        description: 'renewals after the restart, and the idle lease gone',
      });
      assert.equal((await store.get('lease/kept'))?.lease, kept.id);
      assert.deepEqual((await store.leaseTimeToLive(kept.id)).keys, ['lease/kept']);
      await assert.rejects(store.keepAlive(idle.id), NotFoundError);
    } finally {
      stop = true;
      await renew;
    }
  });

  void test('a write over etcd’s request limit is InvalidError before it is sent; one just under it is written', async () => {
    const before = (await store.status()).revision;
    await assert.rejects(store.put('big', 'x'.repeat(2 * 1024 * 1024)), (err) => {
      assert.ok(err instanceof InvalidError);
      assert.match(err.message, /--max-request-bytes/);
      return true;
    });
    await assert.rejects(
      store.txn({
        success: Array.from({ length: 4 }, (_, i) => ({
          type: 'put' as const,
          key: `big/${i}`,
          value: 'y'.repeat(500_000),
        })),
      }),
      InvalidError,
    );
    assert.equal((await store.status()).revision, before, 'nothing was written');
    await store.put('big', 'z'.repeat(1_400_000));
    assert.equal((await store.get('big'))?.value.length, 1_400_000);
  });

  void test('etcd’s own "request is too large" is InvalidError too (a store URL that allows more than etcd)', async () => {
    const lax = new EtcdStore({ url: `${cluster.url}?max-request-bytes=4000000` });
    try {
      await assert.rejects(lax.put('big2', 'x'.repeat(1_700_000)), (err) => {
        assert.ok(err instanceof InvalidError, `got ${String(err)}`);
        assert.match(err.message, /max-request-bytes/);
        return true;
      });
    } finally {
      await lax.close();
    }
  });

  void test('a value != compare holds on a missing key, with writes in both branches (nested transactions)', async () => {
    const missing = await store.txn({
      compare: [{ key: 'neq/k', target: 'value', op: '!=', value: 'a' }],
      success: [{ type: 'put', key: 'neq/k', value: 'a' }],
      failure: [{ type: 'put', key: 'neq/other', value: 'f' }],
    });
    assert.equal(missing.succeeded, true);
    assert.deepEqual(missing.results, [{ type: 'put' }]);
    const same = await store.txn({
      compare: [
        { key: 'neq/k', target: 'value', op: '!=', value: 'a' },
        { key: 'neq/absent', target: 'value', op: '!=', value: 'b' },
      ],
      success: [{ type: 'put', key: 'neq/k', value: 'b' }],
      failure: [{ type: 'get', key: 'neq/k' }],
    });
    assert.equal(same.succeeded, false);
    assert.equal((same.results[0] as { kvs: Array<{ value: string }> }).kvs[0]?.value, 'a');
  });

  void test('a paused member: calls fail with UnavailableError at the deadline, saying what to do', async () => {
    const impatient = new EtcdStore({ url: `${cluster.url}?timeout=300ms` });
    try {
      await impatient.put('pause/k', 'v');
      cluster.members[0]!.pause();
      await assert.rejects(impatient.get('pause/k'), (err) => {
        assert.ok(err instanceof UnavailableError, `got ${String(err)}`);
        assert.match(err.message, /running and reachable/);
        return true;
      });
    } finally {
      cluster.members[0]!.resume();
      await impatient.close();
    }
    assert.equal((await store.get('pause/k'))?.value, 'v');
  });
});

void describe('etcd store: nothing listening', () => {
  test('every call is UnavailableError naming the member', async () => {
    const port = await freePort();
    const store = new EtcdStore({ url: `etcd://127.0.0.1:${port}?timeout=2s` });
    try {
      await assert.rejects(store.put('k', 'v'), (err) => {
        assert.ok(err instanceof UnavailableError, `got ${String(err)}`);
        assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
        return true;
      });
      await assert.rejects(store.status(), UnavailableError);
    } finally {
      await store.close();
    }
  });

  test('without etcd installed the test helper fails at once naming the package', async () => {
    const saved = process.env['UNUM_TEST_MISSING'];
    process.env['UNUM_TEST_MISSING'] = 'etcd';
    try {
      await assert.rejects(startEtcd(), { message: ETCD_MISSING });
    } finally {
      if (saved === undefined) delete process.env['UNUM_TEST_MISSING'];
      else process.env['UNUM_TEST_MISSING'] = saved;
    }
    assert.equal(ETCD_MISSING, 'etcd (etcd-server) is not installed: apt-get install etcd-server');
  });
});
