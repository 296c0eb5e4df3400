/**
 * CPU, memory and pids of the running tasks, with cpuPercent measured between two samples, and each
 * allocation's disk as its disk watcher last measured it.
 */
import type { NodeStats, TaskUsageStats } from '../api/types.ts';
import type { AllocRunner } from './runner/alloc-runner.ts';

export class UsageSampler {
  private readonly nodeId: string;
  /** Last usage sample per `allocId/task`, for cpuPercent. */
  private readonly usageSamples = new Map<string, { time: number; cpuNanos: number; percent?: number }>();

  constructor(nodeId: string) {
    this.nodeId = nodeId;
  }

  /**
   * Usage of every running task now; cpuPercent is measured against the previous sample (the
   * periodic one, or an earlier request's) when it is at least half a second old.
   */
  async sample(runners: readonly AllocRunner[]): Promise<NodeStats> {
    const now = Date.now();
    const allocations: NodeStats['allocations'] = {};
    const seen = new Set<string>();
    await Promise.all(
      runners
        .filter((r) => !r.finished)
        .map(async (r) => {
          const usage = await r.usage();
          const tasks: Record<string, TaskUsageStats> = {};
          for (const [task, u] of Object.entries(usage)) {
            const key = `${r.id}/${task}`;
            seen.add(key);
            const prev = this.usageSamples.get(key);
            let percent = prev?.percent;
            if (prev === undefined || u.cpuNanos < prev.cpuNanos) {
              // First sample, or the task restarted (new counters).
              percent = undefined;
              this.usageSamples.set(key, { time: now, cpuNanos: u.cpuNanos });
            } else if (now - prev.time >= 500) {
              percent = ((u.cpuNanos - prev.cpuNanos) / ((now - prev.time) * 1e6)) * 100;
              this.usageSamples.set(key, { time: now, cpuNanos: u.cpuNanos, percent });
            }
            const stats: TaskUsageStats = { cpuNanos: u.cpuNanos, memoryBytes: u.memoryBytes, pids: u.pids };
            if (percent !== undefined) stats.cpuPercent = Math.round(percent * 10) / 10;
            tasks[task] = stats;
          }
          const disk = r.diskUsage();
          if (disk !== undefined) allocations[r.id] = { tasks, disk: { ...disk } };
          else if (Object.keys(tasks).length > 0) allocations[r.id] = { tasks };
        }),
    );
    for (const key of this.usageSamples.keys()) if (!seen.has(key)) this.usageSamples.delete(key);
    return { nodeId: this.nodeId, time: now, allocations };
  }
}
