/**
 * Reading and writing cgroupfs control files, and the parsers for their formats. Shared by v1.ts and
 * v2.ts. The kernel answers a bad value on write(2), not on open(2): every error is rethrown as a
 * CgroupFileError that names the file, the value and the errno, so that an operator can reproduce it
 * with `echo VALUE > FILE`.
 *
 * Creating a task's cgroup uses the synchronous forms (`…Sync`): cgroupfs lives in kernel memory and
 * each call takes some microseconds (a whole v1 cgroup with its limits, about 0.3 ms), while the
 * asynchronous forms pay a trip through the thread pool and a turn of the event loop per call, and
 * queue behind whatever else is there: a spawn blocks the loop for milliseconds. On the start-up
 * path that made a cgroup take about 8 ms instead of 0.3.
 */
import { accessSync, constants, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { access, mkdir, readFile, readdir, rmdir, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { UnavailableError } from '../../core/errors.ts';

const ERRNO_WORDS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  EINVAL: 'the kernel rejected the value',
  EBUSY: 'busy',
  ENOENT: 'no such file or directory',
  ENOSPC: 'no space left (a limit of the parent cgroup?)',
  EOPNOTSUPP: 'not supported',
  ENOTDIR: 'not a directory',
};

/**
 * A control file (or cgroup directory) operation failed: the node cannot do what was asked of its
 * cgroups now (code `unavailable`). `errno` is the system's (`EINVAL`, `EACCES`, …).
 */
export class CgroupFileError extends UnavailableError {
  readonly errno: string;
  readonly path: string;
  constructor(message: string, errno: string, path: string, options?: { cause?: unknown }) {
    super(message, { ...options, details: { errno, path } });
    this.errno = errno;
    this.path = path;
  }
}

/** The errno of a failed file operation, or of a CgroupFileError made from one. */
export function errnoOf(err: unknown): string {
  if (err instanceof CgroupFileError) return err.errno;
  return (err as NodeJS.ErrnoException | undefined)?.code ?? 'EUNKNOWN';
}

function describe(code: string): string {
  const words = ERRNO_WORDS[code];
  return words === undefined ? code : `${code} (${words})`;
}

/**
 * Writes `value` to a control file in one write(2), as `echo -n VALUE > FILE` does (O_WRONLY |
 * O_CREAT | O_TRUNC; the kernel ignores O_TRUNC and refuses to create files). The string goes as is:
 * callers pass exactly what the kernel expects (`"max 100000"`, `"FROZEN"`).
 */
export async function writeControl(path: string, value: string): Promise<void> {
  try {
    await writeFile(path, value);
  } catch (err) {
    throw writeError(path, value, err, await exists(path));
  }
}

/** writeControl, synchronously (see the top of this file for when). */
export function writeControlSync(path: string, value: string): void {
  try {
    writeFileSync(path, value);
  } catch (err) {
    throw writeError(path, value, err, existsSync(path));
  }
}

function writeError(path: string, value: string, err: unknown, fileExists: boolean): CgroupFileError {
  let code = errnoOf(err);
  // cgroupfs answers EACCES, not ENOENT, to creating a file that does not exist: say which it was.
  if (code === 'EACCES' && !fileExists) code = 'ENOENT';
  const hint = code === 'ENOENT' ? ' (is the controller enabled for this cgroup?)' : '';
  return new CgroupFileError(
    `cannot write ${JSON.stringify(value)} to ${path}: ${describe(code)}${hint}`,
    code,
    path,
    { cause: err },
  );
}

/** The contents of a control file; CgroupFileError (with the path) when it can not be read. */
export async function readControl(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw readError(path, err);
  }
}

/** readControl, synchronously. */
export function readControlSync(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw readError(path, err);
  }
}

function readError(path: string, err: unknown): CgroupFileError {
  const code = errnoOf(err);
  return new CgroupFileError(`cannot read ${path}: ${describe(code)}`, code, path, { cause: err });
}

/** The contents of a control file, or undefined when it does not exist (older kernel, controller off). */
export async function readOptionalControl(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw readError(path, err);
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

export function existsSync(path: string): boolean {
  try {
    accessSync(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Makes a cgroup directory; an existing one is fine (re-open). Returns true when it was made now.
 * Rejects when the path exists but is not a directory (a name equal to a control file's).
 */
export async function makeCgroupDir(path: string): Promise<boolean> {
  try {
    await mkdir(path);
    return true;
  } catch (err) {
    return madeAlready(path, err, await isDirectory(path));
  }
}

/**
 * makeCgroupDir, synchronously; the parent is made too when missing (it may have been removed since
 * detection: a manual cleanup).
 */
export function makeCgroupDirSync(path: string): boolean {
  for (let attempt = 0; ; attempt++) {
    try {
      mkdirSync(path);
      return true;
    } catch (err) {
      if (errnoOf(err) === 'ENOENT' && attempt === 0) {
        mkdirSync(dirname(path), { recursive: true });
        continue;
      }
      return madeAlready(path, err, isDirectorySync(path));
    }
  }
}

/** After a failed mkdir: false when a directory is there already, else the error to throw. */
function madeAlready(path: string, err: unknown, directory: boolean): false {
  const code = errnoOf(err);
  if (code === 'EEXIST') {
    if (directory) return false;
    throw new CgroupFileError(`cannot create cgroup ${path}: a file of that name exists`, 'EEXIST', path);
  }
  throw new CgroupFileError(`cannot create cgroup ${path}: ${describe(code)}`, code, path, { cause: err });
}

function isDirectorySync(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Names of the sub-directories (child cgroups) of `path`; empty when `path` does not exist. */
export async function childCgroups(path: string): Promise<string[]> {
  try {
    const entries = await readdir(path, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return [];
    const code = errnoOf(err);
    throw new CgroupFileError(`cannot list ${path}: ${describe(code)}`, code, path, { cause: err });
  }
}

/**
 * Removes a cgroup directory. Already gone is fine. EBUSY (processes still inside, or the kernel not
 * done tearing down ones that just died) is retried until `timeoutMs`, then rejected.
 */
export async function removeCgroupDir(path: string, timeoutMs = 2_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let wait = 1;
  for (;;) {
    try {
      await rmdir(path);
      return;
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || performance.now() >= deadline) {
        const hint = code === 'EBUSY' ? ' (it still holds processes: killAll() first)' : '';
        throw new CgroupFileError(`cannot remove cgroup ${path}: ${describe(code)}${hint}`, code, path, {
          cause: err,
        });
      }
    }
    await delay(wait);
    wait = Math.min(wait * 2, 50);
  }
}

/**
 * Parses the "flat keyed" format (`key value` per line: memory.stat, cpu.stat, memory.events,
 * memory.oom_control, pids.events). Values that are not numbers (`max`) are left out.
 */
export function parseKeyedValues(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, value, extra] = line.trim().split(/\s+/);
    if (key === undefined || key === '' || value === undefined || extra !== undefined) continue;
    const n = Number(value);
    if (Number.isFinite(n)) values.set(key, n);
  }
  return values;
}

/** Parses a single-number file (`memory.usage_in_bytes`, `pids.current`); `max` is Infinity. */
export function parseSingleValue(text: string, path = 'value'): number {
  const s = text.trim();
  if (s === 'max') return Infinity;
  const n = Number(s);
  if (s === '' || !Number.isFinite(n))
    throw new Error(`${path}: expected a number, got ${JSON.stringify(s)}`);
  return n;
}

/** Parses cgroup.procs / tasks: one pid per line. */
export function parsePidList(text: string): number[] {
  const pids: number[] = [];
  for (const line of text.split('\n')) {
    const s = line.trim();
    if (s === '') continue;
    const pid = Number(s);
    if (Number.isInteger(pid) && pid > 0) pids.push(pid);
  }
  return pids;
}

/** SIGKILL, where a process that is already gone is not an error. */
export function sigkill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if (errnoOf(err) !== 'ESRCH') throw err;
  }
}
