import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, afterEach, before, describe, test } from 'node:test';
import type { JobSpecInput } from '../../core/job-spec.ts';
import { silentLogger } from '../../core/log.ts';
import type { TaskEventType } from '../../core/types.ts';
import { waitFor } from '../../testing/wait.ts';
import { requireExecDriverTools } from '../../testing/tools.ts';
import { allocDirPaths, buildAllocDir, taskDirPaths } from './alloc-dir.ts';
import { drivers } from '../drivers/index.ts';
import type { Driver, ExitResult, TaskConfig, TaskHandle, TaskHandleState } from '../drivers/types.ts';
import type { PersistedTask } from '../state.ts';
import { isAlive, killQuietly, tempDir, testAlloc } from '../fixtures.ts';
import { MAX_TASK_EVENTS, TaskRunner } from './task-runner.ts';
import { buildTaskEnv, interpolateCommand } from './task-env.ts';

type TaskInput = JobSpecInput['groups'][number]['tasks'][number];
type RestartInput = JobSpecInput['groups'][number]['restart'];

void describe('TaskRunner', () => {
  before(requireExecDriverTools);
  let dir: { path: string; cleanup: () => Promise<void> };
  const runners: TaskRunner[] = [];
  const exec = drivers.exec({ logger: silentLogger(), enabled: true });

  before(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    for (const r of runners.splice(0)) {
      killQuietly(r.state().pid);
      await r.kill('test over');
    }
  });
  after(async () => {
    await dir.cleanup();
  });

  async function runner(
    type: 'service' | 'batch',
    task: Omit<TaskInput, 'name'>,
    restart: RestartInput = {},
  ) {
    const alloc = testAlloc({ type, tasks: [{ name: 't', ...task }], restart });
    const spec = alloc.groupSpec.tasks[0]!;
    await buildAllocDir(dir.path, alloc.id, ['t']);
    const taskDir = taskDirPaths(dir.path, alloc.id, 't');
    const env = buildTaskEnv(
      alloc,
      spec,
      { alloc: allocDirPaths(dir.path, alloc.id), task: taskDir },
      'node-1',
    );
    let changes = 0;
    const r = new TaskRunner({
      alloc,
      task: spec,
      driver: exec,
      config: {
        allocId: alloc.id,
        task: 't',
        ...interpolateCommand(spec, env),
        env,
        cwd: taskDir.dir,
        stdoutPath: taskDir.stdout,
        stderrPath: taskDir.stderr,
        resources: spec.resources,
      },
      logger: silentLogger(),
      onChange: () => changes++,
    });
    runners.push(r);
    return { r, taskDir, changes: () => changes };
  }

  const types = (r: TaskRunner): TaskEventType[] => r.state().events.map((e) => e.type);

  void test('a service task killed with SIGKILL is restarted, and the event names the signal', async () => {
    const { r, changes } = await runner(
      'service',
      { command: 'sleep', args: ['300'] },
      { attempts: 3, delay: '10ms' },
    );
    void r.run();
    const first = await waitFor(() => r.state().pid, { description: 'the task to start' });
    assert.equal(r.state().state, 'running');
    process.kill(first, 'SIGKILL');
    const second = await waitFor(() => (r.state().pid !== first ? r.state().pid : undefined), {
      description: 'the task to be restarted',
    });
    const s = r.state();
    assert.equal(s.state, 'running');
    assert.equal(s.restarts, 1);
    assert.equal(s.failed, false);
    assert.notEqual(second, first);
    const terminated = s.events.find((e) => e.type === 'terminated');
    assert.equal(terminated?.message, 'killed by signal SIGKILL');
    assert.equal(terminated?.signal, 'SIGKILL');
    assert.equal(
      s.events.find((e) => e.type === 'restarting')?.message,
      'restarting in 10ms: killed by signal SIGKILL (restart 1 of 3)',
    );
    assert.deepEqual(types(r), ['received', 'started', 'terminated', 'restarting', 'started']);
    assert.ok(changes() >= 3, 'every transition is reported');

    await r.kill('stopped by test');
    const end = r.state();
    assert.equal(end.state, 'dead');
    assert.equal(end.failed, false);
    assert.equal(end.signal, 'SIGTERM');
    assert.deepEqual(types(r).slice(-2), ['killing', 'killed']);
    assert.equal(isAlive(second), false);
  });

  void test('a batch task that exits 0 completes: not failed, not restarted', async () => {
    const { r } = await runner('batch', { command: 'sh', args: ['-c', 'echo done'] });
    await r.run();
    const s = r.state();
    assert.equal(s.state, 'dead');
    assert.equal(s.failed, false);
    assert.equal(s.exitCode, 0);
    assert.equal(s.restarts, 0);
    assert.ok(s.startedAt !== undefined && s.finishedAt !== undefined);
    assert.equal(s.pid, undefined);
    assert.deepEqual(types(r), ['received', 'started', 'terminated']);
    assert.equal(s.events.at(-1)?.message, 'exited with code 0');
  });

  void test('a batch task that exits 1 is retried per the policy, then fails', async () => {
    const { r } = await runner(
      'batch',
      { command: 'sh', args: ['-c', 'exit 1'] },
      { attempts: 1, delay: '10ms' },
    );
    await r.run();
    const s = r.state();
    assert.equal(s.state, 'dead');
    assert.equal(s.failed, true);
    assert.equal(s.exitCode, 1);
    assert.equal(s.restarts, 1);
    assert.deepEqual(types(r), [
      'received',
      'started',
      'terminated',
      'restarting',
      'started',
      'terminated',
      'not-restarting',
    ]);
    assert.equal(s.events[3]?.message, 'restarting in 10ms: exited with code 1 (restart 1 of 1)');
    assert.equal(s.events.at(-1)?.message, 'restart attempts exhausted');
  });

  void test('an exec error fails the task at once, without retry, and lands in stderr.log', async () => {
    const { r, taskDir } = await runner(
      'service',
      { command: 'python4', args: ['app.py'] },
      { attempts: 5, delay: '10ms' },
    );
    await r.run();
    const s = r.state();
    assert.equal(s.state, 'dead');
    assert.equal(s.failed, true);
    assert.equal(s.restarts, 0);
    assert.deepEqual(types(r), ['received', 'driver-failure']);
    assert.equal(s.events.at(-1)?.message, 'exec: "python4": command not found');
    assert.equal(await readFile(taskDir.stderr, 'utf8'), 'unum: exec: "python4": command not found\n');
  });

  void test('a task that ignores its kill signal is killed with SIGKILL after killTimeout', async () => {
    const { r, taskDir } = await runner('service', {
      command: 'sh',
      args: ['-c', 'trap "" TERM; echo ready; while :; do sleep 1; done'],
      killTimeout: '50ms',
    });
    void r.run();
    await waitFor(async () => (await readFile(taskDir.stdout, 'utf8')).includes('ready'));
    await r.kill('stopped by test');
    const s = r.state();
    assert.equal(s.signal, 'SIGKILL');
    assert.equal(
      s.events.find((e) => e.type === 'killing')?.message,
      'sending SIGTERM (SIGKILL after 50ms): stopped by test',
    );
    assert.equal(s.events.at(-1)?.message, 'stopped (killed by signal SIGKILL): stopped by test');
  });

  void test('a kill while waiting to restart ends the task without starting it again', async () => {
    const { r } = await runner(
      'service',
      { command: 'sh', args: ['-c', 'exit 2'] },
      { attempts: 3, delay: '1h', maxDelay: '1h' },
    );
    void r.run();
    await waitFor(() => r.state().events.some((e) => e.type === 'restarting'));
    await r.kill('job stopped');
    const s = r.state();
    assert.equal(s.state, 'dead');
    assert.equal(s.failed, false);
    assert.equal(s.events.filter((e) => e.type === 'started').length, 1);
    assert.equal(s.events.at(-1)?.message, 'stopped while waiting to restart: job stopped');
  });

  void test(`keeps only the last ${MAX_TASK_EVENTS} events`, async () => {
    const { r } = await runner(
      'service',
      { command: 'sh', args: ['-c', 'exit 1'] },
      { attempts: 10, delay: '1ms', maxDelay: '1ms' },
    );
    await r.run();
    const s = r.state();
    assert.equal(s.restarts, 10);
    assert.equal(s.failed, true);
    assert.equal(s.events.length, MAX_TASK_EVENTS);
    assert.equal(s.events.at(-1)?.type, 'not-restarting');
  });
});

/**
 * The runner's side of re-attaching, against a double of the driver contract (`recover`): what the
 * runner reports for each answer the driver can give. The real driver is exercised end to end in
 * agent-restart.test.ts.
 */
void describe('TaskRunner restored after an agent restart', () => {
  // A process that surely runs: the test's own (the double never signals it).
  const PID = process.pid;
  // The runner keeps the driver's handle state as an opaque value and gives it back to recover().
  const PROC = {
    pid: PID,
    pgid: PID,
    startedAt: 1,
    stdoutPath: '/nonexistent/stdout.log',
    stderrPath: '/nonexistent/stderr.log',
  };
  const STATE: TaskHandleState = { driver: 'exec', version: 3, data: PROC };

  function handle(result?: ExitResult): TaskHandle & { exit(r: ExitResult): void; stopped: string[] } {
    const exited = Promise.withResolvers<ExitResult>();
    if (result !== undefined) exited.resolve(result);
    const stopped: string[] = [];
    return {
      pid: PROC.pid,
      startedAt: PROC.startedAt,
      state: STATE,
      wait: () => exited.promise,
      signal: () => undefined,
      stop(signal) {
        stopped.push(signal);
        exited.resolve({ signal });
        return exited.promise;
      },
      usage: () => Promise.resolve({ cpuNanos: 5, memoryBytes: 6, pids: 1 }),
      exit: (r) => exited.resolve(r),
      stopped,
    };
  }

  function restored(
    recover: Driver['recover'],
    over: { type?: 'service' | 'batch'; restart?: RestartInput; task?: Partial<PersistedTask> } = {},
  ) {
    const alloc = testAlloc({
      type: over.type ?? 'service',
      tasks: [{ name: 't', command: 'sleep', args: ['300'] }],
      restart: over.restart ?? { attempts: 0, mode: 'fail' },
    });
    const spec = alloc.groupSpec.tasks[0]!;
    const started: TaskConfig[] = [];
    const driver: Driver = {
      name: 'exec',
      fingerprint: () => Promise.resolve({ detected: true, healthy: true }),
      start: (config) => {
        started.push(config);
        return Promise.resolve(handle());
      },
    };
    if (recover !== undefined) driver.recover = recover;
    const r = new TaskRunner({
      alloc,
      task: spec,
      driver,
      config: {
        allocId: alloc.id,
        task: 't',
        command: 'sleep',
        args: ['300'],
        env: {},
        cwd: '/nonexistent',
        stdoutPath: PROC.stdoutPath,
        stderrPath: PROC.stderrPath,
        resources: spec.resources,
      },
      logger: silentLogger(),
      onChange: () => undefined,
      restored: {
        state: {
          state: 'running',
          failed: false,
          restarts: 0,
          pid: PROC.pid,
          startedAt: 1,
          events: [{ time: 1, type: 'started', message: `started (pid ${PID})` }],
        },
        started: true,
        handle: STATE,
        restartHistory: [],
        ...over.task,
      },
    });
    return { r, started };
  }

  void test('a task still running is re-attached: same pid, running, a reattached event, no new start', async () => {
    const h = handle();
    const { r, started } = restored((state) => {
      assert.deepEqual(state, STATE, 'the driver gets the saved handle state back');
      return Promise.resolve(h);
    });
    void r.run();
    await r.recovered;
    const s = r.state();
    assert.equal(s.state, 'running');
    assert.equal(s.pid, PID);
    assert.deepEqual(
      s.events.map((e) => [e.type, e.message]),
      [
        ['started', `started (pid ${PID})`],
        ['reattached', `re-attached after an agent restart (pid ${PID})`],
      ],
    );
    assert.equal(started.length, 0);
    assert.deepEqual(r.snapshot().handle, STATE, 'the handle is saved again');
    assert.deepEqual(await r.usage(), { cpuNanos: 5, memoryBytes: 6, pids: 1 });
    // It is then a task like any other: a kill stops it through the re-attached handle.
    await r.kill('stopped by test');
    assert.deepEqual(h.stopped, ['SIGTERM']);
    assert.equal(r.state().state, 'dead');
  });

  void test('a task that exited while the agent was down is reported with its exit code', async () => {
    const { r } = restored(() => Promise.resolve(handle({ exitCode: 42 })), { type: 'batch' });
    await r.run();
    const s = r.state();
    assert.equal(s.state, 'dead');
    assert.equal(s.failed, true);
    assert.equal(s.exitCode, 42);
    const terminated = s.events.find((e) => e.type === 'terminated');
    assert.equal(terminated?.message, 'exited with code 42 while the agent was down');
    assert.equal(terminated?.exitCode, 42);
  });

  void test('then the restart policy applies as for any exit', async () => {
    const { r, started } = restored(() => Promise.resolve(handle({ exitCode: 3 })), {
      restart: { attempts: 2, delay: '1ms' },
    });
    void r.run();
    await waitFor(() => started.length === 1, { description: 'a restart' });
    await waitFor(() => r.state().state === 'running');
    assert.deepEqual(
      r.state().events.map((e) => e.type),
      ['started', 'terminated', 'restarting', 'started'],
    );
    assert.equal(r.state().restarts, 1);
    await r.kill('test over');
  });

  void test('a task the driver can not find is a failed exit with a clear message', async () => {
    const { r } = restored(() => Promise.resolve(undefined));
    await r.run();
    const s = r.state();
    assert.equal(s.state, 'dead');
    assert.equal(s.failed, true);
    assert.equal(s.exitCode, undefined);
    assert.equal(
      s.events.find((e) => e.type === 'terminated')?.message,
      `lost while the agent was down: process ${PID} could not be found; its exit code is unknown`,
    );
    assert.equal(s.events.at(-1)?.type, 'not-restarting');
  });

  void test('a driver without recover: the task is lost, said so', async () => {
    const { r } = restored(undefined);
    await r.run();
    assert.match(
      r.state().events.find((e) => e.type === 'terminated')?.message ?? '',
      new RegExp(
        `^lost while the agent was down: driver exec cannot re-attach to running tasks \\(pid ${PID}\\)`,
      ),
    );
  });

  void test('a task that was waiting to restart waits out the rest of its delay, with its restart history', async () => {
    const { r, started } = restored(() => Promise.resolve(undefined), {
      restart: { attempts: 2, interval: '1h', delay: '1ms' },
      task: {
        state: { state: 'pending', failed: false, restarts: 1, events: [] },
        restartAt: Date.now(),
        restartHistory: [Date.now(), Date.now()],
      },
    });
    void r.run();
    await waitFor(() => started.length === 1, { description: 'the pending restart' });
    assert.equal(r.snapshot().restartHistory.length, 2, 'the history came back');
    const running = await waitFor(() => (r.state().state === 'running' ? r : undefined));
    assert.equal(running.state().restarts, 2, 'the pending restart is counted once it happens');
    await r.kill('test over');
  });
});
