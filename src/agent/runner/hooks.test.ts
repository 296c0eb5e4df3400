/** Hooks around a task's life (hooks.ts): their order, and a failing prestart hook. */
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../../core/log.ts';
import { waitFor } from '../../testing/wait.ts';
import { buildAllocDir, taskDirPaths } from './alloc-dir.ts';
import { AllocRunner } from './alloc-runner.ts';
import type { Driver, ExitResult, TaskConfig, TaskHandle } from '../drivers/types.ts';
import { tempDir, testAlloc } from '../fixtures.ts';
import type { TaskHook } from './hooks.ts';
import { TaskRunner } from './task-runner.ts';

/** A driver double: records each start, and its tasks exit when told to. */
function fakeDriver(): Driver & { starts: TaskConfig[]; exit(result: ExitResult): void } {
  const exits: ((r: ExitResult) => void)[] = [];
  const starts: TaskConfig[] = [];
  return {
    name: 'exec',
    starts,
    fingerprint: () => Promise.resolve({ detected: true, healthy: true }),
    start(config) {
      starts.push(config);
      const exited = Promise.withResolvers<ExitResult>();
      exits.push(exited.resolve);
      const handle: TaskHandle = {
        pid: 4242,
        startedAt: 1,
        state: { driver: 'exec', version: 3, data: {} },
        wait: () => exited.promise,
        signal: () => undefined,
        stop: (signal) => {
          exited.resolve({ signal });
          return exited.promise;
        },
        usage: () => Promise.resolve(undefined),
      };
      return Promise.resolve(handle);
    },
    exit: (result) => exits.shift()?.(result),
  };
}

void describe('task hooks', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await dir.cleanup();
  });

  let allocId = '';
  async function runner(hooks: TaskHook[], driver: Driver): Promise<TaskRunner> {
    const alloc = testAlloc({ type: 'batch', tasks: [{ name: 't', command: 'sleep', args: ['1'] }] });
    allocId = alloc.id;
    await buildAllocDir(dir.path, alloc.id, ['t']);
    const paths = taskDirPaths(dir.path, alloc.id, 't');
    return new TaskRunner({
      alloc,
      task: alloc.groupSpec.tasks[0]!,
      driver,
      config: {
        allocId: alloc.id,
        task: 't',
        command: 'sleep',
        args: ['1'],
        env: {},
        cwd: paths.dir,
        stdoutPath: paths.stdout,
        stderrPath: paths.stderr,
        resources: { cpu: 100, memory: 64 },
      },
      hooks,
      logger: silentLogger(),
      onChange: () => undefined,
    });
  }

  void test('run in list order around the process: prestart, poststart, exited; stop when asked', async () => {
    const calls: string[] = [];
    const hook = (name: string): TaskHook => ({
      name,
      prestart: async (ctx) => {
        await Promise.resolve();
        calls.push(`${name}.prestart`);
        ctx.config.env[name] = 'set';
      },
      poststart: (_ctx, handle) => calls.push(`${name}.poststart ${handle.pid}`),
      exited: (_ctx, result) => calls.push(`${name}.exited ${result.exitCode}`),
      stop: (_ctx, reason) => calls.push(`${name}.stop ${reason}`),
    });
    const driver = fakeDriver();
    const r = await runner([hook('a'), hook('b')], driver);
    const done = r.run();
    await waitFor(() => driver.starts.length === 1, { description: 'the start' });
    // What the prestart hooks filled in is what the driver started.
    assert.deepEqual(driver.starts[0]?.env, { a: 'set', b: 'set' });
    driver.exit({ exitCode: 0 });
    await done;
    assert.deepEqual(calls, [
      'a.prestart',
      'b.prestart',
      'a.poststart 4242',
      'b.poststart 4242',
      'a.exited 0',
      'b.exited 0',
    ]);

    calls.length = 0;
    const stopped = await runner([hook('a')], fakeDriver());
    await stopped.kill('no longer wanted');
    assert.deepEqual(calls, ['a.stop no longer wanted']);
  });

  void test('a failing prestart hook fails the task with a clear message and runs no process', async () => {
    const driver = fakeDriver();
    const later: string[] = [];
    const r = await runner(
      [
        {
          name: 'template',
          prestart: () => {
            throw new Error('secret "db" not found');
          },
        },
        { name: 'after', prestart: () => void later.push('ran'), poststart: () => void later.push('post') },
      ],
      driver,
    );
    await r.run();
    const st = r.state();
    assert.equal(st.state, 'dead');
    assert.equal(st.failed, true);
    const message = 'prestart hook "template" failed: secret "db" not found';
    assert.equal(st.events.at(-1)?.type, 'driver-failure');
    assert.equal(st.events.at(-1)?.message, message);
    assert.equal(driver.starts.length, 0, 'no process was started');
    assert.deepEqual(later, [], 'the hooks after it did not run');
    // Also where `unum logs` shows it.
    const paths = taskDirPaths(dir.path, allocId, 't');
    assert.match(await readFile(paths.stderr, 'utf8'), /prestart hook "template" failed/);
  });
});

void describe('allocation hooks', () => {
  void test('the allocation dir and the task environment are set up by hooks before the start', async () => {
    const dir = await tempDir();
    try {
      const driver = fakeDriver();
      const alloc = testAlloc({
        type: 'batch',
        tasks: [{ name: 'web', command: 'echo', args: ['${UNUM_TASK}'] }],
      });
      const runner = new AllocRunner({
        alloc,
        allocsDir: dir.path,
        nodeId: 'node-1',
        driverFor: () => driver,
        logger: silentLogger(),
        onUpdate: () => undefined,
      });
      const done = runner.run();
      await waitFor(() => driver.starts.length === 1, { description: 'the start' });
      const started = driver.starts[0]!;
      assert.deepEqual(started.args, ['web'], 'interpolated by the env hook');
      assert.equal(started.env['UNUM_ALLOC_ID'], alloc.id);
      // The alloc-dir hook made the task's directory before the start.
      assert.ok((await stat(taskDirPaths(dir.path, alloc.id, 'web').dir)).isDirectory());
      driver.exit({ exitCode: 0 });
      await done;
      assert.equal(runner.status().clientStatus, 'complete');
    } finally {
      await dir.cleanup();
    }
  });
});
