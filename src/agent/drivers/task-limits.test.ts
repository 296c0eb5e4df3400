/**
 * What a task gets from the agent beyond its command: no descriptor but stdio, an open-file limit of
 * its own, and no start at all when its sandbox was never moved into its cgroup. The tasks are
 * started by another process (start-task.fixture.ts), one that holds an inherited descriptor and a
 * low open-file limit of its own, as an agent started from a careless shell would.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { waitFor } from '../../testing/wait.ts';
import { noIsolation, type IsolationCapability } from './exec/isolation.ts';
import { bwrapArgs, type SandboxSpec } from './exec/sandbox.ts';
import {
  dataDir,
  nodeIsolation,
  sandboxUnavailable,
  stdoutOf,
  taskConfig,
  type DataDir,
} from './driver-fixtures.ts';
import { DEFAULT_TASK_OPEN_FILES, sandboxEntryArgs } from './launch.ts';
import type { DriverName, TaskConfig } from './types.ts';

const modes: {
  name: string;
  driver: DriverName;
  isolation: 'auto' | 'off';
  skip: () => Promise<string | undefined>;
}[] = [
  { name: 'exec, isolated', driver: 'exec', isolation: 'auto', skip: sandboxUnavailable },
  { name: 'exec, not isolated', driver: 'exec', isolation: 'off', skip: () => Promise.resolve(undefined) },
  { name: 'raw_exec', driver: 'raw_exec', isolation: 'off', skip: () => Promise.resolve(undefined) },
];

const entryCap: IsolationCapability =
  (await sandboxUnavailable()) === undefined ? await nodeIsolation() : noIsolation();

/** The fd the starting process inherited without close-on-exec (as from a shell that leaked it). */
const LEAKED_FD = 7;

/**
 * Starts `config` from a child process whose soft open-file limit is 256 and that holds an inherited
 * descriptor at LEAKED_FD, then waits for the task's output (it ends on its own).
 */
async function startFromLeakyAgent(
  driver: DriverName,
  config: TaskConfig,
  data: DataDir,
  isolation: 'auto' | 'off',
  taskOpenFiles?: number,
): Promise<string> {
  const input = JSON.stringify({ driver, config, dataDir: data.path, isolation, taskOpenFiles });
  const leaked = await open(join(data.path, 'leaked'), 'w');
  try {
    const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'pipe', 'pipe'];
    stdio[LEAKED_FD] = leaked.fd;
    const child = spawn(
      'prlimit',
      ['--nofile=256:', '--', process.execPath, join(import.meta.dirname, 'start-task.fixture.ts'), input],
      { stdio },
    );
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, `start-task fixture failed: ${stderr}`);
  } finally {
    await leaked.close();
  }
  return waitFor(
    async () => {
      const out = await stdoutOf(config);
      return out.includes('done\n') ? out : undefined;
    },
    { description: 'the task to print its descriptors and limits' },
  );
}

for (const mode of modes) {
  void describe(`task limits (${mode.name})`, async () => {
    const skip = await mode.skip();
    let data: DataDir;
    before(async () => {
      data = await dataDir();
    });
    after(async () => {
      await data.cleanup();
    });

    void test('the task inherits no descriptor beyond stdin, stdout and stderr', { skip }, async () => {
      // ls lists the shell's descriptors: the shell itself opens none.
      const cfg = await taskConfig(data, 'sh', ['-c', 'ls /proc/$$/fd; echo done']);
      const out = await startFromLeakyAgent(mode.driver, cfg, data, mode.isolation);
      assert.deepEqual(out.trim().split('\n'), ['0', '1', '2', 'done']);
    });

    void test('the task has its own open-file limit, whatever the agent has', { skip }, async () => {
      const cfg = await taskConfig(data, 'sh', ['-c', 'ulimit -S -n; ulimit -H -n; echo done']);
      const out = await startFromLeakyAgent(mode.driver, cfg, data, mode.isolation);
      const want = String(DEFAULT_TASK_OPEN_FILES);
      assert.deepEqual(out.trim().split('\n'), [want, want, 'done']);

      const set = await taskConfig(data, 'sh', ['-c', 'ulimit -S -n; ulimit -H -n; echo done']);
      const custom = await startFromLeakyAgent(mode.driver, set, data, mode.isolation, 1000);
      assert.deepEqual(custom.trim().split('\n'), ['1000', '1000', 'done']);
    });
  });
}

void describe('sandbox entry', () => {
  const cap = entryCap;
  const skip = cap.bwrapPath === undefined ? 'needs bubblewrap as root' : false;

  void test('a sandbox let go without joining its cgroup never runs the task', { skip }, async () => {
    const data = await dataDir();
    try {
      const marker = join(data.path, 'ran');
      const spec: SandboxSpec = {
        hide: [],
        taskDir: data.path,
        maskedProc: { files: [], dirs: [] },
        hostname: 'gate',
        tmpfsBytes: 1024 * 1024,
        statusFd: 3,
        join: { info: 4, block: 5 },
        // A cgroup the sandbox was never moved into: the agent died before it could.
        entry: sandboxEntryArgs('unum-never-joined.t', 4096),
        command: 'sh',
        args: ['-c', `echo ran > ${marker}`],
      };
      // The agent's end of the block pipe is closed at once: bwrap reads EOF, as when the agent dies.
      const child = spawn(cap.bwrapPath ?? 'bwrap', bwrapArgs(spec), {
        stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
      });
      const stdio = child.stdio as unknown as (Readable | Writable | null)[];
      let stderr = '';
      child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
      for (const fd of [3, 4]) (stdio[fd] as Readable).resume();
      (stdio[5] as Writable).end();
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      assert.equal(existsSync(marker), false, 'the task ran outside its cgroup');
      assert.equal(code, 125);
      assert.match(stderr, /never moved into its cgroup/);
    } finally {
      await data.cleanup();
    }
  });
});
