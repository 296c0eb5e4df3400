import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { silentLogger } from '../../core/log.ts';
import { waitFor } from '../../testing/wait.ts';
import { isAlive, killQuietly, tempDir } from '../fixtures.ts';
import { drivers } from './index.ts';
import { ExecError, describeExit, type TaskConfig, type TaskHandle } from './types.ts';

void describe('exec driver', () => {
  const exec = drivers.exec({ logger: silentLogger(), enabled: true });
  let dir: { path: string; cleanup: () => Promise<void> };
  const handles: TaskHandle[] = [];
  let n = 0;

  before(async () => {
    dir = await tempDir();
  });
  afterEach(() => {
    for (const h of handles.splice(0)) killQuietly(h.pid);
  });
  after(async () => {
    await dir.cleanup();
  });

  async function config(
    command: string,
    args: string[],
    env: Record<string, string> = {},
  ): Promise<TaskConfig> {
    const cwd = join(dir.path, `task-${++n}`);
    await mkdir(join(cwd, 'logs'), { recursive: true });
    return {
      allocId: 'a1',
      task: 't',
      command,
      args,
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env },
      cwd,
      stdoutPath: join(cwd, 'logs', 'stdout.log'),
      stderrPath: join(cwd, 'logs', 'stderr.log'),
      resources: { cpu: 100, memory: 64 },
    };
  }

  async function start(cfg: TaskConfig): Promise<TaskHandle> {
    const h = await exec.start(cfg);
    handles.push(h);
    return h;
  }

  void test('reports the exit code', async () => {
    const h = await start(await config('sh', ['-c', 'exit 3']));
    assert.ok(h.pid > 0);
    assert.deepEqual(await h.wait(), { exitCode: 3 });
    assert.equal(describeExit({ exitCode: 3 }), 'exited with code 3');
  });

  void test('reports the signal that killed the task', async () => {
    const h = await start(await config('sleep', ['300']));
    process.kill(h.pid, 'SIGKILL');
    const result = await h.wait();
    assert.deepEqual(result, { signal: 'SIGKILL' });
    assert.equal(describeExit(result), 'killed by signal SIGKILL');
  });

  void test('a missing program is an exec error: command not found', async () => {
    await assert.rejects(exec.start(await config('python4', ['-V'])), (err: unknown) => {
      assert.ok(err instanceof ExecError);
      assert.equal(err.message, 'exec: "python4": command not found');
      assert.equal(err.errno, 'ENOENT');
      return true;
    });
  });

  void test('a file that is not executable is an exec error: permission denied', async () => {
    const cfg = await config('./script.sh', []);
    await writeFile(join(cfg.cwd, 'script.sh'), '#!/bin/sh\necho hi\n');
    await chmod(join(cfg.cwd, 'script.sh'), 0o644);
    await assert.rejects(exec.start(cfg), (err: unknown) => {
      assert.ok(err instanceof ExecError);
      assert.equal(err.message, 'exec: "./script.sh": permission denied');
      return true;
    });
  });

  void test('runs in the task dir with exactly the given environment, output appended to the log files', async () => {
    const cfg = await config(
      'sh',
      ['-c', 'echo "$GREETING from $(pwd)"; echo "oops" >&2; echo "agent-home=${HOME:-unset}"'],
      {
        GREETING: 'hello',
      },
    );
    await writeFile(cfg.stdoutPath, 'earlier line\n');
    assert.deepEqual(await (await start(cfg)).wait(), { exitCode: 0 });
    assert.deepEqual(await (await start(cfg)).wait(), { exitCode: 0 });
    const out = await readFile(cfg.stdoutPath, 'utf8');
    const run = `hello from ${cfg.cwd}\nagent-home=unset\n`;
    assert.equal(out, `earlier line\n${run}${run}`);
    assert.equal(await readFile(cfg.stderrPath, 'utf8'), 'oops\noops\n');
  });

  void test('stop kills the whole process group: a forked background child is gone too', async () => {
    const cfg = await config('sh', ['-c', 'sleep 300 & echo $!; wait']);
    const h = await start(cfg);
    const childPid = await waitFor(
      async () => Number((await readFile(cfg.stdoutPath, 'utf8')).trim()) || undefined,
      {
        description: 'the task to print its child pid',
      },
    );
    assert.ok(isAlive(childPid), 'the background child runs before the stop');
    const result = await h.stop('SIGTERM', 5_000);
    assert.deepEqual(result, { signal: 'SIGTERM' });
    await waitFor(() => !isAlive(childPid) && !isAlive(h.pid), {
      description: 'the task and its child to be gone',
    });
  });

  void test('a child left behind when the task exits on its own is killed with it', async () => {
    const cfg = await config('sh', ['-c', 'sleep 300 & echo $!']);
    const h = await start(cfg);
    assert.deepEqual(await h.wait(), { exitCode: 0 });
    const childPid = Number((await readFile(cfg.stdoutPath, 'utf8')).trim());
    assert.ok(childPid > 0);
    await waitFor(() => !isAlive(childPid), { description: 'the orphaned child to be killed' });
  });

  void test('stop sends SIGKILL after the kill timeout when the task ignores the kill signal', async () => {
    const cfg = await config('sh', ['-c', 'trap "" TERM; echo ready; while :; do sleep 1; done']);
    const h = await start(cfg);
    await waitFor(async () => (await readFile(cfg.stdoutPath, 'utf8')).includes('ready'));
    const result = await h.stop('SIGTERM', 100);
    assert.deepEqual(result, { signal: 'SIGKILL' });
    // Stop is idempotent once the task is gone.
    assert.deepEqual(await h.stop('SIGTERM', 100), { signal: 'SIGKILL' });
  });

  void test('the handle state is plain JSON for a future re-attach', async () => {
    const cfg = await config('sleep', ['300']);
    const h = await start(cfg);
    const state = JSON.parse(JSON.stringify(h.state)) as typeof h.state;
    assert.deepEqual(state, {
      version: 1,
      driver: 'exec',
      pid: h.pid,
      pgid: h.pid,
      startedAt: h.startedAt,
      stdoutPath: cfg.stdoutPath,
      stderrPath: cfg.stderrPath,
    });
    await h.stop('SIGKILL', 0);
  });
});

void describe('raw_exec driver', () => {
  void test('is off unless enabled', async () => {
    const off = drivers.raw_exec({ logger: silentLogger(), enabled: false });
    const info = await off.fingerprint();
    assert.equal(info.healthy, false);
    assert.match(info.description ?? '', /disabled/);
    const on = drivers.raw_exec({ logger: silentLogger(), enabled: true });
    assert.equal((await on.fingerprint()).healthy, true);
  });
});
