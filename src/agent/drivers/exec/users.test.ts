/** Task identities (./users.ts): uid leases per allocation and the `user:` allow-list. */
import assert from 'node:assert/strict';
import { lstat, mkdir, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tempDir } from '../../fixtures.ts';
import { UidPool, prepareTaskDirs, resolveTaskUser, uidRangeWarnings } from './users.ts';
import { ExecError } from '../types.ts';

void describe('uid leases', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  before(async () => {
    dir = await tempDir('unum-uids-');
  });
  after(async () => {
    await dir.cleanup();
  });

  void test('allocations get distinct uids; an allocation keeps its uid, also across agent restarts', async () => {
    const path = `${dir.path}/a`;
    const pool = new UidPool(path, { min: 300_000, max: 300_099 }, () => true);
    const uids = await Promise.all(Array.from({ length: 50 }, (_, i) => pool.acquire(`alloc-${i}`)));
    assert.equal(new Set(uids).size, 50);
    for (const uid of uids) assert.ok(uid >= 300_000 && uid <= 300_099);
    assert.equal(await pool.acquire('alloc-7'), uids[7]);
    const restarted = new UidPool(path, { min: 300_000, max: 300_099 }, () => true);
    assert.equal(await restarted.acquire('alloc-7'), uids[7]);
    assert.ok(!uids.includes(await restarted.acquire('alloc-new')));
  });

  void test('a full range reclaims the lease of an allocation with nothing running; else it is an error', async () => {
    const running = new Set(['x', 'y']);
    const pool = new UidPool(`${dir.path}/b`, { min: 310_000, max: 310_001 }, (id) => running.has(id));
    const x = await pool.acquire('x');
    const y = await pool.acquire('y');
    assert.notEqual(x, y);
    await assert.rejects(pool.acquire('z'), /no free task uid in 310000-310001/);
    running.delete('x');
    assert.equal(await pool.acquire('z'), x);
    // x lost its lease: it gets one again when one is free.
    await pool.release('y');
    assert.equal(await pool.acquire('x'), y);
  });

  void test('uids of accounts on the node are never handed out', async () => {
    // 65534 is nobody.
    const pool = new UidPool(`${dir.path}/c`, { min: 65_533, max: 65_534 }, () => true);
    assert.equal(await pool.acquire('one'), 65_533);
    await assert.rejects(pool.acquire('two'), /no free task uid/);
  });

  void test('a range that overlaps accounts is worth a warning', () => {
    assert.match(uidRangeWarnings({ min: 0, max: 10 }).join('\n'), /contains accounts of this node \(root=0/);
    assert.deepEqual(
      uidRangeWarnings({ min: 3_000_000_000, max: 3_000_065_535 }).filter((w) => w.includes('accounts')),
      [],
    );
  });
});

void describe('user: in a job', () => {
  void test('is refused unless allowed, with what the operator can do', async () => {
    await assert.rejects(resolveTaskUser('root', []), (err: unknown) => {
      assert.ok(err instanceof ExecError);
      assert.equal(
        err.message,
        'user "root" is not allowed on this node; the operator can allow it with --allow-task-user root',
      );
      return true;
    });
  });

  void test('an allowed user must exist', async () => {
    assert.deepEqual(await resolveTaskUser('root', ['root']), { uid: 0, gid: 0, name: 'root' });
    await assert.rejects(
      resolveTaskUser('no-such-user-x', ['no-such-user-x']),
      /does not exist on this node/,
    );
  });
});

void describe('task directories', () => {
  const asRoot = process.getuid?.() === 0 ? undefined : 'needs root (chown)';

  void test(
    'go to the task uid; a symlink the task left in place of one is replaced, not followed',
    { skip: asRoot },
    async () => {
      const dir = await tempDir('unum-taskdirs-');
      try {
        const task = join(dir.path, 'task');
        const victim = join(dir.path, 'victim');
        await mkdir(join(task, 'local', 'nested'), { recursive: true });
        await writeFile(join(task, 'local', 'nested', 'file'), 'x');
        await mkdir(victim, { mode: 0o755 });
        // A previous run of the task replaced its tmp/ with a link to somewhere else.
        await symlink(victim, join(task, 'tmp'));
        const id = { uid: 300_123, gid: 300_123 };
        await prepareTaskDirs({ task, private: ['local', 'secrets', 'tmp'].map((d) => join(task, d)) }, id);

        const v = await stat(victim);
        assert.equal(v.uid, 0);
        assert.equal(v.mode & 0o7777, 0o755);
        for (const d of ['local', 'secrets', 'tmp']) {
          const st = await lstat(join(task, d));
          assert.ok(st.isDirectory(), `${d} is a directory`);
          assert.equal(st.uid, id.uid);
          assert.equal(st.mode & 0o777, 0o700);
        }
        assert.equal(
          (await stat(join(task, 'local', 'nested', 'file'))).uid,
          id.uid,
          'handed over recursively',
        );
        const t = await stat(task);
        assert.equal(t.uid, 0);
        assert.equal(t.gid, id.gid);
        assert.equal(t.mode & 0o7777, 0o1770);
      } finally {
        await dir.cleanup();
      }
    },
  );
});
