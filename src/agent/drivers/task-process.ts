/**
 * A task's process as the agent sees it, started here (launch.ts) or re-attached after an agent
 * restart (`reattach`): wait for its exit, signal it, stop it (the kill signal, then SIGKILL to all
 * of it), read its usage, and leave nothing of it behind once it exited.
 *
 * An exit code above 128 whose remainder is a signal number is reported as that signal: both
 * bwrap and the shell report a death by signal N as 128+N (so a program that calls exit(143) reads
 * as SIGTERM: documented).
 */
import type { ChildProcess } from 'node:child_process';
import type { Logger } from '../../core/log.ts';
import type { TaskCgroup } from '../cgroups/types.ts';
import { shipperEnded } from '../log-shipper.ts';
import { fromCode, readBwrapStatusSync, readStatus, type RecordedStatus } from './exit-status.ts';
import { childrenOf, groupTakenOver, isAlive, isSameProcess, killQuietly, nsPids, procStat } from './proc.ts';
import { processHandleState, type ProcessHandleData } from './handle-state.ts';
import type { DriverName, ExitResult, TaskHandle, TaskHandleState, TaskUsage } from './types.ts';

/** How long an exit waits for the log shipper to write the task's last output. */
const SHIPPER_DRAIN_MS = 5_000;
/** How often a re-attached task (not the agent's child) is checked for exit. */
export const RECOVER_POLL_MS = 250;

/**
 * A handle for a task an earlier agent process started: still running (its outer process exists,
 * is not a zombie and has the recorded start time) or already gone (the handle's wait() resolves at
 * once with the recorded status).
 */
export function reattach(
  driver: DriverName,
  state: ProcessHandleData,
  cgroup: TaskCgroup | undefined,
  logger: Logger,
): TaskProcess {
  const log = logger.child({ pid: state.pid, allocId: state.allocId, task: state.task });
  const exit = new Promise<RawExit>((resolve) => {
    if (!isSameProcess(state.pid, state.pidStartTime)) return resolve('gone');
    const timer = setInterval(() => {
      if (isSameProcess(state.pid, state.pidStartTime)) return;
      clearInterval(timer);
      resolve('gone');
    }, RECOVER_POLL_MS);
    // A daemon has other reasons to stay up; an agent shutting down must not wait for its tasks.
    timer.unref();
  });
  return new TaskProcess(driver, state, cgroup, log, exit, undefined);
}

export type RawExit = { code: number | null; signal: NodeJS.Signals | null } | 'gone';

export class TaskProcess implements TaskHandle {
  readonly pid: number;
  readonly startedAt: number;
  readonly state: TaskHandleState;
  /** What the process drivers know of it (the `data` of `state`). */
  readonly proc: ProcessHandleData;
  private readonly cgroup: TaskCgroup | undefined;
  private readonly logger: Logger;
  private readonly exited: Promise<ExitResult>;
  private readonly child: ChildProcess | undefined;
  private result: ExitResult | undefined;
  private stopping: Promise<ExitResult> | undefined;
  /** Set once the agent sent SIGKILL to all of the task: a missing status then means SIGKILL. */
  private hardKilled = false;

  constructor(
    driver: DriverName,
    state: ProcessHandleData,
    cgroup: TaskCgroup | undefined,
    logger: Logger,
    exit: Promise<RawExit>,
    child: ChildProcess | undefined,
  ) {
    this.pid = state.pid;
    this.startedAt = state.startedAt;
    this.proc = state;
    this.state = processHandleState(driver, state);
    this.cgroup = cgroup;
    this.logger = logger;
    this.child = child;
    this.exited = exit.then(
      (raw) => this.finish(raw),
      // Not reached (the promise never rejects); kept so that wait() can never reject.
      () => this.finish('gone'),
    );
  }

  wait(): Promise<ExitResult> {
    return this.exited;
  }

  signal(signal: NodeJS.Signals): void {
    if (this.result === undefined) void this.deliver(signal);
  }

  stop(signal: NodeJS.Signals, timeoutMs: number): Promise<ExitResult> {
    if (this.result !== undefined) return Promise.resolve(this.result);
    this.stopping ??= this.stopAll(signal, timeoutMs);
    return this.stopping;
  }

  async usage(): Promise<TaskUsage | undefined> {
    if (this.cgroup === undefined || this.result !== undefined) return undefined;
    try {
      const u = await this.cgroup.usage();
      return { cpuNanos: u.cpuNanos, memoryBytes: u.memoryBytes, pids: u.pids };
    } catch (err) {
      this.logger.debug({ err }, 'could not read the task cgroup usage');
      return undefined;
    }
  }

  private async stopAll(signal: NodeJS.Signals, timeoutMs: number): Promise<ExitResult> {
    if (signal === 'SIGKILL') {
      await this.killHard();
      return this.exited;
    }
    await this.deliver(signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    const first = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (first !== undefined) return first;
    this.logger.info({ signal, timeoutMs }, 'task did not stop in time: killing all of it');
    await this.killHard();
    return this.exited;
  }

  /** The signal to the task's process group. */
  private async deliver(signal: NodeJS.Signals): Promise<void> {
    if (this.proc.wrapper === 'sh') {
      this.killGroup(this.proc.pgid, signal);
      return;
    }
    // bwrap: the sandbox's init leads a session and process group of its own (--new-session) that
    // the task is in, apart from bwrap's outer process. As a pid namespace's init, it ignores
    // signals it has no handler for (only SIGKILL gets through, and takes the namespace with it).
    const deadline = Date.now() + 2_000;
    for (;;) {
      if (this.result !== undefined) return;
      const init = this.sandboxInit();
      if (init !== undefined && childrenOf(init).length > 0) {
        this.killGroup(procStat(init)?.pgrp ?? init, signal);
        return;
      }
      // Just started (the task is not forked yet) or just ended (nothing to signal).
      if (Date.now() > deadline || !isSameProcess(this.proc.pid, this.proc.pidStartTime)) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** SIGKILL to everything of the task: its pid namespace (via its init), its cgroup, its group. */
  private async killHard(): Promise<void> {
    this.hardKilled = true;
    if (this.proc.wrapper === 'bwrap') {
      const init = this.sandboxInit();
      if (init !== undefined) killQuietly(init, 'SIGKILL');
      else this.killGroup(this.proc.pgid, 'SIGKILL');
    } else {
      this.killGroup(this.proc.pgid, 'SIGKILL');
    }
    if (this.cgroup !== undefined)
      await this.cgroup.killAll().catch((err: unknown) => {
        this.logger.warn({ err }, 'could not kill the processes of the task cgroup');
      });
  }

  /** The namespace's init (bwrap's reaper, pid 1 inside): the only child of the outer bwrap. */
  private sandboxInit(): number | undefined {
    if (!isSameProcess(this.proc.pid, this.proc.pidStartTime)) {
      // The outer process is gone (killed): its init, if still there, is named in the status file.
      const init = readBwrapStatusSync(this.proc.statusPath).childPid;
      return init !== undefined && isAlive(init) && nsPids(init).at(-1) === 1 ? init : undefined;
    }
    return childrenOf(this.proc.pid).find((p) => nsPids(p).at(-1) === 1);
  }

  private killGroup(pgid: number, signal: NodeJS.Signals): void {
    try {
      process.kill(-pgid, signal);
    } catch (err) {
      // ESRCH: nothing is left in the group, which is the goal.
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH')
        this.logger.warn({ err, signal }, 'could not signal the task process group');
    }
  }

  private async finish(raw: RawExit): Promise<ExitResult> {
    const s = this.proc;
    const status = await readStatus(s);
    // Whatever the task left behind goes with it.
    if (this.cgroup !== undefined) {
      await this.cgroup.killAll().catch((err: unknown) => {
        this.logger.warn({ err }, 'could not kill what is left in the task cgroup');
      });
    } else if (s.wrapper === 'bwrap') {
      const init = status.childPid;
      // Only when the outer bwrap was killed: otherwise it waited for init.
      if (init !== undefined && isAlive(init) && nsPids(init).at(-1) === 1) killQuietly(init, 'SIGKILL');
    } else if (raw !== 'gone' || !groupTakenOver(s)) {
      this.killGroup(s.pgid, 'SIGKILL');
    }

    let result = this.interpret(raw, status);
    if (this.cgroup !== undefined) {
      try {
        const usage = await this.cgroup.usage();
        if (usage.oomKills > (s.oomKillsBefore ?? 0)) {
          result = { ...result, oomKilled: true, memoryLimitMiB: s.memoryLimitMiB };
          delete result.detail;
        }
      } catch (err) {
        this.logger.warn({ err }, 'could not read the task cgroup after exit');
      }
      await this.cgroup.destroy().catch((err: unknown) => {
        this.logger.warn({ err, cgroup: this.cgroup?.name }, 'could not remove the task cgroup');
      });
    }
    // Whatever held the pipes is gone now: the shipper writes what is left in them and ends.
    if (s.shipperPid !== undefined && !(await shipperEnded(s.shipperPid, SHIPPER_DRAIN_MS)))
      this.logger.warn({ shipperPid: s.shipperPid }, 'the log shipper is still writing the task output');
    this.result = result;
    this.child?.removeAllListeners();
    return result;
  }

  private interpret(raw: RawExit, status: RecordedStatus): ExitResult {
    const s = this.proc;
    if (raw !== 'gone') {
      if (raw.signal !== null) return { signal: raw.signal };
      const code = raw.code ?? 0;
      if (s.wrapper === 'bwrap' && status.childPid === undefined)
        return {
          exitCode: code,
          detail: `the task's sandbox could not be set up (exit code ${code}; see stderr.log)`,
        };
      if (s.wrapper === 'sh' && code === 125 && status.exitCode === undefined)
        return { exitCode: code, detail: `the task could not join its cgroup (see stderr.log)` };
      return fromCode(code);
    }
    if (status.exitCode !== undefined) return fromCode(status.exitCode);
    if (this.hardKilled) return { signal: 'SIGKILL' };
    return { detail: 'exited while the agent was down; exit status unknown' };
  }
}
