/**
 * Test fixtures for the driver tests: allocation directories laid out as the agent lays them out,
 * task configs, the node's real isolation capability (detected once), and an "agent that dies"
 * (start-task.fixture.ts) for the re-attach tests. Not used by the agent itself.
 */
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { newId } from '../../core/ids.ts';
import { allocsRoot, buildAllocDir, taskDirPaths } from '../runner/alloc-dir.ts';
import { isAlive, tempDir } from '../fixtures.ts';
import { detectIsolation, type IsolationCapability } from './exec/isolation.ts';
import { processHandleData, type ProcessHandleData } from './handle-state.ts';
import type { DriverName, TaskConfig, TaskHandleState } from './types.ts';

export const TASK_PATH = '/usr/local/bin:/usr/bin:/bin';

let detected: Promise<IsolationCapability> | undefined;

/** What this node can enforce (detected once per test process). */
export function nodeIsolation(): Promise<IsolationCapability> {
  detected ??= detectIsolation();
  return detected;
}

/** Why the full sandbox can not be tested here (not root, no bwrap, no cgroups), or undefined. */
export async function sandboxUnavailable(): Promise<string | undefined> {
  const cap = await nodeIsolation();
  if (cap.namespaces && cap.unprivilegedUser && cap.cgroups !== undefined) return undefined;
  return `needs root, bubblewrap, setpriv and cgroups: ${cap.warnings.join('; ')}`;
}

export interface DataDir {
  path: string;
  allocs: string;
  cleanup(): Promise<void>;
}

export async function dataDir(): Promise<DataDir> {
  const d = await tempDir('unum-driver-');
  return { path: d.path, allocs: allocsRoot(d.path), cleanup: d.cleanup };
}

export interface TaskOptions {
  allocId?: string;
  task?: string;
  env?: Record<string, string>;
  resources?: Partial<TaskConfig['resources']>;
  user?: string;
  allocName?: string;
  devicePaths?: string[];
}

/** A task config in a freshly built allocation directory, as the alloc runner makes them. */
export async function taskConfig(
  data: DataDir,
  command: string,
  args: string[],
  opts: TaskOptions = {},
): Promise<TaskConfig> {
  const allocId = opts.allocId ?? newId();
  const task = opts.task ?? 't';
  await buildAllocDir(data.allocs, allocId, [task]);
  const t = taskDirPaths(data.allocs, allocId, task);
  const config: TaskConfig = {
    allocId,
    task,
    command,
    args,
    env: { PATH: TASK_PATH, ...opts.env },
    cwd: t.dir,
    stdoutPath: t.stdout,
    stderrPath: t.stderr,
    resources: { cpu: 100, memory: 64, ...opts.resources },
  };
  if (opts.user !== undefined) config.user = opts.user;
  if (opts.allocName !== undefined) config.allocName = opts.allocName;
  if (opts.devicePaths !== undefined) config.devicePaths = opts.devicePaths;
  return config;
}

export function stdoutOf(config: TaskConfig): Promise<string> {
  return readFile(config.stdoutPath, 'utf8');
}

export function stderrOf(config: TaskConfig): Promise<string> {
  return readFile(config.stderrPath, 'utf8');
}

/** The task's `local/` directory (the task may write it). */
export function localDir(config: TaskConfig): string {
  return join(config.cwd, 'local');
}

/**
 * Resolves with the promise, or rejects after `ms`. The timer also keeps the test process alive
 * while it waits on a re-attached task (whose poll timer does not).
 */
export async function withDeadline<T>(promise: Promise<T>, what: string, ms = 20_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The process data of a handle state (a test fails here when it is not the current shape). */
export function procOf(state: TaskHandleState): ProcessHandleData {
  const data = processHandleData(state, state.driver);
  if (data === undefined) throw new Error(`not a process handle state: ${JSON.stringify(state)}`);
  return data;
}

/**
 * Starts a task from another process that exits right after (an agent going down), and returns the
 * task's persisted handle state.
 */
export function startDetached(
  driver: DriverName,
  config: TaskConfig,
  data: DataDir,
  isolation: 'auto' | 'off',
): Promise<TaskHandleState> {
  const input = JSON.stringify({ driver, config, dataDir: data.path, isolation });
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [join(import.meta.dirname, 'start-task.fixture.ts'), input],
      { timeout: 20_000 },
      (err, stdout, stderr) => {
        if (err !== null) return reject(new Error(`start-task fixture failed: ${stderr}`, { cause: err }));
        resolve(JSON.parse(stdout) as TaskHandleState);
      },
    );
  });
}

/** Live host pids of processes working in `cwd` (a task's dir), optionally with this command line. */
export function processesIn(cwd: string, cmdline?: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    try {
      if (readlinkSync(`/proc/${pid}/cwd`) !== cwd) continue;
      if (
        cmdline !== undefined &&
        readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim() !== cmdline
      )
        continue;
      if (isAlive(pid)) out.push(pid);
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}
