import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { tempDir } from '../fixtures.ts';
import { favorDynamicMoves, favoringMount } from './favor.ts';
import { parseMountinfo, readMounts } from './mountinfo.ts';

const V1_TABLE = [
  '30 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '31 25 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids',
].join('\n');

const canMount =
  process.getuid?.() === 0 && process.platform === 'linux'
    ? false
    : 'needs root on Linux (mounts a cgroup hierarchy)';

void describe('favordynmods: quick moves into cgroups', () => {
  void test('a hierarchy that has it already is found, and nothing is mounted', async () => {
    const mounts = parseMountinfo(
      `${V1_TABLE}\n40 25 0:40 / /run/other rw - cgroup other rw,favordynmods,name=other`,
    );
    assert.equal(favoringMount(mounts)?.mountPoint, '/run/other');
    const dir = await tempDir('unum-favor-');
    try {
      const r = await favorDynamicMoves(mounts, join(dir.path, 'never'));
      assert.deepEqual(r, { state: 'already', mountPoint: '/run/other' });
    } finally {
      await dir.cleanup();
    }
    assert.equal(favoringMount(parseMountinfo(V1_TABLE)), undefined, 'a table without it');
    const v2 = parseMountinfo('25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,favordynmods');
    assert.equal(favoringMount(v2)?.mountPoint, '/sys/fs/cgroup', 'v2 mounted with it');
  });

  void test('a place that can not be made is unavailable, with the reason', async () => {
    const dir = await tempDir('unum-favor-');
    try {
      const file = join(dir.path, 'file');
      await writeFile(file, '');
      const r = await favorDynamicMoves(parseMountinfo(V1_TABLE), join(file, 'sub'));
      assert.equal(r.state, 'unavailable');
      assert.match(r.state === 'unavailable' ? r.problem : '', /could not make .*file\/sub/);
    } finally {
      await dir.cleanup();
    }
  });

  void test(
    'mounts a named hierarchy with favordynmods, visible in the mount table',
    { skip: canMount },
    async (t) => {
      const dir = await tempDir('unum-favor-');
      const at = join(dir.path, 'mnt');
      t.after(async () => {
        try {
          execFileSync('umount', [at], { stdio: 'ignore' });
        } catch {
          // Not mounted (the kernel refused it).
        }
        await dir.cleanup();
      });
      // As if nothing had it yet: the agent's own mount may exist from an earlier run on this machine.
      const r = await favorDynamicMoves(parseMountinfo(V1_TABLE), at);
      if (r.state === 'unavailable') {
        // Kernels before 6.0 do not know the option: what mount said is passed on.
        assert.match(r.problem, /^mount: /);
        t.diagnostic(`this kernel can not: ${r.problem}`);
        return;
      }
      assert.deepEqual(r, { state: 'mounted', mountPoint: at });
      const mine = (await readMounts()).find((m) => m.mountPoint === at);
      assert.ok(mine !== undefined, 'mounted');
      assert.equal(mine.fsType, 'cgroup');
      assert.ok(mine.superOptions.includes('favordynmods'), mine.superOptions.join(','));
      assert.ok(mine.superOptions.includes('name=unum-favordynmods'), mine.superOptions.join(','));
      // No controller: it limits nothing.
      for (const c of ['memory', 'cpu', 'pids', 'freezer']) assert.ok(!mine.superOptions.includes(c), c);
      // Now it is found: a second call mounts nothing more.
      const again = await favorDynamicMoves(await readMounts(), join(dir.path, 'other'));
      assert.equal(again.state, 'already');
    },
  );
});
