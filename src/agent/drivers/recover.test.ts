/**
 * Re-attaching after an agent restart: the task is started by another process that exits at once
 * (start-task.fixture.ts), as an agent that goes down; a fresh driver recovers it from its state.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { silentLogger } from '../../core/log.ts';
import { waitFor } from '../../testing/wait.ts';
import { isAlive } from '../fixtures.ts';
import { AgentStateStore } from '../state.ts';
import { noIsolation, type IsolationCapability } from './exec/isolation.ts';
import {
  dataDir,
  localDir,
  nodeIsolation,
  processesIn,
  sandboxUnavailable,
  procOf,
  startDetached,
  stdoutOf,
  taskConfig,
  withDeadline,
  type DataDir,
} from './driver-fixtures.ts';
import { drivers } from './index.ts';
import { processHandleState, upgradeHandleState } from './handle-state.ts';
import { groupTakenOver, isSameProcess, procStat } from './proc.ts';
import type { Driver, DriverName, TaskHandle, TaskHandleState } from './types.ts';

const modes: {
  name: string;
  driver: DriverName;
  isolation: 'auto' | 'off';
  capability: () => Promise<IsolationCapability>;
  skip: () => Promise<string | undefined>;
}[] = [
  {
    name: 'exec, isolated',
    driver: 'exec',
    isolation: 'auto',
    capability: nodeIsolation,
    skip: sandboxUnavailable,
  },
  {
    name: 'exec, not isolated',
    driver: 'exec',
    isolation: 'off',
    capability: () => Promise.resolve(noIsolation()),
    skip: () => Promise.resolve(undefined),
  },
  {
    name: 'raw_exec',
    driver: 'raw_exec',
    isolation: 'off',
    capability: () => Promise.resolve(noIsolation()),
    skip: () => Promise.resolve(undefined),
  },
];

/** A task that runs until the test creates `local/go`, then exits with 7. */
const UNTIL_GO = 'echo ready; while [ ! -e local/go ]; do sleep 0.05; done; exit 7';

for (const mode of modes) {
  void describe(`recover (${mode.name})`, async () => {
    const skip = await mode.skip();
    let data: DataDir;
    let driver: Driver;
    const handles: TaskHandle[] = [];

    before(async () => {
      data = await dataDir();
      // A fresh driver: the agent process that started the tasks is gone.
      driver = drivers[mode.driver]({
        logger: silentLogger(),
        enabled: true,
        dataDir: data.path,
        isolation: await mode.capability(),
      });
    });
    afterEach(async () => {
      await Promise.all(handles.splice(0).map((h) => withDeadline(h.stop('SIGKILL', 0), 'cleanup')));
    });
    after(async () => {
      await data.cleanup();
    });

    async function recover(state: TaskHandleState): Promise<TaskHandle> {
      assert.ok(driver.recover !== undefined);
      const h = await driver.recover(state);
      assert.ok(h !== undefined, 'the state is recoverable');
      handles.push(h);
      return h;
    }

    void test(
      'a running task is re-attached: same pid, and wait() has its real exit code',
      { skip },
      async () => {
        const cfg = await taskConfig(data, 'sh', ['-c', UNTIL_GO]);
        const saved = await startDetached(mode.driver, cfg, data, mode.isolation);
        const state = procOf(saved);
        await waitFor(async () => (await stdoutOf(cfg)).includes('ready'));
        assert.ok(
          isSameProcess(state.pid, state.pidStartTime),
          'the task outlived the agent that started it',
        );

        const h = await recover(saved);
        assert.equal(h.pid, state.pid);
        assert.deepEqual(h.state, saved);
        assert.equal(await Promise.race([h.wait(), Promise.resolve('running')]), 'running');
        await writeFile(join(localDir(cfg), 'go'), '');
        assert.deepEqual(await withDeadline(h.wait(), 'the re-attached task to exit'), { exitCode: 7 });
      },
    );

    void test(
      'a task whose state an earlier agent wrote in the old flat shape is re-attached',
      { skip },
      async () => {
        const cfg = await taskConfig(data, 'sh', ['-c', UNTIL_GO]);
        const saved = await startDetached(mode.driver, cfg, data, mode.isolation);
        await waitFor(async () => (await stdoutOf(cfg)).includes('ready'));
        // The state file as the previous agent version wrote it: the handle flat, version 2.
        const dir = join(data.path, 'old-state');
        await mkdir(dir, { recursive: true });
        const old = { version: 2, driver: mode.driver, ...procOf(saved) };
        const file = {
          version: 1,
          alloc: { id: cfg.allocId },
          clientStatus: 'running',
          clientDescription: 'tasks running',
          tasks: {
            [cfg.task]: {
              state: { state: 'running', failed: false, restarts: 0, pid: old.pid, events: [] },
              started: true,
              restartHistory: [],
              handle: old,
            },
          },
          savedAt: 0,
        };
        await writeFile(join(dir, `${cfg.allocId}.json`), JSON.stringify(file));
        const [loaded] = await new AgentStateStore(dir, silentLogger()).load();
        const handle = loaded?.tasks[cfg.task]?.handle;
        assert.ok(handle !== undefined);
        assert.deepEqual(handle, saved, 'read in the current shape');

        const h = await recover(handle);
        assert.equal(h.pid, old.pid);
        assert.equal(await Promise.race([h.wait(), Promise.resolve('running')]), 'running');
        await writeFile(join(localDir(cfg), 'go'), '');
        assert.deepEqual(await withDeadline(h.wait(), 'the re-attached task to exit'), { exitCode: 7 });
      },
    );

    void test('a task that exited while the agent was down: its recorded exit code', { skip }, async () => {
      const cfg = await taskConfig(data, 'sh', ['-c', 'exit 5']);
      const saved = await startDetached(mode.driver, cfg, data, mode.isolation);
      const state = procOf(saved);
      await waitFor(() => !isSameProcess(state.pid, state.pidStartTime), { description: 'the task to exit' });
      const h = await recover(saved);
      assert.deepEqual(await withDeadline(h.wait(), 'the recorded result'), { exitCode: 5 });
    });

    void test('stop() of a re-attached task stops it', { skip }, async () => {
      const cfg = await taskConfig(data, 'sh', [
        '-c',
        'trap "echo stopping; exit 3" TERM; sleep 300 & echo ready; while :; do sleep 0.05; done',
      ]);
      const saved = await startDetached(mode.driver, cfg, data, mode.isolation);
      await waitFor(async () => (await stdoutOf(cfg)).includes('ready'));
      const sleeper = await waitFor(() => processesIn(cfg.cwd, 'sleep 300').at(0));
      const h = await recover(saved);
      assert.deepEqual(await withDeadline(h.stop('SIGTERM', 5_000), 'the stop'), { exitCode: 3 });
      assert.match(await stdoutOf(cfg), /stopping/);
      await waitFor(() => !isAlive(sleeper) && processesIn(cfg.cwd).length === 0, {
        description: 'nothing of the task to be left',
      });
    });

    void test(
      'stop() of a re-attached task that ignores the signal kills it after the timeout',
      { skip },
      async () => {
        const cfg = await taskConfig(data, 'sh', [
          '-c',
          'trap "" TERM; echo ready; while :; do sleep 0.05; done',
        ]);
        const saved = await startDetached(mode.driver, cfg, data, mode.isolation);
        await waitFor(async () => (await stdoutOf(cfg)).includes('ready'));
        const h = await recover(saved);
        assert.deepEqual(await withDeadline(h.stop('SIGTERM', 100), 'the stop'), { signal: 'SIGKILL' });
        await waitFor(() => processesIn(cfg.cwd).length === 0, {
          description: 'nothing of the task to be left',
        });
      },
    );

    void test(
      'a wrapper killed while the agent was down: exit status unknown, and nothing is left',
      { skip },
      async () => {
        const cfg = await taskConfig(data, 'sh', ['-c', 'echo ready; sleep 300']);
        const saved = await startDetached(mode.driver, cfg, data, mode.isolation);
        const state = procOf(saved);
        await waitFor(async () => (await stdoutOf(cfg)).includes('ready'));
        process.kill(state.pid, 'SIGKILL');
        await waitFor(() => !isSameProcess(state.pid, state.pidStartTime));
        const h = await recover(saved);
        const result = await withDeadline(h.wait(), 'the result');
        assert.deepEqual(result, { detail: 'exited while the agent was down; exit status unknown' });
        await waitFor(() => processesIn(cfg.cwd).length === 0, { description: 'the task to be gone' });
      },
    );

    void test('a re-used pid is not mistaken for the task', { skip }, async () => {
      const cfg = await taskConfig(data, 'sh', ['-c', 'exit 0']);
      const saved = await startDetached(mode.driver, cfg, data, mode.isolation);
      const state = procOf(saved);
      // Read before the wrapper (gone at once) could be reaped: without it any process would match.
      assert.ok(state.pidStartTime > 0, 'the start time is known');
      await waitFor(() => !isSameProcess(state.pid, state.pidStartTime));
      // Our own pid is alive, with another start time.
      const impostor = processHandleState(mode.driver, { ...state, pid: process.pid });
      assert.notEqual(procStat(process.pid)?.startTime, state.pidStartTime);
      const h = await recover(impostor);
      assert.deepEqual(await withDeadline(h.wait(), 'the recorded result'), { exitCode: 0 });
    });

    void test('a process group number taken over by a stranger is not killed', { skip }, async () => {
      const cfg = await taskConfig(data, 'sh', ['-c', 'exit 0']);
      const saved = await startDetached(mode.driver, cfg, data, mode.isolation);
      const state = procOf(saved);
      await waitFor(() => !isSameProcess(state.pid, state.pidStartTime));
      // A stranger's group leader now holds the number the task's group had. Start times count in
      // clock ticks (10 ms): one started in the task's own tick would pass for the task itself, which
      // a real restart never sees (the task started long before). Wait for a later tick.
      await waitFor(() => uptimeTicks() > state.pidStartTime + 1);
      const stranger = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
      try {
        const pid = stranger.pid!;
        assert.notEqual(procStat(pid)?.startTime, state.pidStartTime);
        const taken = { ...state, pid: pid, pgid: pid, pidStartTime: state.pidStartTime };
        assert.equal(groupTakenOver(taken), true);
        const h = await recover(processHandleState(mode.driver, taken));
        await withDeadline(h.wait(), 'the recorded result');
        assert.ok(isSameProcess(pid, procStat(pid)!.startTime), 'the stranger survived');
      } finally {
        stranger.kill('SIGKILL');
      }
    });
  });
}

void describe('recover', () => {
  const data = {
    allocId: 'a',
    task: 't',
    wrapper: 'sh',
    pid: 1,
    pgid: 1,
    pidStartTime: 1,
    startedAt: 0,
    stdoutPath: '/nonexistent',
    stderrPath: '/nonexistent',
    statusPath: '/nonexistent',
    memoryLimitMiB: 1,
  } as const;

  void test('a state of another driver or version is not recoverable', async () => {
    const exec = drivers.exec({ logger: silentLogger(), enabled: true, isolation: noIsolation() });
    assert.equal(await exec.recover?.(processHandleState('raw_exec', data)), undefined);
    assert.equal(await exec.recover?.({ driver: 'exec', version: 1, data }), undefined);
    assert.equal(await exec.recover?.({ driver: 'exec', version: 3, data: null }), undefined);
  });

  void test('the flat version-2 state of an earlier agent reads as the envelope', () => {
    const old = { version: 2, driver: 'exec', ...data };
    assert.deepEqual(upgradeHandleState(old), { driver: 'exec', version: 3, data });
    assert.deepEqual(
      upgradeHandleState(processHandleState('raw_exec', data)),
      processHandleState('raw_exec', data),
    );
    assert.equal(upgradeHandleState('nonsense'), undefined);
    assert.equal(upgradeHandleState({ pid: 1 }), undefined);
  });
});

/** Clock ticks since boot (the unit of a process's start time in /proc/<pid>/stat). */
function uptimeTicks(): number {
  return Math.floor(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 100);
}
