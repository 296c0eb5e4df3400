/**
 * Starting a task's process (task-process.ts is the handle that follows it). The agent spawns a wrapper in its own session and process group (detached), with stdout and stderr
 * going into pipes read by the task's log shipper (../log-shipper.ts), which writes the log files
 * within their limits: the agent is not in the data path, and a task outlives the agent:
 *
 *   bwrap   `bwrap … -- setpriv … -- CMD`. bwrap's outer process stays outside the sandbox and
 *           writes `{ "child-pid": N }` then `{ "exit-code": N }` (128+signal when killed) to the
 *           status file, also when the agent is gone. With cgroups, bwrap reports the sandbox's
 *           init on an info pipe and waits on a block pipe once its mounts are set up; meanwhile
 *           the agent prepares the cgroup and moves the init into it, then lets bwrap go: the
 *           task is forked inside the cgroup, and the preparations overlap bwrap's set-up. The task is in the init's session and process group, apart
 *           from the outer process; when it exits, the init exits and the kernel kills whatever is
 *           left in the pid namespace. The seccomp filter reaches bwrap as a descriptor of its own
 *           (`--seccomp`), opened just before the spawn and closed just after.
 *   sh      `sh -c 'echo $$ > cgroup.procs…; trap : HUP INT QUIT TERM USR1 USR2 ALRM; "$@";
 *           echo $? > STATUS' sh [setpriv …] CMD ARGS…` when there is no sandbox. The shell shares
 *           the task's process group: the traps keep it alive through a kill signal sent to the
 *           group (it runs the trap after the task exits) while the task itself gets the signal
 *           with its default action (caught signals are reset on exec; ignored ones would not be).
 *
 * How their exit is read back: exit-status.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, readFileSync, readdirSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { InvalidError, UnavailableError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { writeControl, writeControlSync } from '../cgroups/index.ts';
import type { TaskCgroup } from '../cgroups/types.ts';
import { openLogPipes } from '../log-shipper.ts';
import { describeExecFailure } from './process.ts';
import { killQuietly, procStat } from './proc.ts';
import { TaskProcess, type RawExit } from './task-process.ts';
import type { ProcessHandleData } from './handle-state.ts';
import type { DriverName, TaskConfig } from './types.ts';

/** Where the wrapper records the exit status: in logs/, which the task can not write. */
export function statusPathFor(config: Pick<TaskConfig, 'stdoutPath'>): string {
  return join(dirname(config.stdoutPath), '.exit-status');
}

const TRAPPED = 'HUP INT QUIT TERM USR1 USR2 ALRM';

/**
 * Descriptors of bwrap: its JSON status (a file), its info and block pipes (for joining the cgroup),
 * the seccomp program it installs (a file of its own, read to the end).
 */
export const BWRAP_FDS = { status: 3, info: 4, block: 5, seccomp: 6 } as const;

/** Open files (RLIMIT_NOFILE, soft and hard) of a task unless the operator sets another number. */
export const DEFAULT_TASK_OPEN_FILES = 4096;

/**
 * Sets the open-file limit to `$1`, soft and hard. Where the hard limit can not be raised (an agent
 * that is not root, a root task without CAP_SYS_RESOURCE), the soft one goes as high as the hard one.
 */
const ULIMIT = `ulimit -n "$of" 2>/dev/null || ulimit -S -n "$(ulimit -H -n)"`;

/** Joins the cgroups, sets the open-file limit, runs the task as a child and records its exit code in `$3`. */
const SH_WRAPPER = `of=$1; n=$2; st=$3; shift 3; ${ULIMIT}; while [ "$n" -gt 0 ]; do echo $$ > "$1" || { echo "unum: could not join the task cgroup ($1)" >&2; exit 125; }; shift; n=$((n-1)); done; trap : ${TRAPPED}; "$@"; s=$?; echo "$s" > "$st"; exit "$s"`;

/**
 * The first program in a sandbox (bwrap runs it after the gate, as root, before the uid drop):
 * checks that it is in its cgroup `$1` (when there is one), sets the open-file limit `$2` and execs
 * the rest. bwrap's --block-fd goes on at EOF as well as at the "go" byte: when the agent dies
 * before letting the sandbox go, its end of the block pipe closes and bwrap carries on. Without
 * this check the task would then run in the agent's cgroup, without limits and unknown to the next
 * agent process; with it, a sandbox that was not moved into its cgroup ends before the task starts.
 */
const SANDBOX_ENTRY = `c=$1; of=$2; shift 2; if [ -n "$c" ]; then ok=; while IFS= read -r l; do case $l in */"$c") ok=1;; esac; done < /proc/self/cgroup; [ -n "$ok" ] || { echo "unum: the task was not started: its sandbox was never moved into its cgroup (the agent went away while starting it)" >&2; exit 125; }; fi; ${ULIMIT}; exec "$@"`;

/**
 * The sandbox's entry before the task's own command line (with the drop): see SANDBOX_ENTRY.
 * `cgroup` is the task cgroup's name, when the task has one.
 */
export function sandboxEntryArgs(cgroup: string | undefined, openFiles: number): string[] {
  return ['/bin/sh', '-c', SANDBOX_ENTRY, 'sh', cgroup ?? '', String(openFiles)];
}

let inheritedClosed = false;

/**
 * Closes, once per process, the descriptors above stderr that this process inherited without
 * close-on-exec (what the shell, service manager or test runner that started it left open): a
 * child gets every descriptor that is not close-on-exec, and Node has no way to set the flag. What
 * Node, libuv and SQLite open is close-on-exec already, so only inherited ones are touched. Returns
 * the descriptors closed.
 */
export function closeInheritedDescriptors(): number[] {
  if (inheritedClosed) return [];
  inheritedClosed = true;
  let names: string[];
  try {
    names = readdirSync('/proc/self/fd');
  } catch {
    return [];
  }
  const channel = Number(process.env['NODE_CHANNEL_FD'] ?? -1);
  const closed: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || fd < 3 || fd === channel) continue;
    let flags: string | undefined;
    try {
      flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
    } catch {
      continue; // gone (the directory listing's own descriptor)
    }
    // O_CLOEXEC, as fdinfo shows it.
    if (flags === undefined || (parseInt(flags, 8) & 0o2000000) !== 0) continue;
    try {
      closeSync(fd);
      closed.push(fd);
    } catch {
      // closed meanwhile
    }
  }
  return closed;
}

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
  /**
   * bwrap only, with `--seccomp` on BWRAP_FDS.seccomp in argv: opens a new descriptor of the seccomp
   * program (at its start: bwrap reads it to the end), handed to bwrap and closed here after the spawn.
   */
  seccomp?: () => number;
  uid?: number;
  gid?: number;
  /** sh only: the task's open-file limit (default DEFAULT_TASK_OPEN_FILES); bwrap: see sandboxEntryArgs. */
  openFiles?: number;
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
  const wrapped = bwrap
    ? spec.argv
    : [
        '/bin/sh',
        '-c',
        SH_WRAPPER,
        'sh',
        String(spec.openFiles ?? DEFAULT_TASK_OPEN_FILES),
        String(procs.length),
        spec.statusPath,
        ...procs,
        ...spec.argv,
      ];
  // The allocation's network namespace is joined first: nsenter execs the wrapper in it.
  const net = config.network;
  const [program, ...args] =
    net === undefined ? wrapped : [net.nsenter, `--net=${net.netnsPath}`, '--', ...wrapped];
  if (program === undefined) throw new InvalidError('nothing to run: the task has no command');
  closeInheritedDescriptors();

  const [pipes, status] = await Promise.all([
    openLogPipes(config),
    bwrap ? open(spec.statusPath, 'w').catch(() => undefined) : rm(spec.statusPath, { force: true }),
  ]);
  let child: ChildProcess;
  let exit: Promise<RawExit>;
  let gate: Promise<Prepared> | undefined;
  let pidStartTime = 0;
  let shipperPid = 0;
  let seccompFd: number | undefined;
  try {
    if (bwrap && status === undefined) throw new UnavailableError(`could not open ${spec.statusPath}`);
    const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', pipes.stdout, pipes.stderr];
    if (status !== undefined) stdio[BWRAP_FDS.status] = status.fd;
    if (gated) {
      stdio[BWRAP_FDS.info] = 'pipe';
      stdio[BWRAP_FDS.block] = 'pipe';
    }
    if (bwrap && spec.seccomp !== undefined) {
      try {
        seccompFd = spec.seccomp();
      } catch (err) {
        throw new UnavailableError(
          `could not open the seccomp filter for the sandbox: ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        );
      }
      stdio[BWRAP_FDS.seccomp] = seccompFd;
    }
    // spawn skips the holes of a sparse array, which would move the descriptors after them down.
    for (let i = 0; i < stdio.length; i++) stdio[i] ??= 'ignore';
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
  } catch (err) {
    pipes.close();
    throw err;
  } finally {
    if (seccompFd !== undefined) closeSync(seccompFd);
    await status?.close();
  }
  const pid = child.pid;
  let prepared: Prepared;
  try {
    prepared = gated && gate !== undefined ? await release(child, gate, spec.logger) : (spec.prepared ?? {});
    // Once the task is on its way: the spawn blocks this thread for a moment, and the pipes hold
    // what the task writes until the shipper reads them.
    shipperPid = pipes.ship(config.logLimits);
  } catch (err) {
    killQuietly(-pid, 'SIGKILL');
    throw err;
  } finally {
    // The task and the shipper hold their own copies of the descriptors now.
    pipes.close();
  }
  const state: ProcessHandleData = {
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
    shipperPid,
  };
  if (prepared.cgroup !== undefined) state.cgroup = prepared.cgroup.name;
  if (prepared.oomKillsBefore !== undefined) state.oomKillsBefore = await prepared.oomKillsBefore();
  if (spec.uid !== undefined) state.uid = spec.uid;
  if (spec.gid !== undefined) state.gid = spec.gid;
  return new TaskProcess(spec.driver, state, prepared.cgroup, spec.logger.child({ pid }), exit, child);
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
