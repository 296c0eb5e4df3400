/**
 * One cgroup per task, under a unum parent, behind one interface for cgroups v1 and v2.
 *
 *   v1: /sys/fs/cgroup/<controller>/unum/<name>/   for memory, cpu (and cpuacct), pids, freezer
 *   v2: /sys/fs/cgroup/unum.slice/<name>/           one directory, controllers enabled in the parent
 *
 * A process joins a task's cgroup by writing its pid to every file of `procsFiles` before it execs
 * the task (the exec driver's wrapper does this), so that every child it forks is counted too.
 */

export type CgroupVersion = 'v1' | 'v2';

export interface CgroupLimits {
  /** Hard memory limit in MiB; going over it gets the task OOM-killed. */
  memoryMiB: number;
  /** CPU in millicores: a relative weight (v1 cpu.shares = cpu × 1024 / 1000; v2 cpu.weight). */
  cpuMillicores: number;
  /** When true, also cap CPU time at `cpuMillicores` (v1 cfs_quota/period; v2 cpu.max). */
  cpuHardCap?: boolean;
  /** Most processes and threads the task may have (pids.max). */
  pids: number;
}

export interface CgroupUsage {
  /** CPU time used since the cgroup was made, in nanoseconds. */
  cpuNanos: number;
  /**
   * Memory in use now, bytes: the working set, without the inactive file cache the kernel drops
   * first (v1 memory.usage_in_bytes minus total_inactive_file, else minus total_cache; v2
   * memory.current minus inactive_file).
   */
  memoryBytes: number;
  /** Peak memory, bytes (where the kernel keeps it). */
  memoryPeakBytes?: number;
  /** Processes and threads now. */
  pids: number;
  /** OOM kills in this cgroup so far. */
  oomKills: number;
}

export interface TaskCgroup {
  readonly name: string;
  /** Files to write a pid to so that the process (and its future children) joins every controller. */
  readonly procsFiles: readonly string[];
  usage(): Promise<CgroupUsage>;
  /** Pids of every process in the cgroup now. */
  pids(): Promise<number[]>;
  /**
   * Kills every process in the cgroup, including ones that left the task's process group or
   * session, and resolves once the cgroup is empty (v1: freeze, SIGKILL all, thaw; v2: cgroup.kill).
   */
  killAll(): Promise<void>;
  /** Removes the cgroup; it must be empty (call killAll first). Idempotent. */
  destroy(): Promise<void>;
}

export interface CgroupManager {
  readonly version: CgroupVersion;
  /** Creates (or re-opens, if it exists) the task's cgroup with these limits. Idempotent. */
  create(name: string, limits: CgroupLimits): Promise<TaskCgroup>;
  /** The existing cgroup of that name (after an agent restart), or undefined. */
  open(name: string): Promise<TaskCgroup | undefined>;
  /** Names of the task cgroups under the unum parent (to find leftovers). */
  list(): Promise<string[]>;
  /**
   * The most processes and threads of all task cgroups together (`pids.max` of the unum parent:
   * the node's budget for tasks, above each task's own). A whole number ≥ 1, or `max`. Rejects with
   * CgroupFileError when the kernel refuses the value.
   */
  setTotalPids(limit: number | 'max'): Promise<void>;
}

/** What detection found: a manager, or why limits cannot be enforced (shown to the operator once). */
export type CgroupDetection =
  | { available: true; manager: CgroupManager }
  | { available: false; version: CgroupVersion | 'none'; reason: string };
