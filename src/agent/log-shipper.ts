/**
 * The log shipper: a small process per task process, beside it (not the agent), that reads the
 * task's stdout and stderr from pipes and writes them into the log files, rotating them so that no
 * file ever passes its size. The cap holds at every write, whatever the write rate, and whether the
 * agent runs or not (see README.md, "Logs").
 *
 *   task ──stdout──▶ pipe ──▶ shipper (sh) ──head─▶ logs/stdout.log  (rotated by rename at the size)
 *        ──stderr──▶ pipe ──▶     "       ──head─▶ logs/stderr.log
 *
 * The pipes are FIFOs (a real pipe, not a socket: a task may open /dev/stdout), made ahead of time in
 * a directory of the agent's and unlinked as soon as the agent holds them. The shipper gets each pipe read-write
 * and reopens it read-only before letting go of the read-write descriptor: at every moment a
 * reader holds the pipe, so a task that writes and exits at once loses nothing, and the shipper
 * sees the end of the stream once every process of the task is gone. It runs detached (its own
 * session) and is not in the task's process group or cgroup: stopping the task does not stop it
 * before it has written the task's last words, and it ends by itself at the end of the stream.
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UnavailableError } from '../core/errors.ts';
import { DEFAULT_LOG_LIMITS, type LogLimits } from './logs.ts';

/**
 * One stream: `$1` the file, `$2` the size of a file, `$3` the rotated files kept; standard input
 * the pipe. `head -c`, unbuffered (stdbuf -o0: it writes what it reads, at once, so that followers
 * see each line as it comes, and it never reads past its count), copies at most what fits into the current file, then the files are shifted by rename and the base record rewritten (see logs.ts, "base").
 * Without stdbuf (a minimal image) plain `head` is used: the cap holds, followers see output later.
 * The base record is written again at the start, so that a shipper killed mid-rotation leaves no
 * record that readers would wait on. A failed write (a full disk) is retried after a second: what
 * `head` had read is lost, later output waits in the pipe, and the shipper never gives up on its
 * pipe, or the task would die of SIGPIPE.
 */
const SHIP = `ship() {
p=$1; per=$2; keep=$3; bf="\${p%/*}/.\${p##*/}.base"; b=0
[ -r "$bf" ] && read -r b _ < "$bf"
case $b in ''|*[!0-9]*) b=0;; esac
: >> "$p"
s=$(stat -c %s -- "$p") || s=0
printf '%s %s\\n' "$b" "$(stat -c %i -- "$p")" > "$bf"
if command -v stdbuf >/dev/null 2>&1; then h='stdbuf -o0 head'; else h=head; fi
while :; do
  if [ "$s" -lt "$per" ]; then
    $h -c $((per - s)) >> "$p" || { sleep 1; s=$(stat -c %s -- "$p") || s=0; continue; }
    s=$(stat -c %s -- "$p") || s=0
    [ "$s" -ge "$per" ] || return 0
  fi
  printf '%s -\\n' "$b" > "$bf"
  if [ "$keep" -gt 0 ]; then
    k=$keep; while [ "$k" -gt 1 ]; do [ ! -e "$p.$((k-1))" ] || mv -f -- "$p.$((k-1))" "$p.$k"; k=$((k-1)); done
    mv -f -- "$p" "$p.1"
  fi
  : > "$p"
  b=$((b + s)); s=0
  printf '%s %s\\n' "$b" "$(stat -c %i -- "$p")" > "$bf"
done
}`;

/** `$1` size of a file, `$2` rotated files kept, `$3` stdout file, `$4` stderr file; fd 0 and 3 the pipes (read-write). */
export const SHIPPER_SCRIPT = `${SHIP}
trap '' HUP INT QUIT TERM PIPE USR1 USR2 ALRM
exec 5</proc/self/fd/0 6</proc/self/fd/3 0</dev/null 3<&-
ship "$4" "$1" "$2" <&6 5<&- 6<&- &
exec 0<&5 5<&- 6<&-
ship "$3" "$1" "$2"
exec 0</dev/null
wait`;

/** The pipes of one task process, before and after its shipper starts. */
export interface LogPipes {
  /** The write ends to hand to the task as its stdout and stderr. */
  stdout: number;
  stderr: number;
  /**
   * Starts the shipper, which writes the pipes into the files (call once the task holds its ends, so
   * that the spawn is not on the task's start path: the pipes buffer what it writes meanwhile).
   * Returns its pid (it ends by itself at the end of the task's output).
   */
  ship(limits?: LogLimits): number;
  /** Closes the agent's descriptors (once the task and the shipper hold their own). */
  close(): void;
}

/**
 * FIFOs made ahead of time, in a directory only the agent's user can enter: making one costs a
 * process (mkfifo), some milliseconds that would otherwise be on every start's path. A FIFO is only
 * where the two ends meet: it is unlinked once opened, and the pipe lives on.
 */
const pool: { dir?: string; names: string[]; refill?: Promise<void> | undefined; next: number } = {
  names: [],
  next: 0,
};
const POOL_LOW = 8;
const POOL_BATCH = 32;

/** Pools of agents that died without their exit handler (a crash, SIGKILL): nobody uses them any more. */
function sweepStalePools(): void {
  for (const name of readdirSync(tmpdir())) {
    const pid = Number(/^unum-fifos-(\d+)-/.exec(name)?.[1] ?? NaN);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH')
        rmSync(join(tmpdir(), name), { recursive: true, force: true });
    }
  }
}

function refillPool(): Promise<void> {
  pool.refill ??= (async () => {
    try {
      if (pool.dir === undefined) {
        sweepStalePools();
        pool.dir = mkdtempSync(join(tmpdir(), `unum-fifos-${process.pid}-`));
        const dir = pool.dir;
        process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
      }
      const names = Array.from({ length: POOL_BATCH }, () => join(pool.dir!, `${pool.next++}`));
      await new Promise<void>((resolve, reject) =>
        execFile('mkfifo', ['-m', '0600', ...names], { timeout: 10_000 }, (err) =>
          err === null ? resolve() : reject(err),
        ),
      );
      pool.names.push(...names);
    } finally {
      pool.refill = undefined;
    }
  })();
  return pool.refill;
}

async function takeFifo(): Promise<string> {
  for (;;) {
    if (pool.names.length < POOL_LOW) refillPool().catch(() => undefined);
    const name = pool.names.shift();
    if (name !== undefined) return name;
    await refillPool();
  }
}

/**
 * Makes the pipes of a task process whose output goes into `stdoutPath` and `stderrPath`. Rejects
 * with UnavailableError when they can not be made (a problem of the node).
 */
export async function openLogPipes(paths: { stdoutPath: string; stderrPath: string }): Promise<LogPipes> {
  const fds: number[] = [];
  const closeAll = (): void => {
    for (const fd of fds.splice(0)) closeSync(fd);
  };
  try {
    const fifos = [await takeFifo(), await takeFifo()];
    // Read-write never waits for a partner; the task gets a write-only reopen of the same pipe.
    const rw = fifos.map((f) => openSync(f, 'r+'));
    fds.push(...rw);
    for (const f of fifos) unlinkSync(f);
    const wo = rw.map((fd) => openSync(`/proc/self/fd/${fd}`, 'w'));
    fds.push(...wo);
    const [stdout, stderr] = wo as [number, number];
    const ship = (limits: LogLimits = DEFAULT_LOG_LIMITS): number => {
      const perFile = Math.max(1, Math.ceil(limits.maxBytes / Math.max(1, limits.maxFiles)));
      const keep = Math.max(0, Math.floor(limits.maxFiles) - 1);
      const child = spawn(
        '/bin/sh',
        [
          '-c',
          SHIPPER_SCRIPT,
          'unum-log-shipper',
          String(perFile),
          String(keep),
          paths.stdoutPath,
          paths.stderrPath,
        ],
        {
          stdio: [rw[0]!, 'ignore', 'ignore', rw[1]!],
          detached: true,
          env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin' },
        },
      );
      child.on('error', () => undefined);
      child.unref();
      if (child.pid === undefined)
        throw new UnavailableError(`could not start the log shipper for ${dirname(paths.stdoutPath)}`);
      return child.pid;
    };
    return { stdout, stderr, ship, close: closeAll };
  } catch (err) {
    closeAll();
    throw new UnavailableError(
      `could not make the log pipes for ${dirname(paths.stdoutPath)}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}

/** openLogPipes, then the shipper at once (for tests and tools that start no sandbox). */
export async function startLogShipper(
  paths: { stdoutPath: string; stderrPath: string },
  limits: LogLimits = DEFAULT_LOG_LIMITS,
): Promise<{ stdout: number; stderr: number; shipperPid: number; close(): void }> {
  const pipes = await openLogPipes(paths);
  try {
    return { stdout: pipes.stdout, stderr: pipes.stderr, shipperPid: pipes.ship(limits), close: pipes.close };
  } catch (err) {
    pipes.close();
    throw err;
  }
}

/**
 * Resolves true once the shipper `pid` has ended (it has written everything), false after
 * `timeoutMs`. The agent's own child is reaped by Node; one of an earlier agent process by init.
 */
export async function shipperEnded(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  let delay = 1;
  while (existsSync(`/proc/${pid}`)) {
    if (performance.now() > deadline) return false;
    await sleep(delay);
    delay = Math.min(delay * 2, 50);
  }
  return true;
}
