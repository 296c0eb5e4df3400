/**
 * Detection against fake cgroup layouts in temp dirs (and fake mount tables): which version, which
 * hierarchies, the v2 parent chain, and the operator's reason for every way it can not work. The
 * "not writable" cases run detection in a child process as the unprivileged user nobody: the
 * permission check is the kernel's, not a stub. Real v1 detection is in v1.test.ts.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { InvalidError } from '../../core/errors.ts';
import { detectAsNobody, fakeV1Root, fakeV2Cgroup, fakeV2Root, tempDir } from './fixtures.ts';
import { detectCgroups, findV1Hierarchies, V1CgroupManager, V2CgroupManager } from './index.ts';
import { parseMountinfo } from './mountinfo.ts';
import type { CgroupDetection } from './types.ts';

const ENFORCE = 'to enforce memory, CPU and process limits';

let tmp: string;
let cleanup: () => Promise<void>;
/** A mount table with nothing under the fake roots, so that detection goes by their layout. */
let noMounts: string;

beforeEach(async () => {
  ({ path: tmp, cleanup } = await tempDir());
  noMounts = join(tmp, 'mountinfo-empty');
  await writeFile(noMounts, '');
});
afterEach(() => cleanup());

function reasonOf(d: CgroupDetection): string {
  assert.equal(d.available, false, 'expected detection to fail');
  return d.available ? '' : d.reason;
}

const asRoot = process.getuid?.() === 0 ? false : 'needs root (to switch to the nobody user)';

describe('detection: cgroups v2 (fake)', () => {
  test('finds v2, makes unum.slice and enables memory, cpu and pids down the chain', async () => {
    const root = join(tmp, 'cg');
    await fakeV2Root(root, { subtreeControl: 'io\n' });
    const d = await detectCgroups({ root, mountinfoPath: noMounts });
    assert.ok(d.available);
    assert.ok(d.manager instanceof V2CgroupManager);
    assert.equal(d.manager.version, 'v2');
    assert.equal(d.manager.parentDir, join(root, 'unum.slice'));
    // Only what was missing is written (the kernel appends to what is enabled).
    assert.equal(await readFile(join(root, 'cgroup.subtree_control'), 'utf8'), '+cpu +memory +pids');
    assert.equal(
      await readFile(join(root, 'unum.slice', 'cgroup.subtree_control'), 'utf8'),
      '+cpu +memory +pids',
    );
  });

  test('writes nothing when the controllers are enabled already; a nested parent works', async () => {
    const root = join(tmp, 'cg');
    await fakeV2Root(root, { subtreeControl: 'cpu io memory pids\n' });
    await fakeV2Cgroup(join(root, 'system.slice'), { 'cgroup.subtree_control': 'cpu memory pids\n' });
    const d = await detectCgroups({ root, parent: 'system.slice/unum', mountinfoPath: noMounts });
    assert.ok(d.available);
    assert.equal(await readFile(join(root, 'cgroup.subtree_control'), 'utf8'), 'cpu io memory pids\n');
    assert.equal(
      await readFile(join(root, 'system.slice', 'cgroup.subtree_control'), 'utf8'),
      'cpu memory pids\n',
    );
    assert.ok(existsSync(join(root, 'system.slice', 'unum')));
  });

  test('a missing controller is named, with what is available', async () => {
    const root = join(tmp, 'cg');
    await fakeV2Root(root, { controllers: 'cpu io\n' });
    const d = await detectCgroups({ root, mountinfoPath: noMounts });
    assert.deepEqual(d, {
      available: false,
      version: 'v2',
      reason: `cgroups v2 found but the memory and pids controllers are not available in ${root}/cgroup.controllers (available: cpu io): they are bound to a cgroups v1 hierarchy or not delegated to this cgroup (systemd: Delegate=yes); make them available ${ENFORCE}`,
    });
  });

  test('"no internal processes": a unum parent that holds processes is refused', async () => {
    const root = join(tmp, 'cg');
    await fakeV2Root(root);
    await fakeV2Cgroup(join(root, 'unum.slice'), { 'cgroup.procs': '4242\n4343\n' });
    const reason = reasonOf(await detectCgroups({ root, mountinfoPath: noMounts }));
    assert.equal(
      reason,
      `cgroups v2 found but ${root}/unum.slice holds processes (4242, 4343), and cgroups v2 lets only a cgroup without processes hand controllers to its children: move them to another cgroup, or choose another parent ${ENFORCE}`,
    );
  });

  test('"no internal processes" also applies to every level above the parent', async () => {
    const root = join(tmp, 'cg');
    await fakeV2Root(root);
    await fakeV2Cgroup(join(root, 'system.slice'), { 'cgroup.procs': '777\n' });
    const reason = reasonOf(
      await detectCgroups({ root, parent: 'system.slice/unum', mountinfoPath: noMounts }),
    );
    assert.match(
      reason,
      new RegExp(`^cgroups v2 found but ${root}/system\\.slice holds processes \\(777\\)`),
    );
    assert.equal(existsSync(join(root, 'system.slice', 'unum')), false, 'nothing made below it');
  });

  test('a read-only cgroup mount is said to be read-only', async () => {
    const root = join(tmp, 'cg');
    await fakeV2Root(root);
    const mountinfo = join(tmp, 'mountinfo');
    await writeFile(mountinfo, `41 31 0:38 / ${root} ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n`);
    const reason = reasonOf(await detectCgroups({ root, mountinfoPath: mountinfo }));
    assert.equal(
      reason,
      `cgroups v2 found but ${root} is mounted read-only: remount it read-write (in a container: run it privileged, or with a writable cgroup filesystem) ${ENFORCE}`,
    );
    assert.equal(existsSync(join(root, 'unum.slice')), false);
  });

  test(
    'as an unprivileged user: not writable, run the agent as root',
    { skip: asRoot, timeout: 30_000 },
    async () => {
      const root = join(tmp, 'cg');
      await fakeV2Root(root, { subtreeControl: 'cpu memory pids\n' });
      await chmod(root, 0o755);
      const d = await detectAsNobody({ root, mountinfoPath: noMounts });
      assert.deepEqual(d, {
        available: false,
        version: 'v2',
        reason: `cgroups v2 found but ${root} is not writable: run the agent as root ${ENFORCE}`,
      });
    },
  );
});

describe('detection: cgroups v1 (fake layout)', () => {
  test('finds every controller, co-mounted cpu,cpuacct behind symlinks included, and makes the parent', async () => {
    const root = join(tmp, 'cg');
    await fakeV1Root(root, ['memory', 'cpu,cpuacct', 'pids', 'freezer', 'blkio']);
    await symlink('cpu,cpuacct', join(root, 'cpu'));
    await symlink('cpu,cpuacct', join(root, 'cpuacct'));
    const d = await detectCgroups({ root, mountinfoPath: noMounts });
    assert.ok(d.available);
    assert.ok(d.manager instanceof V1CgroupManager);
    assert.deepEqual(d.manager.hierarchies, {
      memory: join(root, 'memory'),
      cpu: join(root, 'cpu,cpuacct'),
      cpuacct: join(root, 'cpu,cpuacct'),
      pids: join(root, 'pids'),
      freezer: join(root, 'freezer'),
    });
    assert.deepEqual(d.manager.parentDirs(), [
      join(root, 'memory', 'unum'),
      join(root, 'cpu,cpuacct', 'unum'),
      join(root, 'pids', 'unum'),
      join(root, 'freezer', 'unum'),
    ]);
    for (const dir of d.manager.parentDirs()) assert.ok(existsSync(dir), dir);
    // A task joins each distinct hierarchy once.
    const cgroup = await d.manager.open('x');
    assert.equal(cgroup, undefined);
  });

  test('hierarchies mounted elsewhere under the root are found through the mount table', async () => {
    const root = join(tmp, 'cg');
    await mkdir(join(root, 'mem'), { recursive: true });
    await mkdir(join(root, 'cpustuff'), { recursive: true });
    await mkdir(join(root, 'misc'), { recursive: true });
    const mountinfo = join(tmp, 'mountinfo');
    await writeFile(
      mountinfo,
      [
        `31 23 0:28 / ${root} rw,relatime - tmpfs tmpfs rw,mode=755`,
        `32 31 0:29 / ${root}/mem rw,relatime shared:9 - cgroup cgroup rw,memory`,
        `33 31 0:30 / ${root}/cpustuff rw,relatime - cgroup cgroup rw,cpu,cpuacct`,
        `34 31 0:31 / ${root}/misc rw,relatime - cgroup cgroup rw,pids,freezer`,
        `35 23 0:32 / /elsewhere/memory rw,relatime - cgroup cgroup rw,memory`,
        '',
      ].join('\n'),
    );
    const found = await findV1Hierarchies(root, parseMountinfo(await readFile(mountinfo, 'utf8')));
    assert.deepEqual(found, {
      memory: join(root, 'mem'),
      cpu: join(root, 'cpustuff'),
      cpuacct: join(root, 'cpustuff'),
      pids: join(root, 'misc'),
      freezer: join(root, 'misc'),
    });
    const d = await detectCgroups({ root, mountinfoPath: mountinfo, parent: 'unum-x' });
    assert.ok(d.available);
    assert.ok(existsSync(join(root, 'misc', 'unum-x')));
  });

  test('missing controllers are named, with how to mount one', async () => {
    const root = join(tmp, 'cg');
    await fakeV1Root(root, ['memory', 'cpu', 'cpuacct']);
    const d = await detectCgroups({ root, mountinfoPath: noMounts });
    assert.deepEqual(d, {
      available: false,
      version: 'v1',
      reason: `cgroups v1 found at ${root} but the pids and freezer controllers are not mounted: mount them (e.g. mount -t cgroup -o pids cgroup ${root}/pids) ${ENFORCE}`,
    });
  });

  test('a read-only hierarchy is said to be read-only', async () => {
    const root = join(tmp, 'cg');
    await fakeV1Root(root, ['memory', 'cpu', 'cpuacct', 'pids', 'freezer']);
    const mountinfo = join(tmp, 'mountinfo');
    await writeFile(mountinfo, `35 31 0:32 / ${root}/memory ro,nosuid - cgroup cgroup rw,memory\n`);
    const reason = reasonOf(await detectCgroups({ root, mountinfoPath: mountinfo }));
    assert.equal(
      reason,
      `cgroups v1 found but ${root}/memory is mounted read-only: remount it read-write (in a container: run it privileged, or with a writable cgroup filesystem) ${ENFORCE}`,
    );
  });

  test(
    'as an unprivileged user: not writable, run the agent as root',
    { skip: asRoot, timeout: 30_000 },
    async () => {
      const root = join(tmp, 'cg');
      await fakeV1Root(root, ['memory', 'cpu', 'cpuacct', 'pids', 'freezer']);
      await chmod(root, 0o555);
      const d = await detectAsNobody({ root, mountinfoPath: noMounts });
      assert.deepEqual(d, {
        available: false,
        version: 'v1',
        reason: `cgroups v1 found but ${root}/memory is not writable: run the agent as root ${ENFORCE}`,
      });
    },
  );
});

describe('detection: nothing usable', () => {
  test('an empty root: no cgroup filesystem', async () => {
    const root = join(tmp, 'empty');
    await mkdir(root);
    assert.deepEqual(await detectCgroups({ root, mountinfoPath: noMounts }), {
      available: false,
      version: 'none',
      reason: `no cgroup filesystem found at ${root} (neither cgroups v2's cgroup.controllers nor cgroups v1 controller directories): mount cgroups (most Linux distributions do at boot) ${ENFORCE}`,
    });
  });

  test('a root that does not exist', async () => {
    const root = join(tmp, 'nowhere');
    const reason = reasonOf(await detectCgroups({ root, mountinfoPath: noMounts }));
    assert.equal(
      reason,
      `no cgroup filesystem found: ${root} does not exist: mount cgroups (most Linux distributions do at boot) ${ENFORCE}`,
    );
  });

  test('a parent that is not a relative cgroup path is a programming error', async () => {
    for (const parent of ['../etc', '/abs', 'a//b', 'a/../b', ''])
      await assert.rejects(
        detectCgroups({ root: tmp, parent, mountinfoPath: noMounts }),
        InvalidError,
        parent,
      );
  });
});

describe('detection: unexpected failures are still an answer', () => {
  test('an unreadable cgroup.controllers becomes a reason naming it', async () => {
    const root = join(tmp, 'cg');
    await fakeV2Root(root);
    // A directory where a file should be: reading it fails (EISDIR), as root too.
    await rm(join(root, 'cgroup.controllers'));
    await mkdir(join(root, 'cgroup.controllers'));
    const reason = reasonOf(await detectCgroups({ root, mountinfoPath: noMounts }));
    assert.match(
      reason,
      new RegExp(`^cgroups v2 found but cannot read ${root}/cgroup\\.controllers: EISDIR .*${ENFORCE}$`),
    );
  });
});
