/**
 * Runs one task of an allocation through its driver, for as long as the allocation wants it:
 * starts it, waits for it to exit, applies the group's restart policy, and keeps its TaskState (with
 * events people can read) current. The run loop is the only writer of the state; `kill` only asks.
 *
 *   received → started → terminated → restarting → started → … → (not-restarting | done)
 *                      ↘ killing → killed                     (a stop asked by the alloc runner)
 *                      ↘ limit-exceeded → killing → killed    (the allocation went over its disk: failed)
 *   driver-failure                                            (exec error: fails at once, no retry)
 *
 * A runner can also be rebuilt from the agent's state file after an agent restart (`restored`): a task
 * that was running is re-attached through `driver.recover` (same process, `reattached` event), one
 * that exited meanwhile is reported with its real exit ("exited with code 42 while the agent was
 * down") and one that can not be found is a failed exit with unknown code; the restart policy then
 * goes on from where it was (its history is in the state file too).
 */
import { readFileSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { formatDuration } from '../../core/duration.ts';
import type { TaskSpec } from '../../core/job-spec.ts';
import type { Logger } from '../../core/log.ts';
import type { Allocation, TaskEvent, TaskEventType, TaskState } from '../../core/types.ts';
import {
  ExecError,
  describeExit,
  type Driver,
  type ExitResult,
  type TaskConfig,
  type TaskHandle,
  type TaskHandleState,
  type TaskUsage,
} from '../drivers/types.ts';
import { hookFailure, type TaskHook, type TaskHookContext } from './hooks.ts';
import { RestartTracker } from './restart-policy.ts';
import type { PersistedTask } from '../state.ts';

/** How an iteration of the run loop begins. */
type Entry =
  | { kind: 'start'; delayMs: number; pendingRestart?: boolean }
  | { kind: 'attached'; handle: TaskHandle }
  | { kind: 'exited'; result: ExitResult; message: string };

/** How many events a TaskState keeps (most recent last). */
export const MAX_TASK_EVENTS = 20;

export interface TaskRunnerOptions {
  alloc: Pick<Allocation, 'id' | 'jobType' | 'groupSpec'>;
  task: TaskSpec;
  /** The driver, or why the task can not run on this node (e.g. the driver is disabled). */
  driver: Driver | { unavailable: string };
  /** What to start; the prestart hooks complete it (environment, interpolated command, devices). */
  config: TaskConfig;
  /** Run in order around the task's life (hooks.ts); default none: `config` is started as it is. */
  hooks?: TaskHook[];
  logger: Logger;
  /** Called after every change of the state (synchronously; keep it cheap). */
  onChange: () => void;
  /** The clock, for tests of the restart policy. */
  now?: () => number;
  /** The task as an earlier agent process left it (from the state file): re-attach instead of starting. */
  restored?: PersistedTask;
  /**
   * The driver that started the restored task, also when it may no longer start tasks here (e.g.
   * raw_exec turned off since): a running task is still taken over rather than left unknown.
   */
  recoverDriver?: Driver;
}

export class TaskRunner {
  readonly name: string;
  private readonly opts: TaskRunnerOptions;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly restarts: RestartTracker;
  private readonly st: TaskState;
  private handle: TaskHandle | undefined;
  private killReason: string | undefined;
  /** The kill is for a limit the allocation exceeded: SIGKILL at once, and the task fails. */
  private limitExceeded = false;
  private wakeFromDelay: (() => void) | undefined;
  private started = false;
  private runPromise: Promise<void> | undefined;
  private stopSent = false;
  /** When the pending restart is due (while waiting for it). */
  private restartAt: number | undefined;
  /** The handle state of a process an earlier agent process started, still to be recovered. */
  private toRecover: TaskHandleState | undefined;
  private readonly recoveredSignal = Promise.withResolvers<void>();
  /** Set by detach(): the agent goes away and leaves the task running; nothing more is done. */
  private detached = false;
  /** A driver.start in flight. */
  private starting: Promise<unknown> | undefined;
  private readonly hooks: TaskHook[];
  private readonly hookCtx: TaskHookContext;
  /** The prestart hooks have run (once per runner, before its first start). */
  private prestarted = false;

  constructor(opts: TaskRunnerOptions) {
    this.opts = opts;
    this.name = opts.task.name;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.hooks = opts.hooks ?? [];
    this.hookCtx = {
      allocId: opts.alloc.id,
      task: opts.task,
      config: { ...opts.config },
      logger: this.logger,
    };
    const restored = opts.restored;
    this.restarts = new RestartTracker(opts.alloc.groupSpec.restart, restored?.restartHistory);
    if (restored === undefined) {
      this.st = { state: 'pending', failed: false, restarts: 0, events: [] };
      this.event('received', 'task received by the agent');
      return;
    }
    this.st = { ...restored.state, events: restored.state.events.map((e) => ({ ...e })) };
    this.started = restored.started;
    this.killReason = restored.killReason;
    this.limitExceeded = restored.limitExceeded === true;
    this.restartAt = restored.restartAt;
    if (this.st.state === 'running') this.toRecover = restored.handle;
    if (this.st.state === 'dead') {
      // Nothing left to run: the task ended before the agent went away.
      this.runPromise = Promise.resolve();
      this.recoveredSignal.resolve();
    }
  }

  /** A copy of the current state, safe to send. */
  state(): TaskState {
    return { ...this.st, events: this.st.events.map((e) => ({ ...e })) };
  }

  /** Everything needed to pick the task up again after an agent restart (plain JSON). */
  snapshot(): PersistedTask {
    const p: PersistedTask = {
      state: this.state(),
      started: this.started,
      restartHistory: this.restarts.history(),
    };
    const handleState = this.handle?.state ?? this.toRecover;
    if (handleState !== undefined && this.st.state === 'running') p.handle = handleState;
    if (this.restartAt !== undefined && this.st.state === 'pending') p.restartAt = this.restartAt;
    if (this.killReason !== undefined) p.killReason = this.killReason;
    if (this.limitExceeded) p.limitExceeded = true;
    return p;
  }

  /**
   * Resolves once a restored task has been re-attached (or found exited, or lost) and its state
   * says so; at once for a task that was not restored.
   */
  get recovered(): Promise<void> {
    return this.recoveredSignal.promise;
  }

  /** The running process's resource usage, when the driver measures it. */
  async usage(): Promise<TaskUsage | undefined> {
    const handle = this.handle;
    if (handle === undefined || this.st.state !== 'running') return undefined;
    try {
      return await handle.usage();
    } catch (err) {
      this.logger.debug({ err }, 'could not read the task usage');
      return undefined;
    }
  }

  /**
   * The agent goes away and leaves the task as it is: no restart, no kill, no more events. Resolves
   * once no start is in flight (so the state saved last names the process that runs).
   */
  async detach(): Promise<void> {
    this.detached = true;
    this.wakeFromDelay?.();
    await this.starting;
  }

  /** Whether the task has run at least once (an exec error counts: it has had its chance). */
  get hasStarted(): boolean {
    return this.started;
  }

  get isDead(): boolean {
    return this.st.state === 'dead';
  }

  /** Starts the run loop. Idempotent. */
  run(): Promise<void> {
    this.runPromise ??= this.loop()
      .catch((err: unknown) => {
        // Only a bug gets here: record it as a failure rather than leave the task pending forever.
        this.logger.error({ err }, 'task runner crashed');
        this.handle = undefined;
        this.event('driver-failure', `agent error: ${err instanceof Error ? err.message : String(err)}`);
        this.finish(true);
      })
      .finally(() => this.recoveredSignal.resolve());
    return this.runPromise;
  }

  /** Resolves when the task is dead for good. */
  async done(): Promise<void> {
    await (this.runPromise ?? this.run());
  }

  /**
   * Stops the task for good: killSignal to its process group, SIGKILL after killTimeout, no restart.
   * A task waiting to restart just stops waiting. Idempotent; resolves when the task is dead.
   * `limitExceeded`: the allocation went over a limit (its disk): a `limit-exceeded` event with the
   * reason, SIGKILL at once (no grace to write more), and the task ends failed.
   */
  async kill(reason: string, how: { limitExceeded?: boolean } = {}): Promise<void> {
    if (this.st.state !== 'dead' && this.killReason === undefined) {
      this.killReason = reason;
      if (how.limitExceeded === true) {
        this.limitExceeded = true;
        this.event('limit-exceeded', reason);
      }
      this.notify('stop', (h) => h.stop?.(this.hookCtx, reason));
      this.wakeFromDelay?.();
      this.sendStop();
    }
    // A restored task whose process may still run: re-attach first, the loop then stops it.
    if (this.runPromise === undefined && this.st.state === 'running') void this.run();
    if (this.runPromise === undefined) {
      // Never started: nothing to stop.
      this.event('killed', `stopped before it started: ${reason}`);
      this.finish(this.limitExceeded);
      this.runPromise = Promise.resolve();
      this.recoveredSignal.resolve();
    }
    await this.runPromise;
  }

  /** Marks the task failed without running it (the alloc dir could not be set up, …). */
  failWithoutRunning(message: string): void {
    if (this.runPromise !== undefined) return;
    this.started = true;
    this.event('driver-failure', message);
    this.finish(true);
    this.runPromise = Promise.resolve();
    this.recoveredSignal.resolve();
  }

  private sendStop(): void {
    const handle = this.handle;
    if (handle === undefined || this.stopSent || this.killReason === undefined) return;
    this.stopSent = true;
    const { killSignal, killTimeout } = this.limitExceeded
      ? { killSignal: 'SIGKILL' as const, killTimeout: 0 }
      : this.opts.task;
    this.event(
      'killing',
      `sending ${killSignal}${killSignal === 'SIGKILL' ? '' : ` (SIGKILL after ${formatDuration(killTimeout)})`}: ${this.killReason}`,
    );
    this.opts.onChange();
    void handle.stop(killSignal, killTimeout);
  }

  private async loop(): Promise<void> {
    const { driver, task } = this.opts;
    const config = this.hookCtx.config;
    let entry = await this.recover();
    this.recoveredSignal.resolve();
    for (;;) {
      let result: ExitResult;
      let exitMessage: string | undefined;
      if (entry.kind === 'exited') {
        result = entry.result;
        exitMessage = entry.message;
      } else {
        let handle: TaskHandle;
        if (entry.kind === 'attached') handle = entry.handle;
        else {
          if (entry.delayMs > 0) await this.delay(entry.delayMs);
          if (this.detached) return;
          // A restart an earlier agent process had scheduled counts once it happens.
          if (entry.pendingRestart === true && this.killReason === undefined) this.st.restarts += 1;
          this.restartAt = undefined;
          if (this.killReason !== undefined) {
            this.event('killed', `stopped while waiting to restart: ${this.killReason}`);
            this.finish(this.limitExceeded);
            return;
          }
          if ('unavailable' in driver) {
            await this.failToStart(driver.unavailable);
            return;
          }
          const hookFailed = await this.prestart();
          if (hookFailed !== undefined) {
            await this.failToStart(hookFailed);
            return;
          }
          if (this.detached) return;
          try {
            const starting = driver.start(config);
            this.starting = starting.catch(() => undefined);
            handle = await starting;
          } catch (err) {
            const message =
              err instanceof ExecError
                ? err.message
                : `driver ${task.driver} could not start the task: ${err instanceof Error ? err.message : String(err)}`;
            await this.failToStart(message);
            return;
          } finally {
            this.starting = undefined;
          }
          this.handle = handle;
          this.started = true;
          this.st.state = 'running';
          this.st.pid = handle.pid;
          this.st.startedAt = handle.startedAt;
          delete this.st.finishedAt;
          this.event('started', `started (pid ${handle.pid})`);
          this.notify('poststart', (h) => h.poststart?.(this.hookCtx, handle));
          // Also when detached: the state saved last must name the process that now runs.
          this.opts.onChange();
          if (this.detached) return;
        }
        // A kill that came while the driver was starting (or re-attaching to) the process.
        this.sendStop();
        result = await handle.wait();
        if (this.detached) return;
        this.handle = undefined;
      }
      entry = { kind: 'start', delayMs: 0 };
      this.recordExit(result);
      this.notify('exited', (h) => h.exited?.(this.hookCtx, result));
      if (this.killReason !== undefined) {
        const how = this.limitExceeded ? 'ended' : 'stopped';
        this.event('killed', `${how} (${exitMessage ?? describeExit(result)}): ${this.killReason}`, result);
        this.finish(this.limitExceeded);
        return;
      }
      this.event('terminated', exitMessage ?? describeExit(result), result);
      const succeeded = result.exitCode === 0 && result.signal === undefined;
      if (this.opts.alloc.jobType === 'batch' && succeeded) {
        this.finish(false);
        return;
      }
      const decision = this.restarts.next(this.now());
      if (!decision.restart) {
        this.event('not-restarting', decision.reason, result);
        this.finish(true);
        return;
      }
      const { attempts } = this.opts.alloc.groupSpec.restart;
      const count = decision.waitingForInterval
        ? `restart attempts exhausted; waiting for the restart interval to pass`
        : `restart ${decision.attempt} of ${attempts}`;
      this.st.state = 'pending';
      this.restartAt = this.now() + decision.delayMs;
      this.event(
        'restarting',
        `restarting in ${formatDuration(decision.delayMs)}: ${exitMessage ?? describeExit(result)} (${count})`,
        result,
      );
      this.opts.onChange();
      await this.delay(decision.delayMs);
      if (this.detached) return;
      if (this.killReason === undefined) this.st.restarts += 1;
    }
  }

  /**
   * The first step of the loop. For a task restored from the state file: re-attach to its process
   * (or learn how it ended while the agent was down). Otherwise: start (after what is left of a
   * pending restart delay).
   */
  private async recover(): Promise<Entry> {
    const restartDelay = (): number =>
      this.restartAt === undefined ? 0 : Math.max(0, this.restartAt - this.now());
    if (this.st.state !== 'running')
      return { kind: 'start', delayMs: restartDelay(), pendingRestart: this.restartAt !== undefined };
    const state = this.toRecover;
    // The handle's data is the driver's own: the pid people know is the one in the task's state.
    const pid = this.st.pid ?? '?';
    const lost = (why: string): Entry => ({
      kind: 'exited',
      result: {},
      message: `lost while the agent was down: ${why}; its exit code is unknown`,
    });
    const driver = this.opts.recoverDriver ?? this.opts.driver;
    let handle: TaskHandle | undefined;
    if (state === undefined) return lost(`no process handle was saved for pid ${pid}`);
    if ('unavailable' in driver) return lost(`cannot re-attach to pid ${pid}: ${driver.unavailable}`);
    if (driver.recover === undefined)
      return lost(`driver ${driver.name} cannot re-attach to running tasks (pid ${pid})`);
    try {
      handle = await driver.recover(state);
    } catch (err) {
      this.logger.warn({ err, pid }, 'could not re-attach to the task');
      this.toRecover = undefined;
      return lost(`re-attaching to pid ${pid} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (handle === undefined) {
      this.toRecover = undefined;
      return lost(`process ${pid} could not be found`);
    }
    // A task that exited while the agent was down comes back as a handle whose wait() resolves at
    // once, or soon (the driver may read its status file and clean up first): when its process is
    // gone, that exit is the one that happened while the agent was down.
    let early = await Promise.race([
      handle.wait(),
      new Promise<undefined>((resolve) => setImmediate(() => resolve(undefined))),
    ]);
    if (early === undefined && !processExists(handle.pid)) early = await handle.wait();
    this.toRecover = undefined;
    if (early !== undefined)
      return {
        kind: 'exited',
        result: early,
        // The driver's own wording already says when the status could not be known.
        message: early.detail ?? `${describeExit(early)} while the agent was down`,
      };
    this.handle = handle;
    this.st.pid = handle.pid;
    this.event('reattached', `re-attached after an agent restart (pid ${handle.pid})`);
    this.opts.onChange();
    return { kind: 'attached', handle };
  }

  /** Runs the prestart hooks once, in order; the first failure is returned (worded) and ends the list. */
  private async prestart(): Promise<string | undefined> {
    if (this.prestarted) return undefined;
    for (const hook of this.hooks) {
      try {
        await hook.prestart?.(this.hookCtx);
      } catch (err) {
        this.logger.warn({ err, hook: hook.name }, 'a task prestart hook failed');
        return hookFailure(hook, err);
      }
    }
    this.prestarted = true;
    return undefined;
  }

  /** A notice to every hook; a hook that throws is logged, the task goes on. */
  private notify(what: string, fn: (hook: TaskHook) => void): void {
    for (const hook of this.hooks) {
      try {
        fn(hook);
      } catch (err) {
        this.logger.error({ err, hook: hook.name, phase: what }, 'a task hook failed');
      }
    }
  }

  private async failToStart(message: string): Promise<void> {
    this.started = true;
    this.logger.warn({ reason: message }, 'task could not start');
    // So that `unum logs` shows why, next to the task's own output.
    await appendFile(this.opts.config.stderrPath, `unum: ${message}\n`).catch((err: unknown) => {
      this.logger.warn({ err }, 'could not write the start failure into stderr.log');
    });
    this.event('driver-failure', message);
    this.finish(true);
  }

  private recordExit(result: ExitResult): void {
    delete this.st.pid;
    if (result.exitCode === undefined) delete this.st.exitCode;
    else this.st.exitCode = result.exitCode;
    if (result.signal === undefined) delete this.st.signal;
    else this.st.signal = result.signal;
    if (result.oomKilled) this.st.oomKilled = true;
    this.st.finishedAt = this.now();
  }

  private finish(failed: boolean): void {
    this.st.state = 'dead';
    this.st.failed = failed;
    delete this.st.pid;
    this.st.finishedAt ??= this.now();
    this.logger.info({ failed, exitCode: this.st.exitCode, signal: this.st.signal }, 'task dead');
    this.opts.onChange();
  }

  private delay(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wakeFromDelay = () => {
        this.wakeFromDelay = undefined;
        done();
      };
    });
  }

  private event(type: TaskEventType, message: string, result?: ExitResult): void {
    const e: TaskEvent = { time: this.now(), type, message };
    if (result?.exitCode !== undefined) e.exitCode = result.exitCode;
    if (result?.signal !== undefined) e.signal = result.signal;
    this.st.events.push(e);
    if (this.st.events.length > MAX_TASK_EVENTS)
      this.st.events.splice(0, this.st.events.length - MAX_TASK_EVENTS);
    if (type !== 'received') this.logger.info({ event: type }, message);
  }
}

/** Whether a process of that pid exists and is not a zombie (an exited process nobody reaped yet). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    // No /proc (not Linux), or gone in between: kill(pid, 0) had the answer.
    return process.platform !== 'linux';
  }
}
