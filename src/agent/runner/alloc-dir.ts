/**
 * The directories of an allocation on the node:
 *
 *     <dataDir>/agent/allocs/<allocId>/alloc/                  shared by the group's tasks (UNUM_ALLOC_DIR)
 *     <dataDir>/agent/allocs/<allocId>/<task>/                 the task's working dir (UNUM_TASK_DIR, HOME)
 *                                      <task>/local/           task-private files
 *                                      <task>/secrets/         mode 0700 (secrets, later)
 *                                      <task>/tmp/             TMPDIR
 *                                      <task>/logs/stdout.log  stderr.log
 *
 * Directories stay after the allocation ends so that `unum logs` can still read them.
 */
import { InvalidError } from '../../core/errors.ts';
import { execFile } from 'node:child_process';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';

export interface TaskDir {
  dir: string;
  local: string;
  secrets: string;
  tmp: string;
  logs: string;
  stdout: string;
  stderr: string;
}

export interface AllocDir {
  root: string;
  shared: string;
}

/** Where the agent keeps its allocations: `<dataDir>/agent/allocs`. */
export function allocsRoot(dataDir: string): string {
  return join(dataDir, 'agent', 'allocs');
}

/** Allocation ids become path segments: accept only what can not escape the allocs root. */
export function isSafeAllocId(id: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id) && !id.includes('..');
}

export function allocDirPaths(allocsDir: string, allocId: string): AllocDir {
  const root = join(allocsDir, allocId);
  return { root, shared: join(root, 'alloc') };
}

export function taskDirPaths(allocsDir: string, allocId: string, task: string): TaskDir {
  const dir = join(allocsDir, allocId, task);
  const logs = join(dir, 'logs');
  return {
    dir,
    local: join(dir, 'local'),
    secrets: join(dir, 'secrets'),
    tmp: join(dir, 'tmp'),
    logs,
    stdout: join(logs, 'stdout.log'),
    stderr: join(logs, 'stderr.log'),
  };
}

/** Creates the allocation's directories and empty log files (so logs can be followed before a task starts). Idempotent. */
export async function buildAllocDir(
  allocsDir: string,
  allocId: string,
  tasks: readonly string[],
): Promise<void> {
  if (!isSafeAllocId(allocId))
    throw new InvalidError(`allocation id ${JSON.stringify(allocId)} is not a safe directory name`);
  await mkdir(allocDirPaths(allocsDir, allocId).shared, { recursive: true });
  await Promise.all(
    tasks.map(async (task) => {
      const t = taskDirPaths(allocsDir, allocId, task);
      await Promise.all([
        mkdir(t.local, { recursive: true }),
        mkdir(t.secrets, { recursive: true, mode: 0o700 }),
        mkdir(t.tmp, { recursive: true }),
        mkdir(t.logs, { recursive: true }),
      ]);
      for (const file of [t.stdout, t.stderr]) await (await open(file, 'a')).close();
    }),
  );
}

/**
 * Removes trees a task made, whatever their depth. Node's `rm` builds whole paths and fails with
 * ENAMETOOLONG past PATH_MAX, which a task can nest on purpose; coreutils' `rm` walks with openat.
 * Neither follows a symlink; `--one-file-system` never leaves the file system. Node's is the fallback
 * where there is no `rm`. Rejects when something could not be removed.
 */
export function removeTree(...paths: string[]): Promise<void> {
  if (paths.length === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    execFile('rm', ['-rf', '--one-file-system', '--', ...paths], (err, _stdout, stderr) => {
      if (err === null) return resolve();
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        return void Promise.all(paths.map((p) => rm(p, { recursive: true, force: true }))).then(
          () => resolve(),
          reject,
        );
      reject(
        new Error(`could not remove ${paths.join(', ')}: ${stderr.trim() || err.message}`, { cause: err }),
      );
    });
  });
}
