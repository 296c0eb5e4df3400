/**
 * cgroups v2: one unified hierarchy. The task's cgroup is one directory under the unum parent, whose
 * cgroup.subtree_control enables memory, cpu and pids for its children (detection does that):
 *
 *   <root>/<parent>/<name>/   memory.max, memory.swap.max, cpu.weight, cpu.max, pids.max,
 *                             cpu.stat, memory.current, memory.stat, memory.peak, memory.events,
 *                             pids.current, cgroup.procs, cgroup.kill, cgroup.freeze, cgroup.events
 *
 * A process joins by writing its pid to `<name>/cgroup.procs` (the one file of `procsFiles`).
 */
import { join } from 'node:path';
import { silentLogger, type Logger } from '../../core/log.ts';
import {
  childCgroups,
  exists,
  isDirectory,
  existsSync,
  makeCgroupDirSync,
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
import {
  CPU_PERIOD_MICROS,
  cpuQuotaMicros,
  cpuShares,
  cpuWeightFromShares,
  memoryBytes,
  validateLimits,
} from './limits.ts';
import { isValidCgroupName, validateCgroupName } from './names.ts';
import type { CgroupLimits, CgroupManager, CgroupUsage, TaskCgroup } from './types.ts';

/** The controllers unum needs on v2 (cgroup.controllers names). */
export const V2_CONTROLLERS = ['cpu', 'memory', 'pids'] as const;

export interface V2ManagerOptions extends CgroupTimeoutOptions {
  /** Where the unified hierarchy is mounted (default `/sys/fs/cgroup`). */
  root?: string;
  /** The unum parent, relative to `root` (default `unum.slice`). */
  parent?: string;
  logger?: Logger;
}

export class V2CgroupManager implements CgroupManager {
  readonly version = 'v2';
  readonly root: string;
  readonly parent: string;
  /** `<root>/<parent>`. */
  readonly parentDir: string;
  private readonly logger: Logger;
  private readonly timeouts: Timeouts;

  constructor(options: V2ManagerOptions = {}) {
    this.root = options.root ?? '/sys/fs/cgroup';
    this.parent = options.parent ?? 'unum.slice';
    this.parentDir = join(this.root, this.parent);
    this.logger = options.logger ?? silentLogger();
    this.timeouts = timeoutsFrom(options);
  }

  /** The directory of the task cgroup `name`. No check that it exists. */
  path(name: string): string {
    validateCgroupName(name);
    return join(this.parentDir, name);
  }

  /** Synchronous file operations inside: see files.ts for why. */
  async create(name: string, limits: CgroupLimits): Promise<TaskCgroup> {
    const dir = this.path(name);
    validateLimits(limits);
    // Detection made the parent and enabled its controllers; a parent removed since then comes back
    // without them, and the writes below then fail naming the missing file.
    const made = makeCgroupDirSync(dir);
    try {
      applyV2Limits(dir, limits, made);
    } catch (err) {
      if (made) await removeCgroupDir(dir, 0).catch(() => undefined);
      throw err;
    }
    this.logger.debug({ cgroup: name, limits, dir }, 'cgroup v2 ready');
    return new V2TaskCgroup(name, dir, this.logger, this.timeouts);
  }

  async open(name: string): Promise<TaskCgroup | undefined> {
    const dir = this.path(name);
    if (!(await isDirectory(dir))) return undefined;
    // An agent that died between the freeze and the thaw of killAll left its tasks frozen: thawed
    // here, where every later agent finds them again.
    const freeze = join(dir, 'cgroup.freeze');
    if ((await readOptionalControl(freeze))?.trim() === '1') {
      this.logger.warn({ cgroup: name }, 'task cgroup found frozen (an agent died mid-kill): thawing it');
      await writeControl(freeze, '0');
    }
    return new V2TaskCgroup(name, dir, this.logger, this.timeouts);
  }

  async setTotalPids(limit: number | 'max'): Promise<void> {
    await writeControl(join(this.parentDir, 'pids.max'), String(limit));
  }

  async list(): Promise<string[]> {
    return (await childCgroups(this.parentDir)).filter(isValidCgroupName).sort();
  }
}

class V2TaskCgroup implements TaskCgroup {
  readonly name: string;
  readonly procsFiles: readonly string[];
  readonly dir: string;
  private readonly logger: Logger;
  private readonly timeouts: Timeouts;

  constructor(name: string, dir: string, logger: Logger, timeouts: Timeouts) {
    this.name = name;
    this.dir = dir;
    this.procsFiles = [join(dir, 'cgroup.procs')];
    this.logger = logger.child({ cgroup: name });
    this.timeouts = timeouts;
  }

  async usage(): Promise<CgroupUsage> {
    const f = (name: string) => join(this.dir, name);
    const [cpuStat, current, stat, peak, pids, events] = await Promise.all([
      readControl(f('cpu.stat')),
      readControl(f('memory.current')),
      readControl(f('memory.stat')),
      readOptionalControl(f('memory.peak')),
      readControl(f('pids.current')),
      readControl(f('memory.events')),
    ]);
    const result: CgroupUsage = {
      cpuNanos: v2CpuNanos(cpuStat),
      memoryBytes: v2MemoryInUse(parseSingleValue(current, 'memory.current'), parseKeyedValues(stat)),
      pids: parseSingleValue(pids, 'pids.current'),
      oomKills: v2OomKills(events),
    };
    if (peak !== undefined) result.memoryPeakBytes = parseSingleValue(peak, 'memory.peak');
    return result;
  }

  async pids(): Promise<number[]> {
    const text = await readOptionalControl(join(this.dir, 'cgroup.procs'));
    return text === undefined ? [] : parsePidList(text).sort((a, b) => a - b);
  }

  /**
   * With cgroup.kill (Linux 5.14+): the kernel SIGKILLs every process of the cgroup at once, forks
   * in flight included; we write it again until cgroup.procs is empty. Older kernels: freeze
   * (cgroup.freeze, wait for `frozen 1` in cgroup.events), SIGKILL every pid, thaw, kill until empty.
   */
  async killAll(): Promise<void> {
    if (!(await isDirectory(this.dir))) return;
    const killFile = join(this.dir, 'cgroup.kill');
    const list = () => this.pids();
    if (await exists(killFile)) {
      await killUntilEmpty({
        list,
        kill: async (pids) => {
          refuseSelf(pids);
          await writeControl(killFile, '1');
        },
        path: this.dir,
        timeoutMs: this.timeouts.kill,
        logger: this.logger,
      });
      return;
    }
    const freeze = join(this.dir, 'cgroup.freeze');
    const freezable = await exists(freeze);
    if (freezable) {
      // Freezing the agent itself would hang it for good.
      refuseSelf(await list());
      await writeControl(freeze, '1');
      const events = join(this.dir, 'cgroup.events');
      const frozen = await pollUntil(
        async () => parseKeyedValues(await readControl(events)).get('frozen') === 1,
        this.timeouts.freeze,
      );
      if (!frozen)
        this.logger.warn(
          { timeoutMs: this.timeouts.freeze },
          'cgroup did not freeze in time: killing its processes anyway',
        );
      try {
        killEach(await list());
      } finally {
        await writeControl(freeze, '0');
      }
    }
    await killUntilEmpty({
      list,
      kill: async (pids) => killEach(pids),
      path: this.dir,
      timeoutMs: this.timeouts.kill,
      logger: this.logger,
    });
  }

  async destroy(): Promise<void> {
    await removeCgroupDir(this.dir, this.timeouts.remove);
  }
}

/**
 * memory.max, and memory.swap.max = 0 where the kernel accounts swap (so that swapping can not
 * dodge the limit); cpu.weight from the v1 shares mapping; cpu.max (`max` without a hard cap);
 * pids.max. Every value is written each time, so re-creating with other limits replaces them all.
 */
/**
 * Writes the limits, and `memory.oom.group` = 1. A cgroup made just now (`fresh`) has the kernel's
 * default `cpu.max` (no quota, a 100 ms period): writing it again is skipped, as in v1.
 */
function applyV2Limits(dir: string, limits: CgroupLimits, fresh: boolean): void {
  writeControlSync(join(dir, 'memory.max'), String(memoryBytes(limits.memoryMiB)));
  const swapMax = join(dir, 'memory.swap.max');
  if (existsSync(swapMax)) writeControlSync(swapMax, '0');
  // Out of memory, the whole task goes (as its stop would), not just its biggest process: a task
  // left with a worker killed under it would run on broken. Kernels before 4.19 lack the file.
  const oomGroup = join(dir, 'memory.oom.group');
  if (existsSync(oomGroup)) writeControlSync(oomGroup, '1');
  writeControlSync(join(dir, 'cpu.weight'), String(cpuWeightFromShares(cpuShares(limits.cpuMillicores))));
  if (!fresh || limits.cpuHardCap === true) {
    const quota = limits.cpuHardCap === true ? String(cpuQuotaMicros(limits.cpuMillicores)) : 'max';
    writeControlSync(join(dir, 'cpu.max'), `${quota} ${CPU_PERIOD_MICROS}`);
  }
  writeControlSync(join(dir, 'pids.max'), String(limits.pids));
}

/** cpu.stat `usage_usec` in nanoseconds. */
export function v2CpuNanos(cpuStat: string): number {
  const usec = parseKeyedValues(cpuStat).get('usage_usec');
  if (usec === undefined) throw new Error('cpu.stat: no usage_usec line');
  return usec * 1000;
}

/** memory.current minus `inactive_file` of memory.stat (the working set, as v1MemoryInUse). */
export function v2MemoryInUse(currentBytes: number, stat: ReadonlyMap<string, number>): number {
  return Math.max(0, currentBytes - (stat.get('inactive_file') ?? 0));
}

/**
 * `oom_kill` of memory.events: processes of this cgroup (and its children) the OOM killer killed.
 * (`oom` counts the times the limit was hit and reclaim failed, whether or not a process died.)
 */
export function v2OomKills(memoryEvents: string): number {
  return parseKeyedValues(memoryEvents).get('oom_kill') ?? 0;
}
