/**
 * cgroups v2 against a fake cgroupfs in a temp dir: a unit-test double of the kernel interface (this
 * machine runs v1 and can not mount v2). What it checks: the files unum writes hold the right
 * values, usage is read from the right files and parsed right, and killAll/destroy/open/list drive
 * the files as the kernel expects. What it can not check: that the kernel enforces any of it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { InvalidError } from '../../core/errors.ts';
import { exitOf, fakeV2Cgroup, fakeV2Root, tempDir } from './fixtures.ts';
import { v2CpuNanos, V2CgroupManager, v2MemoryInUse, v2OomKills } from './v2.ts';
import { parseKeyedValues } from './files.ts';

const MIB = 1024 * 1024;

let root: string;
let cleanup: () => Promise<void>;
let parentDir: string;
let manager: V2CgroupManager;
const stops: (() => void)[] = [];

beforeEach(async () => {
  ({ path: root, cleanup } = await tempDir());
  await fakeV2Root(root, { subtreeControl: 'cpu memory pids\n' });
  parentDir = join(root, 'unum.slice');
  await fakeV2Cgroup(parentDir, { 'cgroup.subtree_control': 'cpu memory pids\n' });
  manager = new V2CgroupManager({ root });
});

afterEach(async () => {
  for (const stop of stops.splice(0)) stop();
  await cleanup();
});

async function read(path: string): Promise<string> {
  return (await readFile(path, 'utf8')).trim();
}

describe('v2 parsing', () => {
  test('cpu.stat usage_usec is reported in nanoseconds', () => {
    assert.equal(v2CpuNanos('usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n'), 1_500_000_000);
    assert.throws(() => v2CpuNanos('user_usec 1\n'), /no usage_usec/);
  });

  test('memory in use is memory.current minus inactive_file', () => {
    const stat = parseKeyedValues(
      'anon 73400320\nfile 41943040\nactive_file 10485760\ninactive_file 31457280\n',
    );
    assert.equal(v2MemoryInUse(100 * MIB, stat), 70 * MIB);
    assert.equal(v2MemoryInUse(10, stat), 0, 'never negative');
  });

  test('OOM kills are oom_kill of memory.events, not oom', () => {
    assert.equal(v2OomKills('low 0\nhigh 0\nmax 12\noom 4\noom_kill 2\noom_group_kill 0\n'), 2);
    assert.equal(v2OomKills('low 0\nhigh 0\nmax 0\noom 0\n'), 0);
  });
});

describe('cgroups v2 (fake cgroupfs)', () => {
  test('create writes memory.max, cpu.weight, cpu.max and pids.max', async () => {
    const cgroup = await manager.create('alloc1.web', {
      memoryMiB: 32,
      cpuMillicores: 500,
      cpuHardCap: true,
      pids: 20,
    });
    const dir = join(parentDir, 'alloc1.web');
    assert.deepEqual(cgroup.procsFiles, [join(dir, 'cgroup.procs')]);
    assert.equal(await read(join(dir, 'memory.max')), String(32 * MIB));
    assert.equal(await read(join(dir, 'cpu.weight')), '20', '500m = 512 shares = weight 20');
    assert.equal(await read(join(dir, 'cpu.max')), '50000 100000');
    assert.equal(await read(join(dir, 'pids.max')), '20');
    // This kernel (the fake) has no memory.swap.max and no memory.oom.group: nothing is written there.
    assert.equal(existsSync(join(dir, 'memory.swap.max')), false);
    assert.equal(existsSync(join(dir, 'memory.oom.group')), false);
  });

  test('memory.swap.max is set to 0 when the kernel has it; no hard cap is "max"; re-create replaces', async () => {
    const dir = join(parentDir, 'alloc2.db');
    await fakeV2Cgroup(dir);
    await manager.create('alloc2.db', { memoryMiB: 256, cpuMillicores: 1000, cpuHardCap: true, pids: 100 });
    assert.equal(await read(join(dir, 'cpu.max')), '100000 100000');
    await manager.create('alloc2.db', { memoryMiB: 128, cpuMillicores: 1000, pids: 50 });
    assert.equal(await read(join(dir, 'memory.max')), String(128 * MIB));
    assert.equal(await read(join(dir, 'memory.swap.max')), '0');
    assert.equal(await read(join(dir, 'memory.oom.group')), '1', 'out of memory, the whole task goes');
    assert.equal(await read(join(dir, 'cpu.weight')), '39', '1 core = 1024 shares = weight 39');
    assert.equal(await read(join(dir, 'cpu.max')), 'max 100000');
    assert.equal(await read(join(dir, 'pids.max')), '50');
  });

  test('limits and names are validated before anything is written', async () => {
    await assert.rejects(
      manager.create('ok', { memoryMiB: 0, cpuMillicores: 100, pids: 1 }),
      (err: unknown) => {
        assert.ok(err instanceof InvalidError);
        assert.deepEqual(
          err.fields.map((f) => f.path),
          ['memoryMiB'],
        );
        return true;
      },
    );
    await assert.rejects(
      manager.create('../../etc', { memoryMiB: 1, cpuMillicores: 100, pids: 1 }),
      InvalidError,
    );
    assert.equal(existsSync(join(parentDir, 'ok')), false);
  });

  test('usage reads cpu.stat, memory.current/stat/peak, pids.current and memory.events', async () => {
    const dir = join(parentDir, 'a.usage');
    await fakeV2Cgroup(dir, {
      'cpu.stat': 'usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\n',
      'memory.current': `${100 * MIB}\n`,
      'memory.stat': `anon ${60 * MIB}\nfile ${40 * MIB}\nactive_file ${10 * MIB}\ninactive_file ${30 * MIB}\n`,
      'memory.peak': `${120 * MIB}\n`,
      'pids.current': '3\n',
      'memory.events': 'low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n',
    });
    const cgroup = await manager.open('a.usage');
    assert.ok(cgroup !== undefined);
    assert.deepEqual(await cgroup.usage(), {
      cpuNanos: 2_500_000_000,
      memoryBytes: 70 * MIB,
      memoryPeakBytes: 120 * MIB,
      pids: 3,
      oomKills: 1,
    });
    // Kernels before 5.19 have no memory.peak: no peak is reported.
    const older = join(parentDir, 'a.older');
    await fakeV2Cgroup(older, { 'memory.peak': undefined });
    const usage = await (await manager.open('a.older'))?.usage();
    assert.ok(usage !== undefined);
    assert.equal('memoryPeakBytes' in usage, false);
  });

  test('a missing control file is reported with its path', async () => {
    const dir = join(parentDir, 'a.broken');
    await fakeV2Cgroup(dir, { 'pids.current': undefined });
    const cgroup = await manager.open('a.broken');
    await assert.rejects(cgroup?.usage() ?? Promise.resolve(), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.ok(err.message.includes(join(dir, 'pids.current')), err.message);
      return true;
    });
  });

  /**
   * Starts `sleep` as if it were in the fake cgroup: its pid is in cgroup.procs, and it leaves the
   * file when it exits (what the kernel does).
   */
  async function fakeMember(dir: string) {
    const child = spawn('sleep', ['300'], { stdio: 'ignore' });
    const procs = join(dir, 'cgroup.procs');
    await writeFile(procs, `${child.pid}\n`);
    child.once('exit', () => writeFileSync(procs, ''));
    stops.push(() => child.kill('SIGKILL'));
    return child;
  }

  test('killAll writes 1 to cgroup.kill and resolves once cgroup.procs is empty', async () => {
    const dir = join(parentDir, 'a.kill');
    await fakeV2Cgroup(dir);
    const child = await fakeMember(dir);
    // The fake kernel: a write of "1" to cgroup.kill SIGKILLs the members.
    const watcher: FSWatcher = watch(join(dir, 'cgroup.kill'), () => {
      void readFile(join(dir, 'cgroup.kill'), 'utf8').then((s) => {
        if (s === '1') child.kill('SIGKILL');
      });
    });
    stops.push(() => watcher.close());
    const cgroup = await manager.open('a.kill');
    assert.ok(cgroup !== undefined);
    await cgroup.killAll();
    assert.equal((await exitOf(child)).signal, 'SIGKILL');
    assert.deepEqual(await cgroup.pids(), []);
    assert.equal(await read(join(dir, 'cgroup.kill')), '1');
  });

  test('without cgroup.kill (before Linux 5.14), killAll freezes, SIGKILLs every pid and thaws', async () => {
    const dir = join(parentDir, 'a.freeze');
    await fakeV2Cgroup(dir, { 'cgroup.kill': undefined, 'cgroup.events': 'populated 1\nfrozen 1\n' });
    const child = await fakeMember(dir);
    const cgroup = await manager.open('a.freeze');
    assert.ok(cgroup !== undefined);
    await cgroup.killAll();
    assert.equal((await exitOf(child)).signal, 'SIGKILL');
    assert.equal(await read(join(dir, 'cgroup.freeze')), '0', 'thawed again');
    assert.equal(existsSync(join(dir, 'cgroup.kill')), false);
  });

  test('killAll refuses to kill (or freeze) the agent itself', async () => {
    const dir = join(parentDir, 'a.self');
    await fakeV2Cgroup(dir, { 'cgroup.procs': `${process.pid}\n` });
    const cgroup = await manager.open('a.self');
    await assert.rejects(cgroup?.killAll() ?? Promise.resolve(), /the agent itself/);
    assert.equal(await read(join(dir, 'cgroup.kill')), '', 'cgroup.kill not written');
  });

  test('list() finds task cgroups, open() re-opens one, destroy() removes it and is idempotent', async () => {
    await mkdir(join(parentDir, 'b.two'));
    await mkdir(join(parentDir, 'a.one'));
    await mkdir(join(parentDir, '.not-a-task'));
    assert.deepEqual(await manager.list(), ['a.one', 'b.two']);
    assert.equal(await manager.open('cgroup.procs'), undefined, 'a control file is not a cgroup');
    assert.equal(await manager.open('c.three'), undefined);
    const one = await manager.open('a.one');
    assert.ok(one !== undefined);
    assert.deepEqual(one.procsFiles, [join(parentDir, 'a.one', 'cgroup.procs')]);
    await one.destroy();
    await one.destroy();
    assert.deepEqual(await manager.list(), ['b.two']);
    await one.killAll(); // gone: nothing to do
  });

  test('create refuses a name that is a control file, not a cgroup', async () => {
    await assert.rejects(
      manager.create('cgroup.procs', { memoryMiB: 32, cpuMillicores: 100, pids: 10 }),
      /a file of that name exists/,
    );
  });
});
