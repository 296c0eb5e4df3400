/**
 * The driver contract: how the agent starts, watches and stops one task's process. Drivers are picked
 * by name through the explicit factory map in `./index.ts` (`drivers = { exec, raw_exec }`).
 *
 * The shape is made for what comes next: `start` already receives the task's resources and user (the
 * isolating exec driver will put them into a cgroup and run them unprivileged), and every handle
 * carries a JSON-serializable `state` that the agent will persist so that `recover` can re-attach to a
 * task after an agent restart.
 */
import type { DriverInfo } from '../../core/types.ts';
import type { Logger } from '../../core/log.ts';

export type DriverName = 'exec' | 'raw_exec';

/** Everything a driver needs to start one task. Paths are absolute. */
export interface TaskConfig {
  allocId: string;
  task: string;
  /** Program to run: a name looked up in `env.PATH`, or a path (relative paths resolve from `cwd`). */
  command: string;
  args: string[];
  /** The complete environment of the process (nothing is inherited from the agent). */
  env: Record<string, string>;
  /** Working directory: the task directory. */
  cwd: string;
  /** Log files, opened in append mode and handed to the process as its stdout and stderr. */
  stdoutPath: string;
  stderrPath: string;
  /** Limits (millicores, MiB). Enforced by the isolating exec driver (next issue); advisory until then. */
  resources: { cpu: number; memory: number };
  /** Run as this user (isolating exec driver, next issue); ignored until then. */
  user?: string;
}

/** How a process ended. Exactly one of `exitCode` and `signal` is set. */
export interface ExitResult {
  exitCode?: number;
  /** Signal name, e.g. `SIGKILL`. */
  signal?: string;
  /** Killed by the kernel's OOM killer (known once tasks run in a cgroup). */
  oomKilled?: boolean;
}

/**
 * What a driver persists about a running task so that a later agent process can find it again. Plain
 * JSON: no handles, no functions.
 */
export interface TaskHandleState {
  version: 1;
  driver: DriverName;
  pid: number;
  /** The task's process group (the task leads it: pgid = pid). */
  pgid: number;
  startedAt: number;
  stdoutPath: string;
  stderrPath: string;
}

/** A started task. */
export interface TaskHandle {
  readonly pid: number;
  readonly startedAt: number;
  readonly state: TaskHandleState;
  /**
   * Resolves once, when the task's main process has exited; never rejects. When it resolves, the rest
   * of the task's process group has been sent SIGKILL: a task leaves nothing behind.
   */
  wait(): Promise<ExitResult>;
  /** Sends `signal` to the task's whole process group. No-op once it has exited. */
  signal(signal: NodeJS.Signals): void;
  /**
   * Stops the task: `signal` to the whole group, then SIGKILL to the group after `timeoutMs`.
   * Idempotent (a second call joins the first); resolves with the exit result; never rejects.
   */
  stop(signal: NodeJS.Signals, timeoutMs: number): Promise<ExitResult>;
}

export interface Driver {
  readonly name: DriverName;
  /** What the node advertises for this driver (it shows as `driver.<name>` when healthy). */
  fingerprint(): Promise<DriverInfo>;
  /**
   * Starts the task's process and resolves once it runs. Rejects with ExecError when the program can
   * not be executed (not found, not executable): a problem of the job, not retried by the agent. May
   * reject with another Error for a problem of the node (e.g. the log file can not be opened).
   */
  start(config: TaskConfig): Promise<TaskHandle>;
  /**
   * Re-attaches to a task started by an earlier agent process; undefined when it no longer runs.
   * Not implemented yet: re-attaching comes with the durable agent (next issue).
   */
  recover?(state: TaskHandleState): Promise<TaskHandle | undefined>;
}

export interface DriverOptions {
  logger: Logger;
  /** Whether the operator allowed this driver (raw_exec is off unless enabled). */
  enabled: boolean;
}

/** The program of a task could not be executed. The message is for people: `exec: "python4": command not found`. */
export class ExecError extends Error {
  /** The errno code from exec: ENOENT, EACCES, … */
  readonly errno: string;
  constructor(message: string, errno: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ExecError';
    this.errno = errno;
  }
}

/** "exited with code 1", "killed by signal SIGKILL": how events and descriptions word an exit. */
export function describeExit(result: ExitResult): string {
  if (result.oomKilled) return 'killed: out of memory';
  if (result.signal !== undefined) return `killed by signal ${result.signal}`;
  return `exited with code ${result.exitCode ?? 'unknown'}`;
}
