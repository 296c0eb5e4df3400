/**
 * Finding a task's program before it is started. The program runs behind a wrapper (a shell, bwrap,
 * setpriv), so a missing or non-executable program would only show as exit code 127 or 126 of the
 * wrapper; looking it up first keeps "command not found" an exec error, which the agent reports at
 * once and never retries. Shared by the exec and raw_exec drivers.
 */
import { stat } from 'node:fs/promises';
import { delimiter, dirname, resolve } from 'node:path';
import { ExecError, type TaskConfig } from './types.ts';

/** What a shell searches when the environment has no PATH (dash's default). */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface CommandCheck {
  /** Whose execute permission counts (default: the agent's own, via the mode bits for its uid). */
  as?: { uid: number; gid: number };
  /**
   * Where the program would not be visible to the task (the sandbox hides /tmp and the data dir):
   * returns why, for the message, or undefined when it is visible.
   */
  hiddenFrom?: (path: string) => string | undefined;
}

/**
 * Resolves the task's program as `execvp` would (a name through the task's PATH; a path from its
 * working directory) and checks that the task's user may execute it. Rejects with ExecError:
 * `exec: "python4": command not found`, `exec: "./run.sh": permission denied`.
 */
export async function checkCommand(config: TaskConfig, check: CommandCheck = {}): Promise<string> {
  const { command } = config;
  const who = check.as ?? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  const candidates = command.includes('/')
    ? [resolve(config.cwd, command)]
    : (config.env['PATH'] ?? DEFAULT_PATH)
        .split(delimiter)
        .filter((d) => d !== '')
        .map((d) => resolve(config.cwd, d, command));
  let denied: string | undefined;
  let hidden: { path: string; why: string } | undefined;
  for (const path of candidates) {
    const st = await stat(path).catch(() => undefined);
    if (st === undefined || st.isDirectory()) continue;
    const why = check.hiddenFrom?.(path);
    if (why !== undefined) {
      hidden ??= { path, why };
      continue;
    }
    if (!st.isFile() || !mayExecute(st, who)) {
      denied ??= path;
      continue;
    }
    return path;
  }
  const what = `exec: ${JSON.stringify(command)}`;
  if (denied !== undefined) throw new ExecError(`${what}: permission denied`, 'EACCES');
  if (hidden !== undefined) throw new ExecError(`${what}: ${hidden.why}`, 'ENOENT');
  if (command.includes('/')) throw new ExecError(`${what}: no such file or directory`, 'ENOENT');
  throw new ExecError(`${what}: command not found`, 'ENOENT');
}

/**
 * Outside a sandbox a task reaches its directory by its path, so every directory above it must be
 * searchable by the task's user. ExecError naming the first that is not, and what to do, so that a
 * data dir under a private home (mode 700) fails the task at once instead of leaving it unable to
 * read its own files.
 */
export async function checkReachable(dir: string, who: { uid: number; gid: number }): Promise<void> {
  let path = resolve(dir);
  const ancestors: string[] = [];
  while (dirname(path) !== path) {
    path = dirname(path);
    ancestors.unshift(path);
  }
  for (const a of ancestors) {
    const st = await stat(a).catch(() => undefined);
    if (st === undefined || mayExecute(st, who)) continue;
    throw new ExecError(
      `the task's directory ${dir} cannot be reached by its user (uid ${who.uid}): ${a} is mode ${(st.mode & 0o777).toString(8)}. ` +
        'Install bubblewrap so that tasks run in a sandbox (apt-get install bubblewrap), or start unum with a --data-dir every user can traverse (e.g. /var/lib/unum)',
      'EACCES',
    );
  }
}

function mayExecute(
  st: { mode: number; uid: number; gid: number },
  who: { uid: number; gid: number },
): boolean {
  if (who.uid === 0) return (st.mode & 0o111) !== 0;
  if (st.uid === who.uid) return (st.mode & 0o100) !== 0;
  if (st.gid === who.gid) return (st.mode & 0o010) !== 0;
  return (st.mode & 0o001) !== 0;
}

/** `exec: "python4": command not found`, worded as a shell would, from a spawn error. */
export function describeExecFailure(command: string, err: NodeJS.ErrnoException): string {
  const what = `exec: ${JSON.stringify(command)}`;
  switch (err.code) {
    case 'ENOENT':
      return command.includes('/')
        ? `${what}: no such file or directory (or its interpreter is missing)`
        : `${what}: command not found`;
    case 'EACCES':
      return `${what}: permission denied`;
    case 'ENOEXEC':
      return `${what}: exec format error`;
    case 'ENOTDIR':
      return `${what}: not a directory`;
    default:
      return `${what}: ${err.code ?? err.message}`;
  }
}
