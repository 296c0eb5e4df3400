import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, test } from 'node:test';
import { InvalidError, UnavailableError } from '../../core/errors.ts';
import { waitFor } from '../../testing/wait.ts';
import { runStoreContract } from '../contract.ts';
import { createStore } from '../index.ts';
import type { WatchEvent } from '../types.ts';
import { SqliteStore, prefixEnd, type SynchronousLevel } from './sqlite-store.ts';

const root = mkdtempSync(join(tmpdir(), 'unum-sqlite-store-'));
after(() => rmSync(root, { recursive: true, force: true }));
let files = 0;
const newFile = (): string => join(root, `store-${++files}.db`);

runStoreContract('sqlite (file)', async () => new SqliteStore({ path: newFile() }));
runStoreContract(
  'sqlite (file, synchronous=full)',
  async () => new SqliteStore({ path: newFile(), synchronous: 'full' }),
);
runStoreContract('memory:', () => createStore('memory:'));

/** Reads a closed store file directly, to check what is on disk. */
function inspect<T>(path: string, fn: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

void describe('sqlite store', () => {
  void test('keys, history, the revision, the compaction and leases survive close and reopen', async () => {
    const path = newFile();
    const first = new SqliteStore({ path });
    await first.put('a', '1'); // 1
    await first.put('a', '2'); // 2
    await first.put('b', '1'); // 3
    await first.delete({ key: 'b' }); // 4
    await first.put('c', '1'); // 5
    await first.compact(2);
    const lease = await first.grantLease(60);
    await first.put('leased', 'x', { lease: lease.id }); // 6
    await first.close();

    const second = new SqliteStore({ path });
    try {
      assert.deepEqual(await second.status(), { revision: 6, compactRevision: 2, backend: 'sqlite' });
      assert.deepEqual(
        (await second.range({ prefix: '' })).kvs.map((kv) => [kv.key, kv.value, kv.modRevision]),
        [
          ['a', '2', 2],
          ['c', '1', 5],
          ['leased', 'x', 6],
        ],
      );
      assert.equal((await second.get('b', { revision: 3 }))?.value, '1');
      const events: WatchEvent[] = [];
      const watcher = second.watch(
        { prefix: '', fromRevision: 2 },
        { onEvents: (batch) => events.push(...batch) },
      );
      await waitFor(() => events.length === 5);
      assert.deepEqual(
        events.map((e) => `${e.type} ${e.kv.key}@${e.kv.modRevision}`),
        ['put a@2', 'put b@3', 'delete b@4', 'put c@5', 'put leased@6'],
      );
      watcher.cancel();
      assert.equal((await second.put('d', '1')).revision, 7);
      assert.deepEqual((await second.leaseTimeToLive(lease.id)).keys, ['leased']);
      const fresh = await second.grantLease(60);
      assert.notEqual(fresh.id, lease.id, 'lease ids are not reused');
    } finally {
      await second.close();
    }
  });

  void test('leases survive a reopen with a fresh TTL and still expire afterwards', async () => {
    const path = newFile();
    const first = new SqliteStore({ path });
    const lease = await first.grantLease(3);
    await first.put('node/1', 'up', { lease: lease.id });
    await waitFor(async () => (await first.leaseTimeToLive(lease.id)).remainingSeconds <= 2, {
      timeoutMs: 10_000,
    });
    await first.close();

    const second = new SqliteStore({ path });
    try {
      const ttl = await second.leaseTimeToLive(lease.id);
      assert.ok(ttl.remainingSeconds > 2, `remaining after reopen: ${ttl.remainingSeconds}`);
      assert.deepEqual(ttl.keys, ['node/1']);
      assert.equal((await second.get('node/1'))?.value, 'up');
      const events: WatchEvent[] = [];
      second.watch({ key: 'node/1' }, { onEvents: (batch) => events.push(...batch) });
      await waitFor(() => events.length > 0, { timeoutMs: 15_000 });
      assert.equal(events[0]?.type, 'delete');
      assert.equal(await second.get('node/1'), undefined);
    } finally {
      await second.close();
    }
  });

  for (const synchronous of ['normal', 'full'] as const) {
    void test(`synchronous=${synchronous}: a file reopened after kill -9 of the writer has every acknowledged write`, async () => {
      const path = newFile();
      const acknowledged = await runCrashWriter(path, synchronous, 2000);
      assert.ok(acknowledged.length >= 2000, `only ${acknowledged.length} acknowledgements`);
      const store = new SqliteStore({ path });
      try {
        const lastAcknowledged = Math.max(...acknowledged.map((ack) => ack.revision));
        const { revision } = await store.status();
        assert.ok(revision >= lastAcknowledged, `revision ${revision} < acknowledged ${lastAcknowledged}`);
        const { kvs } = await store.range({ prefix: 'crash/' });
        const byKey = new Map(kvs.map((kv) => [kv.key, kv]));
        const missing: string[] = [];
        for (const ack of acknowledged) {
          const kv = byKey.get(ack.key);
          if (kv === undefined) {
            missing.push(ack.key);
            continue;
          }
          assert.equal(kv.value, `value-${ack.key.slice('crash/'.length)}`);
          assert.equal(kv.modRevision, ack.revision);
        }
        assert.deepEqual(missing, [], `${missing.length} acknowledged keys lost`);
        // Every committed revision has its key: nothing half-written.
        assert.equal(kvs.length, revision);
        // And the store goes on from there.
        assert.equal((await store.put('after-crash', 'ok')).revision, revision + 1);
      } finally {
        await store.close();
      }
    });
  }

  void test('writes launched together are group-committed; compares see earlier writes of the batch', async () => {
    const store = new SqliteStore({ path: newFile() });
    try {
      const { revision } = await store.put('cas', 'v0');
      const before = store.stats().commits;
      const attempts = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          store.txn({
            compare: [{ key: 'cas', target: 'mod', op: '=', value: revision }],
            success: [{ type: 'put', key: 'cas', value: `w${i}` }],
          }),
        ),
      );
      assert.equal(store.stats().commits - before, 1, 'one SQLite transaction for the 20');
      assert.equal(attempts.filter((result) => result.succeeded).length, 1);
      assert.equal(attempts[0]?.succeeded, true, 'the first in line wins');
      const puts = await Promise.all(Array.from({ length: 200 }, (_, i) => store.put(`g/${i}`, `${i}`)));
      assert.equal(store.stats().commits - before, 2);
      assert.deepEqual(
        puts.map((p) => p.revision),
        Array.from({ length: 200 }, (_, i) => revision + 2 + i),
      );
    } finally {
      await store.close();
    }
  });

  void test('synchronous=normal flushes the WAL in the background and lets go of it on close', async () => {
    const path = newFile();
    const store = new SqliteStore({ path });
    const full = new SqliteStore({ path: newFile(), synchronous: 'full' });
    for (let i = 0; i < 300; i++) {
      await store.put(`k/${i % 10}`, `${i}`);
      await full.put(`k/${i % 10}`, `${i}`);
    }
    assert.ok(store.stats().walSyncs > 0, 'background WAL flushes with normal');
    assert.equal(full.stats().walSyncs, 0, 'none with full: every commit fsyncs the WAL');
    await full.close();
    // Closing while a flush may be in flight waits for it, then closes the descriptor.
    await store.put('last', 'x');
    await store.close();
    if (existsSync('/proc/self/fd')) {
      const open = readdirSync('/proc/self/fd').flatMap((fd) => {
        try {
          return [readlinkSync(`/proc/self/fd/${fd}`)];
        } catch {
          return [];
        }
      });
      assert.deepEqual(
        open.filter((target) => target.startsWith(path)),
        [],
      );
    }
    const reopened = new SqliteStore({ path });
    try {
      assert.equal((await reopened.get('last'))?.value, 'x');
      assert.equal((await reopened.get('k/9'))?.value, '299');
    } finally {
      await reopened.close();
    }
  });

  void test('writes accepted before close are committed', async () => {
    const path = newFile();
    const store = new SqliteStore({ path });
    const writes = Array.from({ length: 5 }, (_, i) => store.put(`w/${i}`, `${i}`));
    await store.close();
    assert.deepEqual(
      (await Promise.all(writes)).map((r) => r.revision),
      [1, 2, 3, 4, 5],
    );
    const reopened = new SqliteStore({ path });
    try {
      assert.equal((await reopened.range({ prefix: 'w/' })).count, 5);
    } finally {
      await reopened.close();
    }
  });

  void test('compaction deletes the history rows no revision from the compaction on needs', async () => {
    const path = newFile();
    const store = new SqliteStore({ path });
    for (let i = 1; i <= 100; i++) await store.put('a', `${i}`); // 1..100
    await store.put('b', '1'); // 101
    await store.delete({ key: 'b' }); // 102
    await store.put('c', '1'); // 103
    await store.compact(103);
    await store.close();
    const rows = inspect(path, (db) =>
      db.prepare('SELECT key, mod_revision FROM history ORDER BY mod_revision').all(),
    ).map((row) => `${String(row['key'])}@${String(row['mod_revision'])}`);
    // a@100 is the value of a at 103; the tombstone of b and everything older went.
    assert.deepEqual(rows, ['a@100', 'c@103']);
  });

  void test('a second store on the same file is refused while the first is open', async () => {
    const path = newFile();
    const first = new SqliteStore({ path });
    await first.put('k', 'v');
    assert.throws(() => new SqliteStore({ path }), UnavailableError);
    await first.close();
    const second = new SqliteStore({ path });
    assert.equal((await second.get('k'))?.value, 'v');
    await second.close();
  });

  void test('a file written by a newer schema is refused', () => {
    const path = newFile();
    const db = new DatabaseSync(path);
    db.exec('PRAGMA user_version = 99');
    db.close();
    assert.throws(() => new SqliteStore({ path }), InvalidError);
  });

  void test('prefix ends sort after every key with the prefix, in SQLite byte order', () => {
    assert.equal(prefixEnd('a/'), 'a0');
    assert.equal(prefixEnd('\u{10FFFF}'), prefixEnd(''));
    assert.equal(prefixEnd('a\u{10FFFF}'), 'b');
    assert.equal(prefixEnd('\uD7FF'), '\uE000');
    assert.ok(prefixEnd('') instanceof Uint8Array);
  });
});

interface Acknowledgement {
  revision: number;
  key: string;
}

/** Runs crash-writer.ts, SIGKILLs it after `killAfter` acknowledgements, returns all it printed. */
async function runCrashWriter(
  path: string,
  synchronous: SynchronousLevel,
  killAfter: number,
): Promise<Acknowledgement[]> {
  const script = new URL('./crash-writer.ts', import.meta.url).pathname;
  const child = spawn(process.execPath, [script, path, synchronous], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(signal ?? code)),
  );
  const acknowledged: Acknowledgement[] = [];
  const lines = createInterface({ input: child.stdout });
  for await (const line of lines) {
    const [revision, key] = line.split(' ');
    acknowledged.push({ revision: Number(revision), key: key! });
    if (acknowledged.length === killAfter) child.kill('SIGKILL');
  }
  const status = await exited;
  assert.equal(status, 'SIGKILL', `the writer should have been killed mid-stream (stderr: ${stderr})`);
  return acknowledged;
}
