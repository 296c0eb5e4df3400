/**
 * The driver contract: how the agent starts, watches and stops one task's process. Drivers are picked
 * by name through the explicit factory map in `./index.ts` (`drivers = { exec, raw_exec }`).
 *
 * `start` receives the task's resources and user (the exec driver puts the task into a cgroup with
 * those limits, in its own namespaces, as an unprivileged uid: see ./exec/isolation.ts and ../README.md
 * "Isolation"), and every handle carries a JSON-serializable `state` that the agent persists so that
 * `recover` can re-attach to the task after an agent restart.
 */
import { InvalidError } from '../../core/errors.ts';
import type { DriverInfo } from '../../core/types.ts';
import type { Logger } from '../../core/log.ts';
import type { IsolationCapability } from './exec/isolation.ts';
import type { LogLimits } from '../logs.ts';

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
  /** Log files, written by the task's log shipper from pipes that are the process's stdout and stderr. */
  stdoutPath: string;
  stderrPath: string;
  /** Bytes and files kept per stream (default DEFAULT_LOG_LIMITS). */
  logLimits?: LogLimits;
  /**
   * Limits: cpu in millicores, memory in MiB, pids = most processes and threads (default: the node's
   * `taskPidsLimit`). Enforced by the exec driver when the node has cgroups; advisory otherwise.
   */
  resources: { cpu: number; memory: number; pids?: number };
  /**
   * Device files the task was given (e.g. /dev/nvidia0 and the driver's control files): the
   * sandbox binds them into the task's otherwise minimal /dev.
   */
  devicePaths?: string[];
  /**
   * Run as this user (exec driver). Honoured only when the operator allows it (`allowedTaskUsers`);
   * without it the exec driver runs the task as a uid of its own. raw_exec refuses any but the agent's own user.
   */
  user?: string;
  /**
   * The allocation's name (`web.web[0]`): the sandbox's hostname, sanitized. Default: the task's
   * UNUM_ALLOC_NAME, else the allocation id.
   */
  allocName?: string;
  /**
   * The allocation's network namespace (../network): the exec driver's wrapper joins it through
   * nsenter before anything else runs. Absent: the host's network.
   */
  network?: { netnsPath: string; nsenter: string };
}

/**
 * How a process ended. At most one of `exitCode` and `signal` is set; neither only when the exit
 * status could not be known (then `detail` says why, and the exit counts as a failure).
 */
export interface ExitResult {
  exitCode?: number;
  /** Signal name, e.g. `SIGKILL`. */
  signal?: string;
  /** Killed by the kernel's OOM killer (known when the task runs in a cgroup). */
  oomKilled?: boolean;
  /** The memory limit the task went over (MiB); set with `oomKilled`. */
  memoryLimitMiB?: number;
  /**
   * Said instead of the usual wording when the usual wording would mislead: "exited while the agent
   * was down; exit status unknown", "the sandbox could not be set up (exit code 1; see stderr.log)".
   */
  detail?: string;
}

/** A task's resource use now (from its cgroup). */
export interface TaskUsage {
  /** CPU time used since the task started, nanoseconds. */
  cpuNanos: number;
  /** Memory in use now, bytes. */
  memoryBytes: number;
  /** Processes and threads now. */
  pids: number;
}

/**
 * What a driver persists about a running task so that a later agent process can find it again: a
 * driver-neutral envelope around the driver's own `data`. Plain JSON: no handles, no functions.
 * `version` is the version of `data`'s shape, the driver's business (the process drivers' is in
 * ./handle-state.ts, which also reads the older, exec-specific shape).
 */
export interface TaskHandleState {
  driver: DriverName;
  version: number;
  data: unknown;
}

/** A started (or re-attached) task. */
export interface TaskHandle {
  /** The outer process the agent spawned (the sandbox's bwrap, or the wrapper shell). */
  readonly pid: number;
  readonly startedAt: number;
  readonly state: TaskHandleState;
  /**
   * Resolves once, when the task has exited; never rejects. When it resolves, whatever the task left
   * behind has been killed (its cgroup, else its pid namespace or process group) and its cgroup is
   * removed: a task leaves nothing behind.
   */
  wait(): Promise<ExitResult>;
  /** Sends `signal` to the task's process group. No-op once it has exited. */
  signal(signal: NodeJS.Signals): void;
  /**
   * Stops the task: `signal` to its process group, then after `timeoutMs` SIGKILL to all of it (the
   * pid namespace, the cgroup). Idempotent (a second call joins the first); resolves with the exit
   * result; never rejects.
   */
  stop(signal: NodeJS.Signals, timeoutMs: number): Promise<ExitResult>;
  /** CPU, memory and process count now, from the task's cgroup; undefined without cgroups or once it exited. */
  usage(): Promise<TaskUsage | undefined>;
}

export interface Driver {
  readonly name: DriverName;
  /** What the node advertises for this driver (it shows as `driver.<name>` when healthy). */
  fingerprint(): Promise<DriverInfo>;
  /**
   * Starts the task's process and resolves once it runs. Rejects with ExecError (an InvalidError)
   * when the program can not be executed (not found, not executable) or the task's user is not
   * allowed: a problem of the job, not retried by the agent. Rejects with UnavailableError for a
   * problem of the node (the driver is disabled or lacks a tool, a log file can not be opened, the
   * wrapper can not be spawned).
   */
  start(config: TaskConfig): Promise<TaskHandle>;
  /**
   * Sets up what an allocation's tasks share on this driver, once, with the allocation's
   * directories and before any of its tasks starts (the exec driver leases the allocation's uid
   * here). `allocsDir` is the allocations root (`<allocsDir>/<allocId>/<task>`). Optional: start()
   * does whatever was not done, so a failure here only costs time.
   */
  prepareAllocation?(allocId: string, allocsDir: string): Promise<void>;
  /**
   * Re-attaches to a task started by an earlier agent process from its persisted `state`. When the
   * task still runs, the handle's `wait()` resolves when it exits (the process is not the agent's
   * child: its /proc entry is polled); when it already exited, `wait()` resolves at once with the
   * status its wrapper recorded (or, if none was, a failure "exited while the agent was down; exit
   * status unknown"). Undefined for a state this driver can not read (another driver, a version it
   * does not know).
   * Never rejects for a dead task; may reject for a problem of the node.
   */
  recover?(state: TaskHandleState): Promise<TaskHandle | undefined>;
}

export interface DriverOptions {
  logger: Logger;
  /** Whether the operator allowed this driver (raw_exec is off unless enabled). */
  enabled: boolean;
  /**
   * The agent's data dir: hidden from sandboxed tasks (other allocations are invisible), and where
   * uid leases live. Default: the allocations root derived from the task dir
   * (`<dataDir>/agent/allocs`).
   */
  dataDir?: string;
  /**
   * What the node can enforce (`detectIsolation()` in ./exec/isolation.ts), detected once by the agent
   * and shared. Default: the exec driver detects it itself on first use.
   */
  isolation?: IsolationCapability | Promise<IsolationCapability>;
  /** Users a job's `user:` may name (default none: tasks run as a uid of their own). */
  allowedTaskUsers?: readonly string[];
  /** Uids handed to allocations, one each (default 200000-265535). */
  taskUidRange?: { min: number; max: number };
  /** pids limit of a task that sets none (default 4096). */
  taskPidsLimit?: number;
  /** Open files (RLIMIT_NOFILE, soft and hard) of every task, whatever the agent's own (default 4096). */
  taskOpenFiles?: number;
  /** Also cap a task's CPU time at its `cpu` (default false: `cpu` is a relative weight only). */
  cpuHardCap?: boolean;
}

/**
 * The program of a task could not be executed, or the task's configuration can not run here (a
 * `user:` that is not allowed): a problem of the job, so an `invalid` UnumError, never retried. The
 * message is for people: `exec: "python4": command not found`. `errno` (also in `details.errno`)
 * is the exec errno: ENOENT, EACCES, EPERM, …
 */
export class ExecError extends InvalidError {
  readonly errno: string;
  constructor(message: string, errno: string, options?: { cause?: unknown }) {
    super(message, { ...options, details: { errno } });
    this.errno = errno;
  }
}

/**
 * "exited with code 1", "killed by signal SIGKILL", "killed: out of memory (limit 64 MiB)": how
 * events and descriptions word an exit.
 */
export function describeExit(result: ExitResult): string {
  if (result.oomKilled)
    return `killed: out of memory${result.memoryLimitMiB !== undefined ? ` (limit ${result.memoryLimitMiB} MiB)` : ''}`;
  if (result.detail !== undefined) return result.detail;
  if (result.signal !== undefined) return `killed by signal ${result.signal}`;
  if (result.exitCode !== undefined) return `exited with code ${result.exitCode}`;
  return 'exit status unknown';
}
