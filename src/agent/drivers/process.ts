/**
 * Starting a task as a plain process: its own process group (`detached`: setsid), stdout and stderr
 * straight into log files opened in append mode. File descriptors rather than pipes: the agent is not
 * in the data path, so a task can outlive the agent (re-attach, next issue) and a slow log reader can
 * never block a task. Shared by the exec and raw_exec drivers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { open, stat } from 'node:fs/promises';
import type { Logger } from '../../core/log.ts';
import {
  ExecError,
  type DriverName,
  type ExitResult,
  type TaskConfig,
  type TaskHandle,
  type TaskHandleState,
} from './types.ts';

/**
 * Spawns the task. Rejects with ExecError when exec fails (the program is missing or not executable),
 * with another Error when the node can not prepare it (missing task directory, log files).
 */
export async function spawnTask(driver: DriverName, config: TaskConfig, logger: Logger): Promise<TaskHandle> {
  const dir = await stat(config.cwd).catch(() => undefined);
  if (!dir?.isDirectory()) throw new Error(`task directory ${config.cwd} does not exist`);

  const stdout = await open(config.stdoutPath, 'a');
  let stderr;
  try {
    stderr = await open(config.stderrPath, 'a');
  } catch (err) {
    await stdout.close();
    throw err;
  }
  let handle: ProcessHandle | undefined;
  let spawnError: Promise<NodeJS.ErrnoException> | undefined;
  try {
    const child = spawn(config.command, config.args, {
      cwd: config.cwd,
      env: config.env,
      stdio: ['ignore', stdout.fd, stderr.fd],
      detached: true,
    });
    // Listeners go on before anything is awaited: a quick task may exit during the next await, and a
    // ChildProcess 'error' without a listener would crash the agent.
    spawnError = new Promise((resolve) => child.on('error', (err: NodeJS.ErrnoException) => resolve(err)));
    if (child.pid !== undefined) {
      const state: TaskHandleState = {
        version: 1,
        driver,
        pid: child.pid,
        pgid: child.pid,
        startedAt: Date.now(),
        stdoutPath: config.stdoutPath,
        stderrPath: config.stderrPath,
      };
      handle = new ProcessHandle(child, state, logger.child({ pid: child.pid }));
    }
  } finally {
    // The child holds its own copies of the descriptors now.
    await Promise.all([stdout.close(), stderr.close()]);
  }
  if (handle === undefined) {
    const err = await spawnError;
    throw new ExecError(describeExecFailure(config.command, err), err.code ?? 'EUNKNOWN', { cause: err });
  }
  return handle;
}

/** `exec: "python4": command not found`, worded as a shell would. */
export function describeExecFailure(command: string, err: NodeJS.ErrnoException): string {
  const what = `exec: ${JSON.stringify(command)}`;
  switch (err.code) {
    case 'ENOENT':
      return command.includes('/')
        ? `${what}: no such file or directory (or its interpreter is missing)`
        : `${what}: command not found`;
    case 'EACCES':
      return `${what}: permission denied`;
    case 'ENOEXEC':
      return `${what}: exec format error`;
    case 'ENOTDIR':
      return `${what}: not a directory`;
    default:
      return `${what}: ${err.code ?? err.message}`;
  }
}

class ProcessHandle implements TaskHandle {
  readonly pid: number;
  readonly startedAt: number;
  readonly state: TaskHandleState;
  private readonly logger: Logger;
  private readonly exited: Promise<ExitResult>;
  private result: ExitResult | undefined;
  private stopping: Promise<ExitResult> | undefined;

  constructor(child: ChildProcess, state: TaskHandleState, logger: Logger) {
    this.pid = state.pid;
    this.startedAt = state.startedAt;
    this.state = state;
    this.logger = logger;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        const result: ExitResult = signal !== null ? { signal } : { exitCode: code ?? 0 };
        this.result = result;
        // Whatever the task forked and left behind goes with it.
        this.killGroup('SIGKILL');
        resolve(result);
      });
    });
  }

  wait(): Promise<ExitResult> {
    return this.exited;
  }

  signal(signal: NodeJS.Signals): void {
    if (this.result === undefined) this.killGroup(signal);
  }

  stop(signal: NodeJS.Signals, timeoutMs: number): Promise<ExitResult> {
    if (this.result !== undefined) return Promise.resolve(this.result);
    this.stopping ??= this.stopGroup(signal, timeoutMs);
    return this.stopping;
  }

  private async stopGroup(signal: NodeJS.Signals, timeoutMs: number): Promise<ExitResult> {
    this.killGroup(signal);
    if (signal === 'SIGKILL') return this.exited;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    const first = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (first !== undefined) return first;
    this.logger.info(
      { signal, timeoutMs },
      'task did not stop in time: sending SIGKILL to its process group',
    );
    this.killGroup('SIGKILL');
    return this.exited;
  }

  private killGroup(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.state.pgid, signal);
    } catch (err) {
      // ESRCH: nothing is left in the group, which is the goal.
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH')
        this.logger.warn({ err, signal }, 'could not signal the task process group');
    }
  }
}
