/**
 * cgroups v1: the parsing functions on sample file contents, then the real thing (root, a machine
 * with cgroups v1): limits, an OOM kill, a fork bomb, a process that escaped with setsid, usage.
 * Every test uses a parent cgroup of its own (`unum-test-<random>`) and removes what it made.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, afterEach, describe, test } from 'node:test';
import { InvalidError } from '../../core/errors.ts';
import { randomSuffix } from '../../core/ids.ts';
import { waitFor } from '../../testing/wait.ts';
import { CgroupFileError, parseKeyedValues, writeControl } from './files.ts';
import {
  detectAsNobody,
  exitOf,
  isAlive,
  lineFrom,
  python3,
  removeAll,
  sessionOf,
  spawnInCgroup,
} from './fixtures.ts';
import { detectCgroups } from './index.ts';
import type { TaskCgroup } from './types.ts';
import { V1CgroupManager, v1MemoryInUse, v1OomKills } from './v1.ts';

const MIB = 1024 * 1024;

describe('v1 parsing', () => {
  test('memory in use is usage minus the inactive file cache, else minus the cache', () => {
    const stat = parseKeyedValues(
      'cache 9621504\nrss 3436544\ntotal_cache 573636608\ntotal_rss 45977600\ntotal_inactive_file 222146560\n',
    );
    assert.equal(v1MemoryInUse(600_000_000, stat), 600_000_000 - 222_146_560);
    assert.equal(v1MemoryInUse(600_000_000, parseKeyedValues('total_cache 100\n')), 600_000_000 - 100);
    assert.equal(v1MemoryInUse(1000, parseKeyedValues('total_inactive_file 4096\n')), 0, 'never negative');
    assert.equal(v1MemoryInUse(1000, new Map()), 1000);
  });

  test('OOM kills come from memory.oom_control, else failcnt says "maybe" (1)', () => {
    const oomControl = 'oom_kill_disable 0\nunder_oom 0\noom_kill 3\n';
    assert.equal(v1OomKills({ oomControl, failcnt: '7\n' }), 3);
    assert.equal(
      v1OomKills({ oomControl: 'oom_kill_disable 0\nunder_oom 0\noom_kill 0\n', failcnt: '7\n' }),
      0,
    );
    // Before Linux 4.13 there is no oom_kill line.
    const old = 'oom_kill_disable 0\nunder_oom 0\n';
    assert.equal(v1OomKills({ oomControl: old, failcnt: '0\n' }), 0);
    assert.equal(v1OomKills({ oomControl: old, failcnt: '12\n' }), 1);
    assert.equal(v1OomKills({ oomControl: old, failcnt: '0\n', memswFailcnt: '2\n' }), 1);
    assert.equal(v1OomKills({ oomControl: undefined, failcnt: undefined }), 0);
  });
});

// ------------------------------------------------------------------------------------ real cgroups

const PARENT = `unum-test-${randomSuffix()}`;
const canRun =
  process.platform === 'linux' &&
  process.getuid?.() === 0 &&
  !existsSync('/sys/fs/cgroup/cgroup.controllers');
const detection = canRun ? await detectCgroups({ parent: PARENT }) : undefined;
const manager =
  detection?.available === true && detection.manager instanceof V1CgroupManager
    ? detection.manager
    : undefined;
const skip =
  manager !== undefined
    ? false
    : `needs root on a machine with cgroups v1${detection?.available === false ? ` (${detection.reason})` : ''}`;

function mgr(): V1CgroupManager {
  if (manager === undefined) throw new Error('no v1 manager');
  return manager;
}

const children: ChildProcess[] = [];
const cgroups: TaskCgroup[] = [];

async function create(label: string, limits: Parameters<V1CgroupManager['create']>[1]): Promise<TaskCgroup> {
  const cgroup = await mgr().create(`${randomSuffix()}.${label}`, limits);
  cgroups.push(cgroup);
  return cgroup;
}

function start(cgroup: TaskCgroup, command: string, args: string[], stdout: 'ignore' | 'pipe' = 'ignore') {
  const child = spawnInCgroup(cgroup, command, args, stdout);
  children.push(child);
  return child;
}

async function read(path: string): Promise<string> {
  return (await readFile(path, 'utf8')).trim();
}

/** Waits until the child has joined every hierarchy (it writes its pid to each procs file in turn). */
async function joined(cgroup: TaskCgroup, child: ChildProcess): Promise<void> {
  const pid = String(child.pid);
  await waitFor(
    async () => {
      for (const file of cgroup.procsFiles) if (!(await read(file)).split('\n').includes(pid)) return false;
      return true;
    },
    { description: `pid ${pid} in every hierarchy of cgroup ${cgroup.name}` },
  );
}

afterEach(async () => {
  for (const cgroup of cgroups.splice(0)) {
    await cgroup.killAll();
    await cgroup.destroy();
  }
  for (const child of children.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

after(async () => {
  if (manager !== undefined) await removeAll(manager, manager.parentDirs());
});

describe('cgroups v1 (real, as root)', { skip }, () => {
  test('detection finds v1 and a manager, with every controller and the parent made', async () => {
    const m = mgr();
    assert.equal(m.version, 'v1');
    for (const c of ['memory', 'cpu', 'cpuacct', 'pids', 'freezer'] as const)
      assert.ok(existsSync(join(m.hierarchies[c], 'cgroup.procs')), `${c} hierarchy at ${m.hierarchies[c]}`);
    for (const dir of m.parentDirs()) assert.ok(existsSync(dir), `${dir} made`);
    // Again (an agent restart): the same answer, nothing broken.
    const again = await detectCgroups({ parent: PARENT });
    assert.equal(again.available, true);
  });

  test('a new cgroup without a hard cap keeps the kernel defaults that are not written: no quota, 100 ms', async () => {
    const cgroup = await create('defaults', { memoryMiB: 48, cpuMillicores: 250, pids: 10 });
    const p = mgr().paths(cgroup.name);
    assert.equal(await read(join(p.cpu, 'cpu.cfs_quota_us')), '-1');
    assert.equal(await read(join(p.cpu, 'cpu.cfs_period_us')), '100000');
    assert.equal(await read(join(p.memory, 'memory.limit_in_bytes')), String(48 * MIB));
    const memsw = join(p.memory, 'memory.memsw.limit_in_bytes');
    if (existsSync(memsw)) assert.equal(await read(memsw), String(48 * MIB));
  });

  test('the limit files hold what was asked, and re-creating replaces them', async () => {
    const cgroup = await create('limits', { memoryMiB: 32, cpuMillicores: 500, cpuHardCap: true, pids: 20 });
    const p = mgr().paths(cgroup.name);
    assert.equal(await read(join(p.memory, 'memory.limit_in_bytes')), String(32 * MIB));
    const memsw = join(p.memory, 'memory.memsw.limit_in_bytes');
    if (existsSync(memsw)) assert.equal(await read(memsw), String(32 * MIB), 'swap can not dodge the limit');
    assert.equal(await read(join(p.cpu, 'cpu.shares')), '512');
    assert.equal(await read(join(p.cpu, 'cpu.cfs_period_us')), '100000');
    assert.equal(await read(join(p.cpu, 'cpu.cfs_quota_us')), '50000');
    assert.equal(await read(join(p.pids, 'pids.max')), '20');
    assert.equal(new Set(cgroup.procsFiles).size, cgroup.procsFiles.length);
    for (const f of cgroup.procsFiles) assert.ok(existsSync(f), f);

    // Up (memsw must be raised first), then down (memsw lowered last): both orders work.
    await mgr().create(cgroup.name, { memoryMiB: 64, cpuMillicores: 250, pids: 30 });
    assert.equal(await read(join(p.memory, 'memory.limit_in_bytes')), String(64 * MIB));
    if (existsSync(memsw)) assert.equal(await read(memsw), String(64 * MIB));
    assert.equal(await read(join(p.cpu, 'cpu.shares')), '256');
    assert.equal(await read(join(p.cpu, 'cpu.cfs_quota_us')), '-1', 'no hard cap');
    assert.equal(await read(join(p.pids, 'pids.max')), '30');
    await mgr().create(cgroup.name, { memoryMiB: 16, cpuMillicores: 1, pids: 30 });
    assert.equal(await read(join(p.memory, 'memory.limit_in_bytes')), String(16 * MIB));
    if (existsSync(memsw)) assert.equal(await read(memsw), String(16 * MIB));
    assert.equal(await read(join(p.cpu, 'cpu.shares')), '2', 'the kernel minimum');
  });

  test('a value the kernel rejects fails with EINVAL and the file path', async () => {
    const cgroup = await create('einval', { memoryMiB: 32, cpuMillicores: 100, pids: 10 });
    const file = join(mgr().paths(cgroup.name).pids, 'pids.max');
    await assert.rejects(writeControl(file, 'lots'), (err: unknown) => {
      assert.ok(err instanceof CgroupFileError);
      assert.equal(err.errno, 'EINVAL');
      assert.equal(err.path, file);
      assert.match(err.message, /cannot write "lots" to .*pids\.max: EINVAL/);
      return true;
    });
  });

  test('names that are not one safe path segment are refused', async () => {
    for (const name of ['../escape', 'a/b', '', '.', '..', '.hidden', 'tab\tname'])
      await assert.rejects(
        mgr().create(name, { memoryMiB: 32, cpuMillicores: 100, pids: 10 }),
        InvalidError,
        name,
      );
    await assert.rejects(mgr().open('../../memory'), InvalidError);
  });

  test('a memory hog is OOM-killed (SIGKILL) and the OOM kill is counted', { timeout: 60_000 }, async () => {
    const cgroup = await create('hog', { memoryMiB: 32, cpuMillicores: 500, pids: 50 });
    assert.equal((await cgroup.usage()).oomKills, 0);
    const hog = start(cgroup, python3(), ['-c', 'b = []\nwhile True: b.append(b"x" * (1 << 20))']);
    const exit = await exitOf(hog);
    assert.equal(exit.signal, 'SIGKILL', `exit ${JSON.stringify(exit)}`);
    const usage = await cgroup.usage();
    assert.ok(usage.oomKills >= 1, `oomKills ${usage.oomKills}`);
    assert.ok((usage.memoryPeakBytes ?? 0) <= 32 * MIB, `peak ${usage.memoryPeakBytes} within the limit`);
  });

  test(
    'a fork bomb is contained by the pids limit, and killAll empties the cgroup',
    { timeout: 60_000 },
    async () => {
      const cgroup = await create('forkbomb', { memoryMiB: 256, cpuMillicores: 100, pids: 20 });
      const pidsDir = mgr().paths(cgroup.name).pids;
      const bomb = start(cgroup, 'bash', ['-c', 'while :; do sleep 1000 & done']);
      let most = 0;
      await waitFor(
        async () => {
          const now = (await cgroup.usage()).pids;
          most = Math.max(most, now, (await cgroup.pids()).length);
          // pids.events "max": forks the kernel refused because of pids.max.
          const refused =
            parseKeyedValues(await readFile(join(pidsDir, 'pids.events'), 'utf8')).get('max') ?? 0;
          return refused > 0 && now === 20;
        },
        { timeoutMs: 30_000, description: 'forks refused at 20 processes' },
      );
      assert.ok(most <= 20, `at most 20 processes seen, saw ${most}`);
      const peakFile = join(pidsDir, 'pids.peak'); // Linux 6.1+; the kernel's own maximum
      if (existsSync(peakFile)) assert.equal(await read(peakFile), '20');

      await cgroup.killAll();
      assert.deepEqual(await cgroup.pids(), []);
      assert.equal((await exitOf(bomb)).signal, 'SIGKILL');
    },
  );

  test(
    'the node-wide budget (pids.max of the parent) holds all tasks together, below their own limits',
    { timeout: 60_000 },
    async () => {
      await mgr().setTotalPids(12);
      try {
        const parentPids = join(mgr().hierarchies.pids, PARENT, 'pids.max');
        assert.equal(await read(parentPids), '12');
        // Two tasks of 20 each: together they never pass the node's 12.
        const a = await create('budget-a', { memoryMiB: 64, cpuMillicores: 100, pids: 20 });
        const b = await create('budget-b', { memoryMiB: 64, cpuMillicores: 100, pids: 20 });
        for (const c of [a, b]) start(c, 'bash', ['-c', 'while :; do sleep 1000 & done']);
        // Refused forks are counted in pids.events of the parent, or of the task (kernels differ).
        const refused = async (dir: string) =>
          parseKeyedValues(await readFile(join(dir, 'pids.events'), 'utf8')).get('max') ?? 0;
        const dirs = [
          join(mgr().hierarchies.pids, PARENT),
          mgr().paths(a.name).pids,
          mgr().paths(b.name).pids,
        ];
        await waitFor(
          async () => {
            let n = 0;
            for (const d of dirs) n += await refused(d);
            return n > 0;
          },
          { timeoutMs: 30_000, description: 'forks refused' },
        );
        // Each alone may have 20; under the parent's 12 both together stay below that. (Two reads a
        // moment apart while the bombs retry their forks can sum to a little over 12, and the parent's
        // own pids.current also counts processes of earlier tests not yet released.)
        const total = (await a.usage()).pids + (await b.usage()).pids;
        assert.ok(total < 20, `fewer than 20 processes in all, saw ${total}`);
        await Promise.all([a.killAll(), b.killAll()]);
      } finally {
        await mgr().setTotalPids('max');
      }
    },
  );

  test('killAll kills a process that escaped its process group and session with setsid', async () => {
    const cgroup = await create('setsid', { memoryMiB: 64, cpuMillicores: 100, pids: 20 });
    const task = start(cgroup, 'sh', ['-c', 'setsid sleep 300 & exec sleep 301']);
    const taskPid = task.pid ?? -1;
    const escaped = await waitFor(
      async () => (await cgroup.pids()).find((p) => p !== taskPid && sessionOf(p) !== taskPid),
      {
        description: 'the setsid process in the cgroup',
      },
    );
    assert.notEqual(sessionOf(escaped), sessionOf(taskPid), 'it left the session');
    // What stopping a task by its process group does: the escaped process survives it.
    process.kill(-taskPid, 'SIGKILL');
    await exitOf(task);
    assert.ok(isAlive(escaped), 'the escaped process outlives its group');

    await cgroup.killAll();
    assert.equal(isAlive(escaped), false);
    assert.deepEqual(await cgroup.pids(), []);
  });

  test('usage reports growing CPU for a busy loop', { timeout: 30_000 }, async () => {
    const cgroup = await create('busy', { memoryMiB: 64, cpuMillicores: 1000, pids: 10 });
    const busy = start(cgroup, 'sh', ['-c', 'while :; do :; done']);
    await joined(cgroup, busy);
    const first = await cgroup.usage();
    assert.equal(first.pids, 1);
    // 50 ms more CPU time: the loop runs, and it is counted here.
    await waitFor(async () => (await cgroup.usage()).cpuNanos > first.cpuNanos + 50_000_000, {
      description: 'CPU time to grow by 50 ms',
    });
  });

  test('usage reports the memory a process holds, and its peak', { timeout: 30_000 }, async () => {
    const cgroup = await create('holder', { memoryMiB: 256, cpuMillicores: 100, pids: 10 });
    const holder = start(
      cgroup,
      python3(),
      ['-c', 'import time\nb = b"x" * (64 << 20)\nprint("ready", flush=True)\ntime.sleep(600)'],
      'pipe',
    );
    await lineFrom(holder, 'ready');
    const usage = await cgroup.usage();
    assert.ok(usage.memoryBytes >= 64 * MIB, `memoryBytes ${usage.memoryBytes}`);
    assert.ok(usage.memoryBytes < 256 * MIB, `memoryBytes ${usage.memoryBytes} within the limit`);
    assert.ok((usage.memoryPeakBytes ?? 0) >= 64 * MIB, `peak ${usage.memoryPeakBytes}`);
    assert.equal(usage.pids, 1);
    assert.equal(usage.oomKills, 0);
  });

  test('after an agent restart, list() and open() find a running task; destroy() is idempotent', async () => {
    const cgroup = await create('recover', { memoryMiB: 64, cpuMillicores: 100, pids: 10 });
    const other = await create('other', { memoryMiB: 64, cpuMillicores: 100, pids: 10 });
    const task = start(cgroup, 'sleep', ['300']);
    await joined(cgroup, task);

    // A new agent process: detection again, then the leftovers.
    const again = await detectCgroups({ parent: PARENT });
    assert.ok(again.available);
    const names = await again.manager.list();
    assert.deepEqual(names, [cgroup.name, other.name].sort());
    const reopened = await again.manager.open(cgroup.name);
    assert.ok(reopened !== undefined);
    assert.deepEqual(reopened.procsFiles, cgroup.procsFiles);
    assert.deepEqual(await reopened.pids(), [task.pid]);
    assert.equal(await again.manager.open('no-such-task'), undefined);

    await reopened.killAll();
    assert.equal((await exitOf(task)).signal, 'SIGKILL');
    await reopened.destroy();
    await reopened.destroy();
    assert.equal(await again.manager.open(cgroup.name), undefined);
    assert.deepEqual(await again.manager.list(), [other.name]);
    await cgroup.killAll(); // on a removed cgroup: nothing to do
  });

  test('a task cgroup left frozen by an agent that died mid-kill is thawed when the next agent opens it', async () => {
    const cgroup = await create('frozen', { memoryMiB: 64, cpuMillicores: 100, pids: 10 });
    const task = start(cgroup, 'sleep', ['300']);
    await joined(cgroup, task);
    const state = join(mgr().hierarchies.freezer, PARENT, cgroup.name, 'freezer.state');
    await writeControl(state, 'FROZEN');
    await waitFor(async () => (await readFile(state, 'utf8')).trim() === 'FROZEN');
    const again = await detectCgroups({ parent: PARENT });
    assert.ok(again.available);
    const reopened = await again.manager.open(cgroup.name);
    assert.equal((await readFile(state, 'utf8')).trim(), 'THAWED');
    await reopened!.killAll();
    assert.equal((await exitOf(task)).signal, 'SIGKILL');
    await reopened!.destroy();
  });

  test('destroy() of a cgroup that still holds a process fails with EBUSY, naming it', async () => {
    const m = new V1CgroupManager({ hierarchies: mgr().hierarchies, parent: PARENT, removeTimeoutMs: 50 });
    const cgroup = await create('busy-rmdir', { memoryMiB: 64, cpuMillicores: 100, pids: 10 });
    const task = start(cgroup, 'sleep', ['300']);
    await joined(cgroup, task);
    const same = await m.open(cgroup.name);
    assert.ok(same !== undefined);
    await assert.rejects(same.destroy(), (err: unknown) => {
      assert.ok(err instanceof CgroupFileError);
      assert.equal(err.errno, 'EBUSY');
      assert.match(err.message, /killAll\(\) first/);
      return true;
    });
  });

  test('killAll on an empty cgroup resolves at once', async () => {
    const cgroup = await create('empty', { memoryMiB: 32, cpuMillicores: 100, pids: 10 });
    await cgroup.killAll();
    assert.deepEqual(await cgroup.pids(), []);
    assert.equal(await read(join(mgr().paths(cgroup.name).freezer, 'freezer.state')), 'THAWED');
  });

  test(
    'as an unprivileged user, detection says the hierarchy is not writable',
    { timeout: 30_000 },
    async () => {
      // Real: a child Node process running as nobody (uid 65534) on the real /sys/fs/cgroup.
      const fresh = (await detectAsNobody({ parent: `unum-test-nobody-${randomSuffix()}` })) as Record<
        string,
        unknown
      >;
      assert.deepEqual(fresh, {
        available: false,
        version: 'v1',
        reason:
          'cgroups v1 found but /sys/fs/cgroup/memory is not writable: run the agent as root to enforce memory, CPU and process limits',
      });
      // The parent exists already (made by root): it is the one that can not be written.
      const existing = (await detectAsNobody({ parent: PARENT })) as Record<string, unknown>;
      assert.equal(existing['available'], false);
      assert.match(
        String(existing['reason']),
        new RegExp(`/sys/fs/cgroup/memory/${PARENT} is not writable: run the agent as root`),
      );
    },
  );
});
