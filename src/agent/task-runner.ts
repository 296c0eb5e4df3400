/**
 * Runs one task of an allocation through its driver, for as long as the allocation wants it:
 * starts it, waits for it to exit, applies the group's restart policy, and keeps its TaskState (with
 * events people can read) current. The run loop is the only writer of the state; `kill` only asks.
 *
 *   received → started → terminated → restarting → started → … → (not-restarting | done)
 *                      ↘ killing → killed                     (a stop asked by the alloc runner)
 *   driver-failure                                            (exec error: fails at once, no retry)
 */
import { appendFile } from 'node:fs/promises';
import { formatDuration } from '../core/duration.ts';
import type { TaskSpec } from '../core/job-spec.ts';
import type { Logger } from '../core/log.ts';
import type { Allocation, TaskEvent, TaskEventType, TaskState } from '../core/types.ts';
import {
  ExecError,
  describeExit,
  type Driver,
  type ExitResult,
  type TaskConfig,
  type TaskHandle,
} from './drivers/types.ts';
import { RestartTracker } from './restart-policy.ts';

/** How many events a TaskState keeps (most recent last). */
export const MAX_TASK_EVENTS = 20;

export interface TaskRunnerOptions {
  alloc: Pick<Allocation, 'id' | 'jobType' | 'groupSpec'>;
  task: TaskSpec;
  /** The driver, or why the task can not run on this node (e.g. the driver is disabled). */
  driver: Driver | { unavailable: string };
  /** What to start (command and args already interpolated). */
  config: TaskConfig;
  logger: Logger;
  /** Called after every change of the state (synchronously; keep it cheap). */
  onChange: () => void;
  /** The clock, for tests of the restart policy. */
  now?: () => number;
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
  private wakeFromDelay: (() => void) | undefined;
  private started = false;
  private runPromise: Promise<void> | undefined;
  private stopSent = false;

  constructor(opts: TaskRunnerOptions) {
    this.opts = opts;
    this.name = opts.task.name;
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.restarts = new RestartTracker(opts.alloc.groupSpec.restart);
    this.st = { state: 'pending', failed: false, restarts: 0, events: [] };
    this.event('received', 'task received by the agent');
  }

  /** A copy of the current state, safe to send. */
  state(): TaskState {
    return { ...this.st, events: this.st.events.map((e) => ({ ...e })) };
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
    this.runPromise ??= this.loop().catch((err: unknown) => {
      // Only a bug gets here: record it as a failure rather than leave the task pending forever.
      this.logger.error({ err }, 'task runner crashed');
      this.handle = undefined;
      this.event('driver-failure', `agent error: ${err instanceof Error ? err.message : String(err)}`);
      this.finish(true);
    });
    return this.runPromise;
  }

  /** Resolves when the task is dead for good. */
  async done(): Promise<void> {
    await (this.runPromise ?? this.run());
  }

  /**
   * Stops the task for good: killSignal to its process group, SIGKILL after killTimeout, no restart.
   * A task waiting to restart just stops waiting. Idempotent; resolves when the task is dead.
   */
  async kill(reason: string): Promise<void> {
    if (this.st.state !== 'dead' && this.killReason === undefined) {
      this.killReason = reason;
      this.wakeFromDelay?.();
      this.sendStop();
    }
    if (this.runPromise === undefined) {
      // Never started: nothing to stop.
      this.event('killed', `stopped before it started: ${reason}`);
      this.finish(false);
      this.runPromise = Promise.resolve();
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
  }

  private sendStop(): void {
    const handle = this.handle;
    if (handle === undefined || this.stopSent || this.killReason === undefined) return;
    this.stopSent = true;
    const { killSignal, killTimeout } = this.opts.task;
    this.event(
      'killing',
      `sending ${killSignal}${killSignal === 'SIGKILL' ? '' : ` (SIGKILL after ${formatDuration(killTimeout)})`}: ${this.killReason}`,
    );
    this.opts.onChange();
    void handle.stop(killSignal, killTimeout);
  }

  private async loop(): Promise<void> {
    const { driver, config, task } = this.opts;
    for (;;) {
      if (this.killReason !== undefined) {
        this.event('killed', `stopped while waiting to restart: ${this.killReason}`);
        this.finish(false);
        return;
      }
      if ('unavailable' in driver) {
        await this.failToStart(driver.unavailable);
        return;
      }
      let handle: TaskHandle;
      try {
        handle = await driver.start(config);
      } catch (err) {
        const message =
          err instanceof ExecError
            ? err.message
            : `driver ${task.driver} could not start the task: ${err instanceof Error ? err.message : String(err)}`;
        await this.failToStart(message);
        return;
      }
      this.handle = handle;
      this.started = true;
      this.st.state = 'running';
      this.st.pid = handle.pid;
      this.st.startedAt = handle.startedAt;
      delete this.st.finishedAt;
      this.event('started', `started (pid ${handle.pid})`);
      this.opts.onChange();
      // A kill that came while the driver was starting the process.
      this.sendStop();

      const result = await handle.wait();
      this.handle = undefined;
      this.recordExit(result);
      if (this.killReason !== undefined) {
        this.event('killed', `stopped (${describeExit(result)}): ${this.killReason}`, result);
        this.finish(false);
        return;
      }
      this.event('terminated', describeExit(result), result);
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
      this.event(
        'restarting',
        `restarting in ${formatDuration(decision.delayMs)}: ${describeExit(result)} (${count})`,
        result,
      );
      this.opts.onChange();
      await this.delay(decision.delayMs);
      if (this.killReason === undefined) this.st.restarts += 1;
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
