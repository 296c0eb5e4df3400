/**
 * Runs one allocation: sets up its directories, runs each task of the group through a TaskRunner,
 * runs the group's health checks, and derives the allocation's client status from its tasks:
 *
 *   pending ──(every task started)──▶ running ──(every task done, none failed)──▶ complete
 *      │                                 │
 *      └──────(a task failed for good: the others are stopped)──────────────────▶ failed
 *   a stop asked by the server (desiredStatus stop) ends as complete: "stopped by server: <why>"
 *   a limit of the allocation exceeded (its disk: disk-watch.ts) fails it: every task is killed
 *   and fails, no restart; its description is the reason
 *
 * A terminal status (complete, failed) is reported only once no process of the allocation is left,
 * so that the server may hand its resources and ports to someone else as soon as it sees it.
 *
 * Every change is also handed to `onPersist` as a PersistedAlloc (the agent writes it to the state
 * file), and a runner can be rebuilt from one (`restored`) after an agent restart: its tasks are then
 * re-attached rather than started.
 */
import { dirname, join } from 'node:path';
import { identityHook, type FetchIdentity } from './identity.ts';
import { NetworkHook, type AllocNetworks } from './network-hook.ts';
import { taskApiHook } from '../task-api.ts';
import { isTerminalStatus } from '../../core/alloc.ts';
import type { Logger } from '../../core/log.ts';
import type { AllocClientStatus, Allocation, TaskState } from '../../core/types.ts';
import type { AllocStatusUpdate } from '../../api/types.ts';
import { taskDirPaths } from './alloc-dir.ts';
import { taskApiSocketPath } from './task-env.ts';
import type { Driver, TaskConfig, TaskUsage } from '../drivers/types.ts';
import { checkTargets, type HealthSnapshot } from './health.ts';
import {
  DEFAULT_DISK_WATCH,
  diskHook,
  type DiskHook,
  type DiskSnapshot,
  type DiskWatchOptions,
} from './disk-watch.ts';
import {
  allocDirHook,
  devicesHook,
  driverPrepareHook,
  healthHook,
  hookFailure,
  taskEnvHook,
  type AllocHook,
  type AllocHookContext,
} from './hooks.ts';
import type { PersistedAlloc } from '../state.ts';
import { STATE_VERSION } from '../state.ts';
import { TaskRunner } from './task-runner.ts';
import type { LogLimits } from '../logs.ts';

export interface AllocRunnerOptions {
  alloc: Allocation;
  /** `<dataDir>/agent/allocs` */
  allocsDir: string;
  nodeId: string;
  /** Log bytes and files kept per stream of a task (default DEFAULT_LOG_LIMITS). */
  logLimits?: LogLimits;
  /** The driver for a task's `driver` name, or why it can not run here. */
  driverFor: (name: string) => Driver | { unavailable: string };
  /** How the allocation's disk is measured (default DEFAULT_DISK_WATCH). */
  disk?: DiskWatchOptions;
  /** Fetches the workload tokens of this allocation's tasks from a server (absent: no identity). */
  fetchIdentity?: FetchIdentity;
  /** The driver of that name even when it may not start tasks (to re-attach to a restored task). */
  recoverDriverFor?: (name: string) => Driver | undefined;
  logger: Logger;
  /** Called with the allocation's full status after every change (synchronously; coalesce downstream). */
  onUpdate: (update: AllocStatusUpdate) => void;
  /** Called with the durable state after every change, also while silent (synchronously). */
  onPersist?: (state: PersistedAlloc) => void;
  /** The allocation as an earlier agent process left it: its tasks are re-attached, not started. */
  restored?: PersistedAlloc;
  /** Allocation networks (absent: tasks share the host's network). */
  networks?: AllocNetworks;
  /** The servers a task's API socket relays to (../task-api.ts; absent: no socket). */
  taskApiServers?: () => readonly string[];
  /** The cluster CA for https:// servers of the task API. */
  taskApiCa?: () => string | undefined;
}

export class AllocRunner {
  readonly id: string;
  private alloc: Allocation;
  private readonly opts: AllocRunnerOptions;
  private readonly logger: Logger;
  private readonly tasks: TaskRunner[];
  /** The drivers of its tasks that can run here. */
  private readonly drivers = new Set<Driver>();
  /** Run in order: see hooks.ts. */
  private readonly hooks: AllocHook[];
  private healthSnap: HealthSnapshot | undefined;
  private clientStatus: AllocClientStatus = 'pending';
  private description = 'starting tasks';
  /** Why the allocation is being stopped (by the server, by the agent); undefined while it runs. */
  private stopReason: string | undefined;
  private failedTask: string | undefined;
  /** Why the allocation as a whole was failed (a limit it exceeded). */
  private failReason: string | undefined;
  private readonly disk: DiskHook;
  /** When set, nothing more is reported (agent shutdown: the next agent process takes over). */
  private silent = false;
  /** The agent leaves the tasks running for its next process: nothing of theirs is torn down. */
  private detached = false;
  private runPromise: Promise<void> | undefined;

  constructor(opts: AllocRunnerOptions) {
    this.opts = opts;
    const restored = opts.restored;
    this.alloc = restored?.alloc ?? opts.alloc;
    this.id = opts.alloc.id;
    if (restored !== undefined) {
      this.clientStatus = restored.clientStatus;
      this.description = restored.clientDescription;
      this.stopReason = restored.stopReason;
      this.failedTask = restored.failedTask;
      this.failReason = restored.failReason;
    }
    this.logger = opts.logger.child({ allocId: this.id, alloc: opts.alloc.name });
    const network = new NetworkHook(opts.alloc, opts.networks);
    this.tasks = opts.alloc.groupSpec.tasks.map((task) => {
      const taskDir = taskDirPaths(opts.allocsDir, this.id, task.name);
      const recoverDriver = restored !== undefined ? opts.recoverDriverFor?.(task.driver) : undefined;
      // The rest (environment, command, devices) is filled in by the task's prestart hooks.
      const config: TaskConfig = {
        allocId: this.id,
        task: task.name,
        command: task.command,
        args: [...task.args],
        env: {},
        cwd: taskDir.dir,
        stdoutPath: taskDir.stdout,
        stderrPath: taskDir.stderr,
        resources: { cpu: task.resources.cpu, memory: task.resources.memory },
      };
      if (opts.logLimits !== undefined) config.logLimits = opts.logLimits;
      // The driver decides what a job's user may be (exec: allowedTaskUsers; raw_exec: only its own).
      if (task.user !== undefined) config.user = task.user;

      const driver = opts.driverFor(task.driver);
      if (!('unavailable' in driver)) this.drivers.add(driver);
      return new TaskRunner({
        alloc: opts.alloc,
        task,
        driver,
        config,
        hooks: [
          taskEnvHook(opts.alloc, opts.allocsDir, opts.nodeId),
          devicesHook(opts.alloc),
          network.taskHook(),
        ],
        logger: this.logger.child({ task: task.name }),
        onChange: () => this.recompute(),
        ...(restored?.tasks[task.name] !== undefined ? { restored: restored.tasks[task.name] } : {}),
        ...(recoverDriver !== undefined ? { recoverDriver } : {}),
      });
    });
    if (checkTargets(opts.alloc.groupSpec.services, opts.alloc.resources.ports).length > 0)
      this.healthSnap = { healthy: restored?.healthy ?? false };
    const health = healthHook(
      opts.alloc,
      (snap) => {
        this.healthSnap = snap;
        this.recompute();
      },
      this.logger,
      () => network.address,
    );
    const identity =
      opts.fetchIdentity !== undefined
        ? identityHook(opts.alloc, opts.allocsDir, opts.fetchIdentity, this.logger)
        : undefined;
    const taskApi =
      opts.taskApiServers !== undefined
        ? taskApiHook(
            this.tasks.map((t) => taskApiSocketPath(taskDirPaths(opts.allocsDir, this.id, t.name))),
            opts.taskApiServers,
            this.logger,
            join(dirname(opts.allocsDir), 'sockets'),
            opts.taskApiCa,
          )
        : undefined;
    this.disk = diskHook({
      alloc: opts.alloc,
      allocsDir: opts.allocsDir,
      options: opts.disk ?? DEFAULT_DISK_WATCH,
      onExceeded: (reason) => this.fail(reason),
      logger: this.logger,
    });
    this.hooks = [
      allocDirHook(),
      network,
      driverPrepareHook(this.drivers),
      ...(taskApi ? [taskApi] : []),
      ...(identity ? [identity] : []),
      ...(health ? [health] : []),
      this.disk,
    ];
  }

  /** The allocation as the server last sent it. */
  get allocation(): Allocation {
    return this.alloc;
  }

  /** True once every task is dead and the final status is known. */
  get finished(): boolean {
    return isTerminalStatus(this.clientStatus);
  }

  /** Whether the group has a task of that name. */
  hasTask(name: string): boolean {
    return this.tasks.some((t) => t.name === name);
  }

  get taskNames(): string[] {
    return this.tasks.map((t) => t.name);
  }

  /** Sets up the directories and starts every task. Resolves when the allocation is finished. Idempotent. */
  run(): Promise<void> {
    this.runPromise ??= this.runAll();
    return this.runPromise;
  }

  private async runAll(): Promise<void> {
    if (this.finished) return;
    const restored = this.opts.restored !== undefined;
    this.logger.info(
      { tasks: this.taskNames, restored },
      restored ? 'resuming allocation' : 'starting allocation',
    );
    this.report();
    const ctx = this.hookContext();
    for (const hook of this.hooks) {
      try {
        await hook.prestart?.(ctx);
      } catch (err) {
        this.logger.error({ err, hook: hook.name }, 'an allocation prestart hook failed');
        // Restored tasks may still run: they are re-attached all the same (a start would fail anyway).
        if (!restored) {
          for (const t of this.tasks) t.failWithoutRunning(allocHookFailure(hook, err));
          this.recompute();
          this.ended();
          return;
        }
      }
    }
    // A stop that arrived while the directories were being made, or that an earlier agent process
    // had begun (a stop, or a failed task whose siblings were being stopped).
    const stopWhy =
      this.stopReason ?? (this.failedTask !== undefined ? `task "${this.failedTask}" failed` : undefined);
    if (this.failReason !== undefined)
      for (const t of this.tasks) void t.kill(this.failReason, { limitExceeded: true });
    else if (stopWhy !== undefined) for (const t of this.tasks) void t.kill(stopWhy);
    else if (this.clientStatus === 'running') this.started();
    await Promise.all(this.tasks.map((t) => t.run()));
    this.recompute();
    this.ended();
  }

  /** Every task is dead: `finished` hooks (not when the agent leaves the tasks running). */
  private ended(): void {
    if (this.detached || !this.finished) return;
    const ctx = this.hookContext();
    for (const hook of this.hooks) notify(this.logger, hook, () => hook.finished?.(ctx));
  }

  private hookContext(): AllocHookContext {
    return {
      allocId: this.id,
      allocsDir: this.opts.allocsDir,
      taskNames: this.taskNames,
      restored: this.opts.restored !== undefined,
      logger: this.logger,
      stop: (reason) => void this.stop(reason),
    };
  }

  /** The allocation runs: poststart hooks (health checks start). Idempotent per hook. */
  private started(): void {
    const ctx = this.hookContext();
    for (const hook of this.hooks) notify(this.logger, hook, () => hook.poststart?.(ctx));
  }

  /** The allocation stops running (stopping, failed, ended, detached): stop hooks. */
  private stopped(): void {
    const ctx = this.hookContext();
    for (const hook of this.hooks) notify(this.logger, hook, () => hook.stop?.(ctx));
  }

  /** Resolves once every restored task is re-attached (or known to have ended). Call after run(). */
  async recovered(): Promise<void> {
    await Promise.all(this.tasks.map((t) => t.recovered));
  }

  /**
   * The agent goes away and leaves the tasks running: no more reports, no restarts, no kills. The
   * state saved last describes them for the next agent process. Resolves once no start is in flight.
   */
  async detach(): Promise<void> {
    this.silent = true;
    this.detached = true;
    this.stopped();
    await Promise.all(this.tasks.map((t) => t.detach()));
  }

  /** Resource usage of the running tasks, by task name (tasks without a sample are left out). */
  async usage(): Promise<Record<string, TaskUsage>> {
    const out: Record<string, TaskUsage> = {};
    await Promise.all(
      this.tasks.map(async (t) => {
        const u = await t.usage();
        if (u !== undefined) out[t.name] = u;
      }),
    );
    return out;
  }

  /** The last measurement of the allocation's disk (see disk-watch.ts); undefined before the first. */
  diskUsage(): DiskSnapshot | undefined {
    return this.disk.usage();
  }

  /** When the last task ended (ms); undefined while one runs or never ran. */
  get finishedAt(): number | undefined {
    if (!this.finished) return undefined;
    const times = this.tasks.map((t) => t.state().finishedAt ?? 0);
    return times.length > 0 ? Math.max(...times) : undefined;
  }

  /** The durable state (see state.ts). */
  snapshot(): PersistedAlloc {
    const s: PersistedAlloc = {
      version: STATE_VERSION,
      alloc: this.alloc,
      clientStatus: this.clientStatus,
      clientDescription: this.description,
      tasks: Object.fromEntries(this.tasks.map((t) => [t.name, t.snapshot()])),
      savedAt: Date.now(),
    };
    if (this.healthSnap !== undefined) s.healthy = this.healthSnap.healthy;
    if (this.stopReason !== undefined) s.stopReason = this.stopReason;
    if (this.failedTask !== undefined) s.failedTask = this.failedTask;
    if (this.failReason !== undefined) s.failReason = this.failReason;
    return s;
  }

  /** Takes a newer version of the allocation from the server; a desired stop stops it. */
  update(alloc: Allocation): void {
    const changed =
      alloc.modifiedAt !== this.alloc.modifiedAt || alloc.desiredStatus !== this.alloc.desiredStatus;
    this.alloc = alloc;
    if (changed) this.persist();
    if (alloc.desiredStatus === 'stop' && this.stopReason === undefined)
      void this.stop(`stopped by server: ${alloc.desiredDescription ?? 'no reason given'}`);
  }

  /**
   * Stops every task (killSignal, then SIGKILL after killTimeout). The allocation ends as `complete`
   * with `reason` as its description, unless a task had already failed. Resolves when all are dead.
   */
  async stop(reason: string): Promise<void> {
    if (this.stopReason === undefined && !this.finished) {
      this.stopReason = reason;
      this.logger.info({ reason }, 'stopping allocation');
      this.stopped();
      this.recompute();
    }
    await Promise.all(this.tasks.map((t) => t.kill(reason)));
    await this.runPromise;
  }

  /**
   * The allocation went over a limit (its disk): every task is killed at once and fails (no
   * restart), and the allocation fails with `reason`. Resolves when every task is dead.
   */
  async fail(reason: string): Promise<void> {
    if (this.failReason === undefined && this.stopReason === undefined && !this.finished) {
      this.failReason = reason;
      this.logger.warn({ reason }, 'failing allocation');
      this.stopped();
      for (const t of this.tasks) void t.kill(reason, { limitExceeded: true });
      this.recompute();
    }
    await Promise.all(this.tasks.map((t) => t.kill(reason)));
  }

  /** Stops the tasks without reporting anything more: the agent is going away. */
  async shutdown(): Promise<void> {
    this.silent = true;
    await this.stop('agent shutting down');
  }

  status(): AllocStatusUpdate {
    const taskStates: Record<string, TaskState> = {};
    for (const t of this.tasks) taskStates[t.name] = t.state();
    const update: AllocStatusUpdate = {
      allocId: this.id,
      clientStatus: this.clientStatus,
      clientDescription: this.description,
      taskStates,
    };
    if (this.healthSnap !== undefined) update.healthy = this.healthSnap.healthy;
    return update;
  }

  private recompute(): void {
    if (this.finished) return;
    const failed = this.tasks.find((t) => t.isDead && t.state().failed);
    if (failed !== undefined && this.failedTask === undefined && this.stopReason === undefined) {
      this.failedTask = failed.name;
      this.stopped();
      for (const t of this.tasks) if (!t.isDead) void t.kill(`task "${failed.name}" failed`);
    }
    const failure = (): string => {
      if (this.failReason !== undefined) return this.failReason;
      const t = this.tasks.find((x) => x.name === this.failedTask);
      const last = t?.state().events.at(-1)?.message;
      return `task "${this.failedTask}" failed${last === undefined ? '' : `: ${last}`}`;
    };

    if (this.tasks.every((t) => t.isDead)) {
      this.stopped();
      if (this.failedTask !== undefined) {
        this.clientStatus = 'failed';
        this.description = failure();
      } else {
        this.clientStatus = 'complete';
        this.description = this.stopReason ?? 'all tasks completed';
      }
      this.logger.info(
        { clientStatus: this.clientStatus, description: this.description },
        'allocation finished',
      );
    } else if (this.failedTask !== undefined) {
      this.description = `${failure()}; stopping the other tasks`;
    } else if (this.failReason !== undefined) {
      this.description = `${this.failReason}; stopping the tasks`;
    } else if (this.stopReason !== undefined) {
      this.description = `stopping: ${this.stopReason}`;
    } else if (this.clientStatus === 'running' || this.tasks.every((t) => t.hasStarted)) {
      if (this.clientStatus !== 'running') this.started();
      this.clientStatus = 'running';
      this.description = this.healthSnap?.failing ?? 'tasks running';
    }
    this.report();
  }

  private report(): void {
    this.persist();
    if (!this.silent) this.opts.onUpdate(this.status());
  }

  private persist(): void {
    this.opts.onPersist?.(this.snapshot());
  }
}

export { taskDevicePaths } from './hooks.ts';

/** Why an allocation's tasks never ran; the directories keep their older wording. */
function allocHookFailure(hook: AllocHook, err: unknown): string {
  if (hook.name === 'alloc-dir')
    return `could not set up the allocation directory: ${err instanceof Error ? err.message : String(err)}`;
  return hookFailure(hook, err);
}

/** Runs a notice hook; a throw there is a bug of the hook, logged, never the allocation's end. */
function notify(logger: Logger, hook: { name: string }, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    logger.error({ err, hook: hook.name }, 'an allocation hook failed');
  }
}
