/**
 * The log shipper: a small process per task process, beside it (not the agent), that reads the
 * task's stdout and stderr from pipes and writes them into the log files, rotating them so that no
 * file ever passes its size. The cap holds at every write, whatever the write rate, and whether the
 * agent runs or not (see README.md, "Logs").
 *
 *   task ──stdout──▶ pipe ──▶ shipper (sh) ──head─▶ logs/stdout.log  (rotated by rename at the size)
 *        ──stderr──▶ pipe ──▶     "       ──head─▶ logs/stderr.log
 *
 * The pipes are FIFOs made in the task's logs directory and unlinked as soon as both ends are open
 * (a real pipe, not a socket: a task may open /dev/stdout). The shipper gets each pipe read-write
 * and reopens it read-only before letting go of the read-write descriptor: at every moment a
 * reader holds the pipe, so a task that writes and exits at once loses nothing, and the shipper
 * sees the end of the stream once every process of the task is gone. It runs detached (its own
 * session) and is not in the task's process group or cgroup: stopping the task does not stop it
 * before it has written the task's last words, and it ends by itself at the end of the stream.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { closeSync, openSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UnavailableError } from '../core/errors.ts';
import { DEFAULT_LOG_LIMITS, type LogLimits } from './logs.ts';

/**
 * One stream: `$1` the file, `$2` the size of a file, `$3` the rotated files kept; standard input
 * the pipe. `head -c`, unbuffered (stdbuf -o0: it writes what it reads, at once, so that followers
 * see each line as it comes, and it never reads past its count), copies at most what fits into the current file, then the files are shifted by rename and the base record rewritten (see logs.ts, "base").
 * A failed write (a full disk) is retried after a second: the pipe fills meanwhile and the task's
 * writes wait; the shipper never gives up on its pipe, or the task would die of SIGPIPE.
 */
const SHIP = `ship() {
p=$1; per=$2; keep=$3; bf="\${p%/*}/.\${p##*/}.base"; b=0
[ -r "$bf" ] && read -r b _ < "$bf"
case $b in ''|*[!0-9]*) b=0;; esac
: >> "$p"
s=$(stat -c %s -- "$p") || s=0
while :; do
  if [ "$s" -lt "$per" ]; then
    stdbuf -o0 head -c $((per - s)) >> "$p" || { sleep 1; s=$(stat -c %s -- "$p") || s=0; continue; }
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

/** The write ends to hand to the task as its stdout and stderr (close them once it has them). */
export interface LogPipes {
  stdout: number;
  stderr: number;
  /** The shipper's pid (it ends by itself at the end of the task's output). */
  shipperPid: number;
  /** Closes the agent's descriptors (call once the task holds its own). */
  close(): void;
}

function makeFifos(paths: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile('mkfifo', ['-m', '0600', ...paths], { timeout: 10_000 }, (err) =>
      err === null ? resolve() : reject(err),
    ),
  );
}

/**
 * Starts a shipper writing into `stdoutPath` and `stderrPath` (rotated within `limits`) and returns
 * the pipes the task writes to. Rejects with UnavailableError when the pipes or the shipper can not
 * be made (a problem of the node).
 */
export async function startLogShipper(
  paths: { stdoutPath: string; stderrPath: string },
  limits: LogLimits = DEFAULT_LOG_LIMITS,
): Promise<LogPipes> {
  const tag = randomBytes(6).toString('hex');
  const fifos = [paths.stdoutPath, paths.stderrPath].map((p) =>
    join(dirname(p), `.${basename(p)}.${tag}.pipe`),
  );
  const fds: number[] = [];
  const closeAll = (): void => {
    for (const fd of fds.splice(0)) closeSync(fd);
  };
  try {
    await makeFifos(fifos);
    // Read-write never waits for a partner; the task gets a write-only reopen of the same pipe.
    const rw = fifos.map((f) => openSync(f, 'r+'));
    fds.push(...rw);
    for (const f of fifos) unlinkSync(f);
    const wo = rw.map((fd) => openSync(`/proc/self/fd/${fd}`, 'w'));
    fds.push(...wo);
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
    if (child.pid === undefined) throw new Error('could not start /bin/sh');
    const [stdout, stderr] = wo as [number, number];
    return { stdout, stderr, shipperPid: child.pid, close: closeAll };
  } catch (err) {
    closeAll();
    for (const f of fifos)
      try {
        unlinkSync(f);
      } catch {
        // Not made, or unlinked already.
      }
    throw new UnavailableError(
      `could not start the log shipper for ${dirname(paths.stdoutPath)}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}
