/**
 * cgroups v1: one hierarchy per controller (some may be co-mounted, e.g. `cpu,cpuacct`), and the
 * task's cgroup is one directory in each:
 *
 *   <memory mount>/<parent>/<name>/    memory.limit_in_bytes, memory.memsw.limit_in_bytes, usage, OOM
 *   <cpu mount>/<parent>/<name>/       cpu.shares, cpu.cfs_period_us, cpu.cfs_quota_us
 *   <cpuacct mount>/<parent>/<name>/   cpuacct.usage
 *   <pids mount>/<parent>/<name>/      pids.max, pids.current
 *   <freezer mount>/<parent>/<name>/   freezer.state (killAll)
 *
 * A process joins by writing its pid to the cgroup.procs of every one of them (`procsFiles`).
 */
import { dirname, join } from 'node:path';
import { silentLogger, type Logger } from '../../core/log.ts';
import {
  childCgroups,
  exists,
  isDirectory,
  existsSync,
  makeCgroupDirSync,
  readControlSync,
  writeControlSync,
  parseKeyedValues,
  parsePidList,
  parseSingleValue,
  readControl,
  readOptionalControl,
  removeCgroupDir,
  writeControl,
} from './files.ts';
import {
  killEach,
  killUntilEmpty,
  pollUntil,
  refuseSelf,
  timeoutsFrom,
  type CgroupTimeoutOptions,
  type Timeouts,
} from './kill.ts';
import { CPU_PERIOD_MICROS, cpuQuotaMicros, cpuShares, memoryBytes, validateLimits } from './limits.ts';
import { isValidCgroupName, validateCgroupName } from './names.ts';
import type { CgroupLimits, CgroupManager, CgroupUsage, TaskCgroup } from './types.ts';

/** The controllers unum needs on v1, in the order a process joins them. */
export const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'freezer'] as const;
export type V1Controller = (typeof V1_CONTROLLERS)[number];

/** Where each controller's hierarchy is mounted (the same directory for co-mounted ones). */
export type V1Hierarchies = Record<V1Controller, string>;

export interface V1ManagerOptions extends CgroupTimeoutOptions {
  hierarchies: V1Hierarchies;
  /** The unum parent, relative to each hierarchy's root (default `unum`). */
  parent?: string;
  logger?: Logger;
}

export class V1CgroupManager implements CgroupManager {
  readonly version = 'v1';
  readonly hierarchies: Readonly<V1Hierarchies>;
  readonly parent: string;
  private readonly logger: Logger;
  private readonly timeouts: Timeouts;

  constructor(options: V1ManagerOptions) {
    this.hierarchies = { ...options.hierarchies };
    this.parent = options.parent ?? 'unum';
    this.logger = options.logger ?? silentLogger();
    this.timeouts = timeoutsFrom(options);
  }

  /** The unum parent in each distinct hierarchy. */
  parentDirs(): string[] {
    return unique(V1_CONTROLLERS.map((c) => join(this.hierarchies[c], this.parent)));
  }

  /** The directories of the task cgroup `name`, per controller. No check that they exist. */
  paths(name: string): V1Hierarchies {
    validateCgroupName(name);
    const dir = (c: V1Controller) => join(this.hierarchies[c], this.parent, name);
    return {
      memory: dir('memory'),
      cpu: dir('cpu'),
      cpuacct: dir('cpuacct'),
      pids: dir('pids'),
      freezer: dir('freezer'),
    };
  }

  /** Synchronous file operations inside: see files.ts for why. */
  async create(name: string, limits: CgroupLimits): Promise<TaskCgroup> {
    const paths = this.paths(name);
    validateLimits(limits);
    const dirs = unique(Object.values(paths));
    let madeAll = true;
    try {
      for (const dir of dirs) if (!makeCgroupDirSync(dir)) madeAll = false;
      applyV1Limits(paths, limits, madeAll);
    } catch (err) {
      // A cgroup made just now holds nothing yet: do not leave it behind half-configured.
      if (madeAll) await Promise.allSettled(dirs.map((d) => removeCgroupDir(d, 0)));
      throw err;
    }
    this.logger.debug({ cgroup: name, limits, dirs }, 'cgroup v1 ready');
    return new V1TaskCgroup(name, paths, this.logger, this.timeouts);
  }

  async open(name: string): Promise<TaskCgroup | undefined> {
    const paths = this.paths(name);
    // Present in any hierarchy is enough: a half-made leftover must still be found to be removed.
    for (const dir of unique(Object.values(paths)))
      if (await isDirectory(dir)) {
        // An agent that died between the freeze and the thaw of killAll left its tasks frozen: they
        // would neither run nor die. Thawed here, where every later agent finds them again.
        const state = join(paths.freezer, 'freezer.state');
        const now = (await readOptionalControl(state))?.trim();
        if (now !== undefined && now !== 'THAWED') {
          this.logger.warn(
            { cgroup: name, state: now },
            'task cgroup found frozen (an agent died mid-kill): thawing it',
          );
          await writeControl(state, 'THAWED');
        }
        return new V1TaskCgroup(name, paths, this.logger, this.timeouts);
      }
    return undefined;
  }

  async setTotalPids(limit: number | 'max'): Promise<void> {
    await writeControl(join(this.hierarchies.pids, this.parent, 'pids.max'), String(limit));
  }

  async list(): Promise<string[]> {
    const names = new Set<string>();
    for (const dir of this.parentDirs()) for (const n of await childCgroups(dir)) names.add(n);
    return [...names].filter(isValidCgroupName).sort();
  }
}

class V1TaskCgroup implements TaskCgroup {
  readonly name: string;
  readonly procsFiles: readonly string[];
  readonly paths: Readonly<V1Hierarchies>;
  private readonly dirs: readonly string[];
  private readonly logger: Logger;
  private readonly timeouts: Timeouts;

  constructor(name: string, paths: V1Hierarchies, logger: Logger, timeouts: Timeouts) {
    this.name = name;
    this.paths = paths;
    this.dirs = unique(V1_CONTROLLERS.map((c) => paths[c]));
    this.procsFiles = this.dirs.map((d) => join(d, 'cgroup.procs'));
    this.logger = logger.child({ cgroup: name });
    this.timeouts = timeouts;
  }

  async usage(): Promise<CgroupUsage> {
    const mem = (f: string) => join(this.paths.memory, f);
    const [cpu, usage, stat, peak, pids, oomControl, failcnt, memswFailcnt] = await Promise.all([
      readControl(join(this.paths.cpuacct, 'cpuacct.usage')),
      readControl(mem('memory.usage_in_bytes')),
      readControl(mem('memory.stat')),
      readOptionalControl(mem('memory.max_usage_in_bytes')),
      readControl(join(this.paths.pids, 'pids.current')),
      readOptionalControl(mem('memory.oom_control')),
      readOptionalControl(mem('memory.failcnt')),
      readOptionalControl(mem('memory.memsw.failcnt')),
    ]);
    const result: CgroupUsage = {
      cpuNanos: parseSingleValue(cpu, 'cpuacct.usage'),
      memoryBytes: v1MemoryInUse(parseSingleValue(usage, 'memory.usage_in_bytes'), parseKeyedValues(stat)),
      pids: parseSingleValue(pids, 'pids.current'),
      oomKills: v1OomKills({ oomControl, failcnt, memswFailcnt }),
    };
    if (peak !== undefined) result.memoryPeakBytes = parseSingleValue(peak, 'memory.max_usage_in_bytes');
    return result;
  }

  /**
   * The union over every hierarchy: a process that joined only some of them (its wrapper died half
   * way) is still found and killed.
   */
  async pids(): Promise<number[]> {
    const lists = await Promise.all(this.procsFiles.map((f) => readOptionalControl(f)));
    const pids = new Set<number>();
    for (const text of lists) if (text !== undefined) for (const pid of parsePidList(text)) pids.add(pid);
    return [...pids].sort((a, b) => a - b);
  }

  /**
   * Freeze, SIGKILL every pid, thaw, then kill again until empty. Freezing first means that what
   * `cgroup.procs` lists is everything: nothing in the cgroup can fork between the read and the
   * kill. Frozen processes die when thawed (the SIGKILL is pending); a process stuck in the kernel
   * may keep the freezer in FREEZING, so after `freezeTimeoutMs` we kill and thaw anyway.
   */
  async killAll(): Promise<void> {
    const state = join(this.paths.freezer, 'freezer.state');
    const freezable = await exists(state);
    if (freezable) {
      // Freezing the agent itself would hang it for good.
      refuseSelf(await this.pids());
      await writeControl(state, 'FROZEN');
      const frozen = await pollUntil(async () => {
        if ((await readControl(state)).trim() === 'FROZEN') return true;
        // Still FREEZING (a task was busy in the kernel): asking again retries the stragglers.
        await writeControl(state, 'FROZEN');
        return false;
      }, this.timeouts.freeze);
      if (!frozen)
        this.logger.warn(
          { timeoutMs: this.timeouts.freeze },
          'cgroup did not freeze in time: killing its processes anyway',
        );
      try {
        killEach(await this.pids());
      } finally {
        await writeControl(state, 'THAWED');
      }
    }
    await killUntilEmpty({
      list: () => this.pids(),
      kill: async (pids) => killEach(pids),
      path: this.paths.freezer,
      timeoutMs: this.timeouts.kill,
      logger: this.logger,
    });
  }

  async destroy(): Promise<void> {
    for (const dir of this.dirs) await removeCgroupDir(dir, this.timeouts.remove);
  }
}

/**
 * Whether the kernel accounts swap (memory.memsw.* exist): a property of the kernel, looked up once
 * per unum parent in the memory hierarchy.
 */
const swapAccounting = new Map<string, boolean>();
function accountsSwap(memoryDir: string, memswFile: string): boolean {
  const parent = dirname(memoryDir);
  let known = swapAccounting.get(parent);
  if (known === undefined) {
    known = existsSync(memswFile);
    swapAccounting.set(parent, known);
  }
  return known;
}

/**
 * Writes the limits. memory.memsw.limit_in_bytes (memory + swap, present when the kernel accounts
 * swap) is set equal to the memory limit so that swapping can not dodge it; the kernel wants memsw ≥
 * memory at every step, so the order depends on whether the limit goes up or down. A cgroup made
 * just now (`fresh`) has the kernel's defaults: no memory limit, a 100 ms CPU period and no quota;
 * what would only write a default again is skipped (each write is a few tens of microseconds on the
 * path to the task's start).
 */
function applyV1Limits(paths: V1Hierarchies, limits: CgroupLimits, fresh: boolean): void {
  const limitFile = join(paths.memory, 'memory.limit_in_bytes');
  const memswFile = join(paths.memory, 'memory.memsw.limit_in_bytes');
  const bytes = memoryBytes(limits.memoryMiB);
  if (accountsSwap(paths.memory, memswFile)) {
    const current = fresh ? Infinity : parseSingleValue(readControlSync(limitFile), 'memory.limit_in_bytes');
    const order = bytes >= current ? [memswFile, limitFile] : [limitFile, memswFile];
    for (const file of order) writeControlSync(file, String(bytes));
  } else {
    writeControlSync(limitFile, String(bytes));
  }

  writeControlSync(join(paths.cpu, 'cpu.shares'), String(cpuShares(limits.cpuMillicores)));
  if (!fresh || limits.cpuHardCap === true) {
    writeControlSync(join(paths.cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_MICROS));
    writeControlSync(
      join(paths.cpu, 'cpu.cfs_quota_us'),
      limits.cpuHardCap === true ? String(cpuQuotaMicros(limits.cpuMillicores)) : '-1',
    );
  }

  writeControlSync(join(paths.pids, 'pids.max'), String(limits.pids));
}

/**
 * Memory in use: memory.usage_in_bytes minus the inactive file cache (`total_inactive_file`, the
 * page cache the kernel drops first under pressure), the "working set" the kubelet and cAdvisor
 * report, and what the v2 side reports too. Kernels that do not list it: minus `total_cache`.
 */
export function v1MemoryInUse(usageBytes: number, stat: ReadonlyMap<string, number>): number {
  const reclaimable = stat.get('total_inactive_file') ?? stat.get('total_cache') ?? 0;
  return Math.max(0, usageBytes - reclaimable);
}

/**
 * OOM kills in the cgroup. Kernels since 4.13 count them in memory.oom_control (`oom_kill N`).
 * Older kernels count nothing per cgroup; the best left is memory.failcnt (and memsw.failcnt):
 * how often usage hit the limit. That also happens when the kernel reclaims cache and nothing dies,
 * so it only means "may have been OOM-killed": then this says 1, never more, and only then.
 */
export function v1OomKills(files: {
  oomControl: string | undefined;
  failcnt: string | undefined;
  memswFailcnt?: string | undefined;
}): number {
  if (files.oomControl !== undefined) {
    const kills = parseKeyedValues(files.oomControl).get('oom_kill');
    if (kills !== undefined) return kills;
  }
  const hits = [files.failcnt, files.memswFailcnt]
    .filter((t) => t !== undefined)
    .map((t) => Number(t.trim()))
    .filter((n) => Number.isFinite(n));
  return hits.some((n) => n > 0) ? 1 : 0;
}

function unique<T>(items: readonly T[]): T[] {
  return [...new Set(items)];
}
