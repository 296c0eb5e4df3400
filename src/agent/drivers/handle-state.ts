/**
 * The handle state of the process drivers (exec, raw_exec): what `recover` needs to find a task's
 * process again, inside the driver-neutral envelope `{ driver, version, data }` (types.ts).
 *
 * Tasks outlive agent upgrades, so a state written by an earlier agent is read too:
 *
 *   version 2  (before the envelope)   { version: 2, driver, allocId, task, wrapper, pid, … } flat
 *   version 3  (now)                   { driver, version: 3, data: { allocId, task, wrapper, pid, … } }
 *
 * Version 1 (before re-attaching existed) held too little to find the process: not recoverable.
 */
import type { DriverName, TaskHandleState } from './types.ts';

export const PROCESS_HANDLE_VERSION = 3;

/** What a process driver knows of a task's process. */
export interface ProcessHandleData {
  allocId: string;
  task: string;
  /**
   * What the agent spawned: `bwrap` (the sandbox's outer bubblewrap process, which records the exit
   * status as JSON in `statusPath`) or `sh` (a shell that runs the task and writes its exit code to
   * `statusPath`).
   */
  wrapper: 'bwrap' | 'sh';
  /** The outer process (the wrapper) the agent spawned. */
  pid: number;
  /** Its process group (it leads it: pgid = pid). */
  pgid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot): a re-used pid has another one. */
  pidStartTime: number;
  startedAt: number;
  stdoutPath: string;
  stderrPath: string;
  /** The task's log shipper (../log-shipper.ts): its exit is awaited, so that the files hold the task's last words. */
  shipperPid?: number;
  /** Where the wrapper records the exit status (also when the agent is down). */
  statusPath: string;
  /** The task's cgroup (name under the unum parent), when the node has cgroups. */
  cgroup?: string;
  /** OOM kills the cgroup had counted before this start (the cgroup may be re-opened). */
  oomKillsBefore?: number;
  /** The uid and gid the task runs as (absent: the agent's own). */
  uid?: number;
  gid?: number;
  /** The task's memory limit (MiB), named when it is OOM-killed. */
  memoryLimitMiB: number;
}

export function processHandleState(driver: DriverName, data: ProcessHandleData): TaskHandleState {
  return { driver, version: PROCESS_HANDLE_VERSION, data };
}

/** The process data of a state of `driver` in the current version; undefined for anything else. */
export function processHandleData(state: TaskHandleState, driver: DriverName): ProcessHandleData | undefined {
  if (state.driver !== driver || state.version !== PROCESS_HANDLE_VERSION) return undefined;
  const data = state.data as Partial<ProcessHandleData> | null | undefined;
  if (typeof data !== 'object' || data === null) return undefined;
  if (!Number.isInteger(data.pid) || (data.wrapper !== 'bwrap' && data.wrapper !== 'sh')) return undefined;
  return data as ProcessHandleData;
}

/**
 * A persisted handle state as this agent reads it: the envelope as it is; the flat version-2 shape
 * of an earlier agent converted into the envelope; undefined for what can not be read (not an
 * object, no driver).
 */
export function upgradeHandleState(raw: unknown): TaskHandleState | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const r = raw as Record<string, unknown>;
  if (typeof r['driver'] !== 'string' || typeof r['version'] !== 'number') return undefined;
  const driver = r['driver'] as DriverName;
  if ('data' in r) return { driver, version: r['version'], data: r['data'] };
  if (r['version'] !== 2) return { driver, version: r['version'], data: undefined };
  const { version: _version, driver: _driver, ...data } = r;
  return { driver, version: PROCESS_HANDLE_VERSION, data };
}
