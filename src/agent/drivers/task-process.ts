/**
 * A task's process as the agent sees it, started here or re-attached after an agent restart.
 *
 * The agent spawns a wrapper in its own session and process group (detached), with stdout and stderr
 * going straight into the log files (descriptors, not pipes: the agent is not in the data path, and
 * a task outlives the agent):
 *
 *   bwrap   `bwrap … -- setpriv … -- CMD`. bwrap's outer process stays outside the sandbox and
 *           writes `{ "child-pid": N }` then `{ "exit-code": N }` (128+signal when killed) to the
 *           status file, also when the agent is gone. With cgroups, bwrap reports the sandbox's
 *           init on an info pipe and waits on a block pipe once its mounts are set up; meanwhile
 *           the agent prepares the cgroup and moves the init into it, then lets bwrap go: the
 *           task is forked inside the cgroup, and the preparations overlap bwrap's set-up. The task is in the init's session and process group, apart
 *           from the outer process; when it exits, the init exits and the kernel kills whatever is
 *           left in the pid namespace.
 *   sh      `sh -c 'echo $$ > cgroup.procs…; trap : HUP INT QUIT TERM USR1 USR2 ALRM; "$@";
 *           echo $? > STATUS' sh [setpriv …] CMD ARGS…` when there is no sandbox. The shell shares
 *           the task's process group: the traps keep it alive through a kill signal sent to the
 *           group (it runs the trap after the task exits) while the task itself gets the signal
 *           with its default action (caught signals are reset on exec; ignored ones would not be).
 *
 * An exit code above 128 whose remainder is a signal number is reported as that signal: both
 * bwrap and the shell report a death by signal N as 128+N (so a program that calls exit(143) reads
 * as SIGTERM: documented).
 */
import { InvalidError, UnavailableError } from '../../core/errors.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { open, readFile, rm } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import type { Logger } from '../../core/log.ts';
import { writeControl, writeControlSync } from '../cgroups/index.ts';
import type { TaskCgroup } from '../cgroups/types.ts';
import { describeExecFailure } from './process.ts';
import type { DriverName, ExitResult, TaskConfig, TaskHandle, TaskHandleState, TaskUsage } from './types.ts';

/** Where the wrapper records the exit status: in logs/, which the task can not write. */
export function statusPathFor(config: Pick<TaskConfig, 'stdoutPath'>): string {
  return join(dirname(config.stdoutPath), '.exit-status');
}

/** How often a re-attached task (not the agent's child) is checked for exit. */
export const RECOVER_POLL_MS = 250;

const TRAPPED = 'HUP INT QUIT TERM USR1 USR2 ALRM';

/** Descriptors of bwrap: its JSON status (a file), its info and block pipes (for joining the cgroup). */
export const BWRAP_FDS = { status: 3, info: 4, block: 5 } as const;

/** Joins the cgroups, runs the task as a child and records its exit code in `$2`. */
const SH_WRAPPER = `n=$1; st=$2; shift 2; while [ "$n" -gt 0 ]; do echo $$ > "$1" || { echo "unum: could not join the task cgroup ($1)" >&2; exit 125; }; shift; n=$((n-1)); done; trap : ${TRAPPED}; "$@"; s=$?; echo "$s" > "$st"; exit "$s"`;

/** What the task gets once it is ready to run. */
export interface Prepared {
  cgroup?: TaskCgroup;
  /**
   * Reads the OOM kills the cgroup had counted before (it may be a leftover, re-opened). Called
   * once the task is let go: off the start-up path (a task can not run out of memory within its
   * first instants).
   */
  oomKillsBefore?: () => Promise<number>;
}

export interface LaunchSpec {
  driver: DriverName;
  config: TaskConfig;
  wrapper: 'bwrap' | 'sh';
  /**
   * bwrap: its path and arguments, ending with the task's command (with `--info-fd` and
   * `--block-fd` on BWRAP_FDS when `gate` is given); sh: the command to run.
   */
  argv: readonly string[];
  statusPath: string;
  /** Ready before the spawn (the sh wrapper joins `cgroup` itself). */
  prepared?: Prepared;
  /**
   * bwrap only: preparations started just before the spawn (the cgroup, the task's directories,
   * the program check), so that they run on the thread pool while this thread forks and bwrap
   * sets up the sandbox (and do not queue before the opening of the log files). bwrap waits for
   * them; once they resolve, the sandbox joins the cgroup and the task starts. When they reject,
   * the sandbox is killed before the task ever ran, and launch rejects with the same error.
   */
  gate?: () => Promise<Prepared>;
  uid?: number;
  gid?: number;
  logger: Logger;
}

/**
 * Spawns the wrapper (and, through `gate`, puts the sandbox into the task's cgroup before the task
 * starts). Rejects with UnavailableError when the wrapper can not be started or the cgroup not
 * joined (a problem of the node), or with the gate's error.
 */
export async function launch(spec: LaunchSpec): Promise<TaskProcess> {
  const { config } = spec;
  const bwrap = spec.wrapper === 'bwrap';
  const gated = bwrap && spec.gate !== undefined;
  const procs = spec.prepared?.cgroup?.procsFiles ?? [];
  const [program, ...args] = bwrap
    ? spec.argv
    : ['/bin/sh', '-c', SH_WRAPPER, 'sh', String(procs.length), spec.statusPath, ...procs, ...spec.argv];
  if (program === undefined) throw new InvalidError('nothing to run: the task has no command');

  const files = await Promise.all([
    open(config.stdoutPath, 'a').catch(() => undefined),
    open(config.stderrPath, 'a').catch(() => undefined),
    bwrap ? open(spec.statusPath, 'w').catch(() => undefined) : rm(spec.statusPath, { force: true }),
  ]);
  const [stdout, stderr, status] = files;
  let child: ChildProcess;
  let exit: Promise<RawExit>;
  let gate: Promise<Prepared> | undefined;
  let pidStartTime = 0;
  try {
    if (stdout === undefined) throw new UnavailableError(`could not open ${config.stdoutPath}`);
    if (stderr === undefined) throw new UnavailableError(`could not open ${config.stderrPath}`);
    if (bwrap && status === undefined) throw new UnavailableError(`could not open ${spec.statusPath}`);
    const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', stdout.fd, stderr.fd];
    if (status !== undefined) stdio[BWRAP_FDS.status] = status.fd;
    if (gated) {
      stdio[BWRAP_FDS.info] = 'pipe';
      stdio[BWRAP_FDS.block] = 'pipe';
    }
    // The preparations go to the thread pool now, to run while this thread forks (spawn blocks it).
    gate = spec.gate?.();
    gate?.catch(() => undefined);
    child = spawn(program, args, { cwd: config.cwd, env: config.env, stdio, detached: true });
    // Listeners go on before anything is awaited: a quick task may exit during the next await, and a
    // ChildProcess 'error' without a listener would crash the agent.
    const spawnError = new Promise<NodeJS.ErrnoException>((resolve) => child.on('error', resolve));
    exit = new Promise<RawExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    if (child.pid === undefined) {
      const err = await spawnError;
      throw new UnavailableError(describeExecFailure(program, err), { cause: err });
    }
    // Now, before anything is awaited: the event loop reaps a task that exits at once, and its start
    // time (what tells it from a later process with its pid) would be lost with it.
    pidStartTime = procStat(child.pid)?.startTime ?? 0;
  } finally {
    // The child holds its own copies of the descriptors now.
    await Promise.all(files.map((f) => (typeof f === 'object' ? f.close() : undefined)));
  }
  const pid = child.pid;
  const prepared =
    gated && gate !== undefined ? await release(child, gate, spec.logger) : (spec.prepared ?? {});
  const state: TaskHandleState = {
    version: 2,
    driver: spec.driver,
    allocId: config.allocId,
    task: config.task,
    wrapper: spec.wrapper,
    pid,
    pgid: pid,
    pidStartTime,
    startedAt: Date.now(),
    stdoutPath: config.stdoutPath,
    stderrPath: config.stderrPath,
    statusPath: spec.statusPath,
    memoryLimitMiB: config.resources.memory,
  };
  if (prepared.cgroup !== undefined) state.cgroup = prepared.cgroup.name;
  if (prepared.oomKillsBefore !== undefined) state.oomKillsBefore = await prepared.oomKillsBefore();
  if (spec.uid !== undefined) state.uid = spec.uid;
  if (spec.gid !== undefined) state.gid = spec.gid;
  return new TaskProcess(state, prepared.cgroup, spec.logger.child({ pid }), exit, child);
}

/**
 * Lets a gated sandbox go: waits for bwrap to name its init (info pipe) and for the preparations,
 * moves the init into the task cgroup, then unblocks bwrap, which forks the task inside it.
 * bwrap's outer process follows: a service manager stopping the agent's own cgroup must not take
 * it (and the exit status it records) along. On failure the sandbox is
 * killed before the task ever ran (the init first: closing the block pipe alone would let it go).
 */
async function release(child: ChildProcess, gate: Promise<Prepared>, logger: Logger): Promise<Prepared> {
  const stdio = child.stdio as unknown as (Readable | Writable | null)[];
  const info = stdio[BWRAP_FDS.info] as Readable;
  const block = stdio[BWRAP_FDS.block] as Writable;
  // A sandbox that failed to set up closes its pipes: writes then fail, and its exit says why.
  block.on('error', () => undefined);
  let text = '';
  info.setEncoding('utf8');
  info.on('data', (chunk: string) => (text += chunk));
  const named = new Promise<void>((resolve) => {
    info.once('close', resolve);
    info.once('error', () => resolve());
  });
  const [ready] = await Promise.allSettled([gate, named]);
  const init = Number((/"child-pid":\s*(\d+)/.exec(text) ?? [])[1]);
  const outer = child.pid ?? 0;
  const join = (cgroup: TaskCgroup, pid: number) =>
    joinCgroup(cgroup, pid, logger).catch((err: unknown) => {
      throw new UnavailableError(
        `could not put the task into its cgroup: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    });
  try {
    if (ready.status === 'rejected') throw ready.reason;
    const cgroup = ready.value.cgroup;
    // No init: bwrap failed before the sandbox existed; its exit reports why.
    if (cgroup !== undefined && init > 0) {
      // The init forks the task: it joins first. The outer process forks nothing more: it follows
      // once the task runs, and only to be out of the agent's cgroup (best effort).
      await join(cgroup, init);
      block.end('go');
      await join(cgroup, outer).catch(() => undefined);
    } else {
      block.end('go');
    }
    return ready.value;
  } catch (err) {
    for (const p of [init, outer]) if (Number.isInteger(p) && p > 0) killQuietly(p, 'SIGKILL');
    block.destroy();
    throw err;
  }
}

/** A move into a cgroup slower than this makes later moves go through the thread pool. */
export const SLOW_JOIN_MS = 2;
let joinSynchronously = true;

/**
 * Moves `pid` into the task cgroup. Synchronously while that is quick: a move usually takes
 * microseconds, and a trip through the thread pool and back costs the start of the task more than
 * the move itself. On kernels where a move waits for an RCU grace period (cgroup v1 and v2 without
 * `favordynmods` on some kernels: milliseconds; README.md, "Start-up cost"), the first slow move
 * switches this process to asynchronous moves, which do not stall the agent's event loop.
 */
export async function joinCgroup(
  cgroup: Pick<TaskCgroup, 'procsFiles'>,
  pid: number,
  logger: Logger,
  slowMs = SLOW_JOIN_MS,
): Promise<'sync' | 'async'> {
  if (!joinSynchronously) {
    await Promise.all(cgroup.procsFiles.map((file) => writeControl(file, `${pid}\n`)));
    return 'async';
  }
  const started = performance.now();
  for (const file of cgroup.procsFiles) writeControlSync(file, `${pid}\n`);
  const ms = performance.now() - started;
  if (ms > slowMs) {
    joinSynchronously = false;
    logger.info(
      { ms: Math.round(ms * 10) / 10 },
      'moving a process into a cgroup is slow on this kernel: done off the event loop from now on (mounting the cgroup hierarchy with favordynmods makes it quick)',
    );
  }
  return 'sync';
}

/**
 * A handle for a task an earlier agent process started: still running (its outer process exists,
 * is not a zombie and has the recorded start time) or already gone (the handle's wait() resolves at
 * once with the recorded status).
 */
export function reattach(
  state: TaskHandleState,
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
  return new TaskProcess(state, cgroup, log, exit, undefined);
}

type RawExit = { code: number | null; signal: NodeJS.Signals | null } | 'gone';

export class TaskProcess implements TaskHandle {
  readonly pid: number;
  readonly startedAt: number;
  readonly state: TaskHandleState;
  private readonly cgroup: TaskCgroup | undefined;
  private readonly logger: Logger;
  private readonly exited: Promise<ExitResult>;
  private readonly child: ChildProcess | undefined;
  private result: ExitResult | undefined;
  private stopping: Promise<ExitResult> | undefined;
  /** Set once the agent sent SIGKILL to all of the task: a missing status then means SIGKILL. */
  private hardKilled = false;

  constructor(
    state: TaskHandleState,
    cgroup: TaskCgroup | undefined,
    logger: Logger,
    exit: Promise<RawExit>,
    child: ChildProcess | undefined,
  ) {
    this.pid = state.pid;
    this.startedAt = state.startedAt;
    this.state = state;
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
    if (this.state.wrapper === 'sh') {
      this.killGroup(this.state.pgid, signal);
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
      if (Date.now() > deadline || !isSameProcess(this.state.pid, this.state.pidStartTime)) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** SIGKILL to everything of the task: its pid namespace (via its init), its cgroup, its group. */
  private async killHard(): Promise<void> {
    this.hardKilled = true;
    if (this.state.wrapper === 'bwrap') {
      const init = this.sandboxInit();
      if (init !== undefined) killQuietly(init, 'SIGKILL');
      else this.killGroup(this.state.pgid, 'SIGKILL');
    } else {
      this.killGroup(this.state.pgid, 'SIGKILL');
    }
    if (this.cgroup !== undefined)
      await this.cgroup.killAll().catch((err: unknown) => {
        this.logger.warn({ err }, 'could not kill the processes of the task cgroup');
      });
  }

  /** The namespace's init (bwrap's reaper, pid 1 inside): the only child of the outer bwrap. */
  private sandboxInit(): number | undefined {
    if (!isSameProcess(this.state.pid, this.state.pidStartTime)) {
      // The outer process is gone (killed): its init, if still there, is named in the status file.
      const init = readBwrapStatusSync(this.state.statusPath).childPid;
      return init !== undefined && isAlive(init) && nsPids(init).at(-1) === 1 ? init : undefined;
    }
    return childrenOf(this.state.pid).find((p) => nsPids(p).at(-1) === 1);
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
    const s = this.state;
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
    this.result = result;
    this.child?.removeAllListeners();
    return result;
  }

  private interpret(raw: RawExit, status: RecordedStatus): ExitResult {
    const s = this.state;
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

interface RecordedStatus {
  /** bwrap: the host pid of the sandbox's init. */
  childPid?: number;
  exitCode?: number;
}

async function readStatus(state: TaskHandleState): Promise<RecordedStatus> {
  const text = await readFile(state.statusPath, 'utf8').catch(() => '');
  return state.wrapper === 'bwrap' ? parseBwrapStatus(text) : parseShStatus(text);
}

function readBwrapStatusSync(path: string): RecordedStatus {
  try {
    return parseBwrapStatus(readFileSync(path, 'utf8'));
  } catch {
    return {};
  }
}

/** bwrap writes one JSON document per line: `{ "child-pid": N, … }` then `{ "exit-code": N }`. */
export function parseBwrapStatus(text: string): RecordedStatus {
  const out: RecordedStatus = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const doc = JSON.parse(line) as Record<string, unknown>;
      if (Number.isInteger(doc['child-pid'])) out.childPid = doc['child-pid'] as number;
      if (Number.isInteger(doc['exit-code'])) out.exitCode = doc['exit-code'] as number;
    } catch {
      // a line being written
    }
  }
  return out;
}

function parseShStatus(text: string): RecordedStatus {
  const t = text.trim();
  return /^\d+$/.test(t) ? { exitCode: Number(t) } : {};
}

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

/** 128+N → killed by signal N; anything else is an exit code. */
export function fromCode(code: number): ExitResult {
  const signal = code > 128 ? SIGNAL_NAMES.get(code - 128) : undefined;
  return signal !== undefined ? { signal } : { exitCode: code };
}

export interface ProcStat {
  state: string;
  ppid: number;
  pgrp: number;
  /** Field 22: clock ticks after boot. */
  startTime: number;
}

/** /proc/<pid>/stat, or undefined when there is no such process (or no /proc). */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: f[0] ?? '?', ppid: Number(f[1]), pgrp: Number(f[2]), startTime: Number(f[19]) };
}

/**
 * After an agent restart, whether the task's process group number now belongs to someone else: its
 * leader (the wrapper, pid = pgid) is gone and the number was handed to a new process. Killing the
 * group then would kill a stranger's processes. (While any member of our group lives, the kernel
 * does not reuse the number.)
 */
export function groupTakenOver(state: { pid: number; pgid: number; pidStartTime: number }): boolean {
  const leader = procStat(state.pgid);
  if (leader === undefined) return false;
  return state.pgid !== state.pid || leader.startTime !== state.pidStartTime;
}

/** Alive (not a zombie) and, where /proc tells, the same process (same start time). */
export function isSameProcess(pid: number, startTime: number): boolean {
  const st = procStat(pid);
  if (st === undefined) return process.platform !== 'linux' && isAlive(pid);
  return st.state !== 'Z' && st.state !== 'X' && (startTime === 0 || st.startTime === startTime);
}

function isAlive(pid: number): boolean {
  const st = procStat(pid);
  if (st !== undefined) return st.state !== 'Z' && st.state !== 'X';
  try {
    process.kill(pid, 0);
    return process.platform !== 'linux';
  } catch {
    return false;
  }
}

/** Children of a process (/proc/<pid>/task/<pid>/children, else a scan of /proc). */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter((x) => x !== '')
      .map(Number);
  } catch {
    // Kernels without CONFIG_PROC_CHILDREN.
  }
  const out: number[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) if (/^\d+$/.test(e) && procStat(Number(e))?.ppid === pid) out.push(Number(e));
  return out;
}

/** The pid of a process in each pid namespace it is in, outermost first (`NSpid:`). */
export function nsPids(pid: number): number[] {
  try {
    const m = /^NSpid:\s+(.+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] === undefined ? [] : m[1].trim().split(/\s+/).map(Number);
  } catch {
    return [];
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
