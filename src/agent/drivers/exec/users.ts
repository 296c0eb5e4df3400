/**
 * Who a task runs as. By default every allocation gets a uid of its own from a range (default
 * 200000-265535) that no account on the node uses: one tenant's tasks can then neither signal nor
 * read another's (processes and files are compared by uid), and nothing a task leaves behind is
 * mistaken for another allocation's. `nobody` would be one uid shared by every task on the node.
 * The tasks of one allocation share its uid (they share the `alloc/` directory).
 *
 * Leases live in `<dir>/<uid>` (the allocation id inside; created with O_EXCL, so two allocations
 * never get the same uid, also across agent restarts) and `<dir>/by-alloc/<allocId>` (the uid).
 * The first uid tried is derived from the allocation id, so a re-started task gets its uid back.
 * A lease is kept while its allocation's directories exist; when the range is exhausted, leases of
 * allocations with no task running here and no process of that uid left are reclaimed.
 *
 * `user:` in a job names a host account; it is honoured only when the operator allowed it.
 */
import { InvalidError, UnavailableError } from '../../../core/errors.ts';
import { execFile } from 'node:child_process';
import { constants, readFileSync, readdirSync } from 'node:fs';
import {
  chmod,
  chown,
  lchown,
  lstat,
  mkdir,
  open,
  readFile,
  readdir,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { currentUserName, parsePasswdLine, passwdEntries } from '../accounts.ts';
import { ExecError } from '../types.ts';
import { DEFAULT_TASK_UID_RANGE } from '../../options.ts';

export { DEFAULT_TASK_UID_RANGE, currentUserName };

export interface TaskIdentity {
  uid: number;
  gid: number;
  /** For messages: the account name, or `uid 200123` for a dedicated uid. */
  name: string;
}

/** ExecError unless the operator allows a job's `user:` on this node (`--allow-task-user`). */
export function assertTaskUserAllowed(user: string, allowed: readonly string[]): void {
  if (!allowed.includes(user))
    throw new ExecError(
      `user ${JSON.stringify(user)} is not allowed on this node; the operator can allow it with --allow-task-user ${user}`,
      'EPERM',
    );
}

/**
 * The account a job's `user:` names, if the operator allows it. Rejects with ExecError (a problem of
 * the job: the task fails at once, not retried) when it is not allowed or does not exist.
 */
export async function resolveTaskUser(user: string, allowed: readonly string[]): Promise<TaskIdentity> {
  assertTaskUserAllowed(user, allowed);
  const entry = await lookupUser(user);
  if (entry === undefined)
    throw new ExecError(`user ${JSON.stringify(user)} does not exist on this node`, 'ENOENT');
  return entry;
}

/** A passwd entry by name or numeric uid: NSS first (`getent`), /etc/passwd when getent is missing. */
export async function lookupUser(user: string): Promise<TaskIdentity | undefined> {
  const line = await new Promise<string | undefined>((resolve) => {
    execFile('getent', ['passwd', user], { timeout: 5_000 }, (err, stdout) => {
      if (err === null) return resolve(stdout.split('\n')[0]);
      // exit 2: no such user; anything else (getent missing): fall back to the file.
      resolve((err as { code?: unknown }).code === 2 ? '' : undefined);
    });
  });
  if (line === '') return undefined;
  const entry =
    line !== undefined
      ? parsePasswdLine(line)
      : passwdEntries().find((e) => e.name === user || String(e.uid) === user);
  return entry === undefined ? undefined : { uid: entry.uid, gid: entry.gid, name: entry.name };
}

/** Operator lines when the uid range overlaps accounts or subordinate id ranges (rootless containers). */
export function uidRangeWarnings(range: { min: number; max: number }): string[] {
  const out: string[] = [];
  const users = passwdEntries().filter((e) => e.uid >= range.min && e.uid <= range.max);
  if (users.length > 0)
    out.push(
      `the task uid range ${range.min}-${range.max} contains accounts of this node (${users
        .slice(0, 3)
        .map((u) => `${u.name}=${u.uid}`)
        .join(', ')}): those uids are skipped; choose another range with --task-uid-range`,
    );
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const [owner, start, count] = line.split(':');
      const s = Number(start);
      const c = Number(count);
      if (owner === undefined || !Number.isInteger(s) || !Number.isInteger(c) || c <= 0) continue;
      if (s <= range.max && s + c - 1 >= range.min)
        out.push(
          `the task uid range ${range.min}-${range.max} overlaps ${owner}'s subordinate ids in ${file} (${s}-${s + c - 1}): that user's rootless containers could signal unum's tasks; choose another range with --task-uid-range`,
        );
    }
  }
  return out;
}

/** Hands out one uid per allocation from a range. Safe across agent restarts (leases are files). */
export class UidPool {
  private readonly dir: string;
  private readonly range: { min: number; max: number };
  private readonly reserved: Set<number>;
  private readonly isActive: (allocId: string) => boolean;
  private queue: Promise<unknown> = Promise.resolve();
  /** Leases this process knows (its own, and those it read): no file I/O to find them again. */
  private readonly known = new Map<string, number>();
  /** Allocations with a lease file when this process first looked (made by earlier processes). */
  private earlier: Promise<Set<string>> | undefined;

  /**
   * @param dir where leases are kept (`<dataDir>/agent/task-uids`)
   * @param isActive whether an allocation still has a task running in this agent (its lease must
   *   not be reclaimed)
   */
  constructor(dir: string, range: { min: number; max: number }, isActive: (allocId: string) => boolean) {
    if (
      !Number.isInteger(range.min) ||
      !Number.isInteger(range.max) ||
      range.min < 1 ||
      range.max < range.min
    )
      throw new InvalidError(`taskUidRange: invalid task uid range ${range.min}-${range.max}`);
    this.dir = dir;
    this.range = range;
    this.isActive = isActive;
    // Accounts of the node are never handed out.
    this.reserved = new Set(passwdEntries().map((e) => e.uid));
  }

  /** The allocation's uid: its existing lease, or a new one. Rejects when the range is exhausted. */
  acquire(allocId: string): Promise<number> {
    // One at a time in this process: the files arbitrate against other processes.
    const next = this.queue.then(() => this.acquireNow(allocId));
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Gives the allocation's uid back (when its directories are garbage-collected). Idempotent. */
  async release(allocId: string): Promise<void> {
    this.known.delete(allocId);
    const uid = await this.leased(allocId);
    await rm(join(this.dir, 'by-alloc', allocId), { force: true });
    if (uid !== undefined && (await this.owner(uid)) === allocId)
      await rm(join(this.dir, String(uid)), { force: true });
  }

  private async acquireNow(allocId: string): Promise<number> {
    const cached = this.known.get(allocId);
    if (cached !== undefined) return cached;
    this.earlier ??= mkdir(join(this.dir, 'by-alloc'), { recursive: true, mode: 0o700 })
      .then(() => readdir(join(this.dir, 'by-alloc')))
      .then((names) => new Set(names));
    if ((await this.earlier).has(allocId)) {
      const existing = await this.leased(allocId);
      if (existing !== undefined && (await this.owner(existing)) === allocId) {
        this.known.set(allocId, existing);
        return existing;
      }
    }
    const uid = await this.lease(allocId);
    this.known.set(allocId, uid);
    return uid;
  }

  private async lease(allocId: string): Promise<number> {
    const size = this.range.max - this.range.min + 1;
    const start = createHash('sha256').update(allocId).digest().readUInt32BE(0) % size;
    for (const reclaim of [false, true]) {
      const inUse = reclaim ? processUids() : undefined;
      for (let i = 0; i < size; i++) {
        const uid = this.range.min + ((start + i) % size);
        if (this.reserved.has(uid)) continue;
        const file = join(this.dir, String(uid));
        if (reclaim) {
          const owner = await this.owner(uid);
          if (owner === undefined || owner === allocId || this.isActive(owner) || inUse?.has(uid)) continue;
          await rm(file, { force: true });
          await rm(join(this.dir, 'by-alloc', owner), { force: true });
          this.known.delete(owner);
        }
        try {
          await writeFile(file, allocId, { flag: 'wx', mode: 0o600 });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
            if ((await this.owner(uid)) === allocId) return uid;
            continue;
          }
          throw err;
        }
        await writeFile(join(this.dir, 'by-alloc', allocId), String(uid), { mode: 0o600 });
        return uid;
      }
    }
    throw new UnavailableError(
      `no free task uid in ${this.range.min}-${this.range.max}: every uid is leased to an allocation with a task running`,
    );
  }

  private async leased(allocId: string): Promise<number | undefined> {
    const text = await readFile(join(this.dir, 'by-alloc', allocId), 'utf8').catch(() => undefined);
    const uid = Number(text);
    return text !== undefined && Number.isInteger(uid) ? uid : undefined;
  }

  private async owner(uid: number): Promise<string | undefined> {
    return readFile(join(this.dir, String(uid)), 'utf8').catch(() => undefined);
  }
}

/** Real uids of every process on the node (to never reclaim a uid something still runs as). */
function processUids(): Set<number> {
  const uids = new Set<number>();
  let entries: string[] = [];
  try {
    // Sync is fine: reclaiming happens only when the range is exhausted.
    entries = readdirSync('/proc');
  } catch {
    return uids;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${e}/status`, 'utf8'));
      if (m?.[1] !== undefined) uids.add(Number(m[1]));
    } catch {
      // gone
    }
  }
  return uids;
}

/**
 * Gives a task's directories to its uid, so that it can write them and nothing else:
 *
 *   <task>/            root:gid  01770   the task creates files (HOME) but can not rename or remove
 *                                         logs/ (sticky): the agent, root, reads logs by path
 *   <task>/{local,secrets,tmp}  uid:gid  0700
 *   <task>/logs/       root      0755    written through the descriptors the agent hands over
 *   <alloc>/alloc/     uid:gid   0770    shared by the group's tasks (the first task's uid owns it)
 *
 * What is already owned by another uid (a lease given back and re-leased) is handed over
 * recursively, without following symlinks. Idempotent.
 */
export async function prepareTaskDirs(
  dirs: { task: string; private: readonly string[]; shared?: string },
  id: { uid: number; gid: number },
): Promise<void> {
  // The task dir and the shared dir sit in the allocation's root-owned directory: the task can not
  // swap them for symlinks. Its private dirs sit in the task dir, where it can.
  await Promise.all([
    chown(dirs.task, 0, id.gid).then(() => chmod(dirs.task, 0o1770)),
    ...dirs.private.map((d) => ownDirectory(d, id, 0o700)),
    dirs.shared === undefined
      ? undefined
      : stat(dirs.shared).then(async (st) => {
          // The first task of the group gives it its uid; a task with another user (user:) joins by group.
          if (st.uid !== 0 && st.uid !== id.uid) return;
          await handOver(dirs.shared ?? '', id);
          await chmod(dirs.shared ?? '', 0o770);
        }),
  ]);
}

/**
 * Makes `path` a real directory owned by the task, whatever the task left there: a symlink or a
 * file in its place (the task may replace its own directories) is removed, never followed.
 */
async function ownDirectory(path: string, id: { uid: number; gid: number }, mode: number): Promise<void> {
  // O_NOFOLLOW: a symlink in its place is never followed (it fails with ELOOP, as a file does
  // with ENOTDIR); it is removed and a directory made instead.
  const flags = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
  let dir = await open(path, flags).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ELOOP' || err.code === 'ENOTDIR') return undefined;
    throw err;
  });
  if (dir === undefined) {
    await rm(path, { force: true });
    await mkdir(path, { recursive: true });
    dir = await open(path, flags);
  }
  try {
    const st = await dir.stat();
    if (st.uid !== id.uid || st.gid !== id.gid) {
      await handOverChildren(path, id);
      await dir.chown(id.uid, id.gid);
    }
    if ((st.mode & 0o7777) !== mode) await dir.chmod(mode);
  } finally {
    await dir.close();
  }
}

/**
 * Changes the owner of a tree that no process of the old or the new uid can touch meanwhile (the
 * task has not started; a re-leased uid has no process left): lchown, so a symlink is never followed.
 */
async function handOver(path: string, id: { uid: number; gid: number }): Promise<void> {
  const st = await lstat(path);
  if (st.uid === id.uid && st.gid === id.gid) return;
  await lchown(path, id.uid, id.gid);
  if (st.isDirectory()) await handOverChildren(path, id);
}

async function handOverChildren(path: string, id: { uid: number; gid: number }): Promise<void> {
  for (const e of await readdir(path, { withFileTypes: true })) {
    const child = join(path, e.name);
    if (e.isDirectory()) await handOver(child, id);
    else await lchown(child, id.uid, id.gid).catch(() => undefined);
  }
}
