import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, afterEach, before, describe, test } from 'node:test';
import type { JobSpecInput } from '../core/job-spec.ts';
import { silentLogger } from '../core/log.ts';
import type { TaskEventType } from '../core/types.ts';
import { waitFor } from '../testing/wait.ts';
import { allocDirPaths, buildAllocDir, taskDirPaths } from './alloc-dir.ts';
import { drivers } from './drivers/index.ts';
import { isAlive, killQuietly, tempDir, testAlloc } from './fixtures.ts';
import { MAX_TASK_EVENTS, TaskRunner } from './task-runner.ts';
import { buildTaskEnv, interpolateCommand } from './task-env.ts';

type TaskInput = JobSpecInput['groups'][number]['tasks'][number];
type RestartInput = JobSpecInput['groups'][number]['restart'];

void describe('TaskRunner', () => {
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
