/**
 * The allocation's disk limit (`ephemeral.sizeMiB`): an alloc hook that measures, from the moment the
 * allocation runs until it stops, how much disk its directories take (its task directories and the
 * shared `alloc/`, logs apart: they have their own cap), and fails the allocation when it goes over:
 *
 *   poststart ─▶ measure (disk-usage.ts) ─▶ under the limit: wait, measure again
 *                                       └─▶ over it (or more files than are counted, or a path too
 *                                           long to measure): onExceeded(message) kills every task
 *                                           (SIGKILL, failed, no restart), then what the tasks wrote
 *                                           is removed (their logs stay)
 *   stop ─▶ no more measuring
 *
 * It is a measure-and-kill limit, not a quota: a task can go past it by what it writes between two
 * measurements. So the wait shrinks while the usage grows toward the limit (to half the time the
 * last growth rate would take to reach it, never under a second), and stays at least four times
 * the last walk (the walker's cost stays under a fifth of a core, whatever the tree).
 *
 * Why the files go after a kill: a failed allocation is replaced (reschedule policy), and each
 * replacement that fills its disk would leave its files on the node until the directory's retention
 * passes; the scheduler already counts the disk as free again.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { AllocDiskStats } from '../../api/types.ts';
import type { Logger } from '../../core/log.ts';
import type { Allocation } from '../../core/types.ts';
import { allocDirPaths, removeTree, taskDirPaths } from './alloc-dir.ts';
import { measureDisk, type DiskUsage } from './disk-usage.ts';
import type { AllocHook } from './hooks.ts';

const MiB = 1024 * 1024;

export interface DiskWatchOptions {
  /** Longest wait between two measurements of an allocation (ms); default 10 s. */
  intervalMs: number;
  /** Files and directories counted per allocation; one with more is over its limit. Default 100 000. */
  maxFiles: number;
}

export const DEFAULT_DISK_WATCH: DiskWatchOptions = { intervalMs: 10_000, maxFiles: 100_000 };

/** The last measurement of an allocation's disk (no limit: placed before sizes existed, only measured). */
export type DiskSnapshot = AllocDiskStats;

export interface DiskHook extends AllocHook {
  /** The last measurement; undefined before the first. */
  usage(): DiskSnapshot | undefined;
}

export interface DiskHookParams {
  alloc: Pick<Allocation, 'id' | 'groupSpec'>;
  /** `<dataDir>/agent/allocs` */
  allocsDir: string;
  options: DiskWatchOptions;
  /** Fails the allocation with `message`; resolves once none of its tasks runs. */
  onExceeded: (message: string) => Promise<void>;
  logger: Logger;
  now?: () => number;
}

/** The `disk` alloc hook: poststart starts measuring, stop stops. */
export function diskHook(p: DiskHookParams): DiskHook {
  const watcher = new DiskWatcher(p);
  return {
    name: 'disk',
    poststart: () => watcher.start(),
    stop: () => watcher.stop(),
    usage: () => watcher.last,
  };
}

class DiskWatcher {
  private readonly p: DiskHookParams;
  private readonly now: () => number;
  private readonly root: string;
  private readonly taskNames: string[];
  private readonly limitBytes: number | undefined;
  private running = false;
  /** The limit was exceeded: the watcher does not start again. */
  private ended = false;
  private abort: AbortController | undefined;
  private wake: (() => void) | undefined;
  last: DiskSnapshot | undefined;

  constructor(p: DiskHookParams) {
    this.p = p;
    this.now = p.now ?? Date.now;
    this.root = allocDirPaths(p.allocsDir, p.alloc.id).root;
    this.taskNames = p.alloc.groupSpec.tasks.map((t) => t.name);
    const size = p.alloc.groupSpec.ephemeral?.sizeMiB;
    this.limitBytes = size === undefined ? undefined : size * MiB;
  }

  start(): void {
    if (this.running || this.ended) return;
    this.running = true;
    const abort = new AbortController();
    this.abort = abort;
    this.loop(abort.signal).catch((err: unknown) => {
      this.p.logger.error({ err }, 'the disk watcher of the allocation failed');
    });
  }

  stop(): void {
    this.running = false;
    this.abort?.abort();
    this.wake?.();
  }

  private async loop(signal: AbortSignal): Promise<void> {
    const logs = this.taskNames.map((t) => taskDirPaths(this.p.allocsDir, this.p.alloc.id, t).logs);
    let prev: DiskSnapshot | undefined;
    while (!signal.aborted) {
      const began = this.now();
      const usage = await measureDisk(this.root, {
        maxEntries: this.p.options.maxFiles,
        exclude: logs,
        signal,
      });
      if (signal.aborted) return;
      const snap: DiskSnapshot = { usedBytes: usage.bytes, files: usage.entries, measuredAt: this.now() };
      if (this.limitBytes !== undefined) snap.limitBytes = this.limitBytes;
      this.last = snap;
      const over = exceeded(usage, this.limitBytes, this.p.options.maxFiles);
      if (over !== undefined) {
        this.p.logger.warn(
          { usedBytes: usage.bytes, limitBytes: this.limitBytes, files: usage.entries },
          over,
        );
        this.ended = true;
        this.running = false;
        await this.p.onExceeded(over);
        await this.removeData();
        return;
      }
      const delay = nextDelay({
        intervalMs: this.p.options.intervalMs,
        walkMs: snap.measuredAt - began,
        usedBytes: snap.usedBytes,
        ...(this.limitBytes !== undefined ? { limitBytes: this.limitBytes } : {}),
        ...(prev !== undefined ? { previous: { usedBytes: prev.usedBytes, at: prev.measuredAt } } : {}),
        at: snap.measuredAt,
      });
      prev = snap;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, delay);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.wake = done;
      });
      this.wake = undefined;
    }
  }

  /** What the tasks wrote (every task directory but its logs/, and the shared alloc/). */
  private async removeData(): Promise<void> {
    const shared = allocDirPaths(this.p.allocsDir, this.p.alloc.id).shared;
    const dirs = [
      shared,
      ...this.taskNames.map((t) => taskDirPaths(this.p.allocsDir, this.p.alloc.id, t).dir),
    ];
    const paths: string[] = [];
    for (const dir of dirs) {
      const names = await readdir(dir).catch(() => [] as string[]);
      for (const name of names) if (dir === shared || name !== 'logs') paths.push(join(dir, name));
    }
    await removeTree(...paths).catch((err: unknown) => {
      this.p.logger.warn({ err }, 'could not remove what the allocation wrote');
    });
  }
}

/** Why the allocation is over its disk limit, worded for its task events; undefined when it is not. */
export function exceeded(
  usage: DiskUsage,
  limitBytes: number | undefined,
  maxFiles: number,
): string | undefined {
  if (limitBytes === undefined) return undefined;
  if (usage.truncated === 'entries')
    return `disk limit exceeded: more than ${maxFiles} files and directories (the most the agent counts in one allocation)`;
  if (usage.truncated === 'path-length')
    return 'disk limit exceeded: a path in the allocation directory is too long to measure';
  if (usage.bytes <= limitBytes) return undefined;
  const limit = formatSize(limitBytes);
  // Just over: "20 MiB + 12 KiB" rather than a rounded "20 MiB of 20 MiB".
  const used =
    formatSize(usage.bytes) === limit
      ? `${limit} + ${formatSize(usage.bytes - limitBytes)}`
      : formatSize(usage.bytes);
  return `disk limit exceeded: used ${used} of ${limit} (ephemeral.sizeMiB)`;
}

/**
 * The wait before the next measurement: `intervalMs`, shortened while the usage grows toward the
 * limit (half the time the last growth would take to reach it, at least a second or `intervalMs`
 * when shorter), and never under four times the last walk.
 */
export function nextDelay(o: {
  intervalMs: number;
  walkMs: number;
  usedBytes: number;
  limitBytes?: number;
  previous?: { usedBytes: number; at: number };
  at: number;
}): number {
  let delay = o.intervalMs;
  const elapsed = o.previous === undefined ? 0 : o.at - o.previous.at;
  if (o.limitBytes !== undefined && o.previous !== undefined && elapsed > 0) {
    const rate = (o.usedBytes - o.previous.usedBytes) / elapsed;
    if (rate > 0) {
      const reachMs = Math.max(0, o.limitBytes - o.usedBytes) / rate;
      delay = Math.min(delay, Math.max(Math.min(1_000, o.intervalMs), reachMs / 2));
    }
  }
  return Math.max(delay, 4 * o.walkMs);
}

/** `512 KiB`, `24.5 MiB`, `1.2 GiB`. */
export function formatSize(bytes: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const text = i === 0 || v >= 100 ? String(Math.round(v)) : v.toFixed(1).replace(/\.0$/, '');
  return `${text} ${units[i]}`;
}
