/**
 * The agent's durable state: one JSON file per allocation under `<dataDir>/agent/state/`, so that a
 * restarted agent (after a crash, an upgrade, a graceful stop) finds its allocations again and
 * re-attaches to their tasks instead of starting them twice.
 *
 *     <dataDir>/agent/state/<allocId>.json    the allocation as last received, its client status,
 *                                             each task's TaskState, restart history, pending restart
 *                                             time and the driver's TaskHandleState
 *
 * Every write goes to a temporary file that is fsynced and then renamed over the old one (and the
 * directory fsynced), so a reader only ever sees a whole old file or a whole new one: a crash, a
 * kill -9 or a power cut mid-write never leaves torn JSON. Writes of one allocation are coalesced:
 * at most one is in flight, and the one after it carries the latest snapshot.
 */
import { mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../core/log.ts';
import type { AllocClientStatus, Allocation, TaskState } from '../core/types.ts';
import { isSafeAllocId } from './runner/alloc-dir.ts';
import { upgradeHandleState } from './drivers/handle-state.ts';
import type { TaskHandleState } from './drivers/types.ts';

export const STATE_VERSION = 1;

/** What the agent keeps of one task. */
export interface PersistedTask {
  state: TaskState;
  /** The task has had its chance to run at least once. */
  started: boolean;
  /** The driver's handle of the process now running; absent when none runs. */
  handle?: TaskHandleState;
  /** Times (ms) of the restarts still counted by the restart policy. */
  restartHistory: number[];
  /** While waiting to restart: when the next start is due (ms since the epoch). */
  restartAt?: number;
  /** Set once the task was asked to stop for good. */
  killReason?: string;
  /** That stop is for a limit the allocation exceeded: the task ends failed. */
  limitExceeded?: boolean;
}

/** What the agent keeps of one allocation. */
export interface PersistedAlloc {
  version: typeof STATE_VERSION;
  /** The allocation as the server last sent it. */
  alloc: Allocation;
  clientStatus: AllocClientStatus;
  clientDescription: string;
  healthy?: boolean;
  /** Why the allocation is being stopped, once it is. */
  stopReason?: string;
  /** The task whose failure failed the allocation. */
  failedTask?: string;
  /** Why the allocation was failed as a whole (a limit it exceeded), once it was. */
  failReason?: string;
  tasks: Record<string, PersistedTask>;
  savedAt: number;
}

/** `<dataDir>/agent/state` */
export function stateDir(dataDir: string): string {
  return join(dataDir, 'agent', 'state');
}

let tmpCounter = 0;

/**
 * Writes `text` to `path` atomically: a temporary file in the same directory, fsynced, renamed over
 * `path`, then the directory fsynced so the rename itself is durable. A crash at any point leaves
 * either the old file or the new one (and perhaps a stray `*.tmp` that readers ignore).
 */
export async function writeFileAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${++tmpCounter}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(join(path, '..'));
}

/** fsync of a directory (makes renames and unlinks in it durable). Best effort: not every file system allows it. */
async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // EISDIR/EINVAL on some platforms: the rename is still atomic, only its durability is weaker.
  }
}

interface Slot {
  /** The snapshot to write next; undefined when nothing is waiting. */
  next: PersistedAlloc | undefined;
  /** Number of snapshots saved so far, and the number of the last one written (or given up on). */
  saved: number;
  written: number;
  /** Callers of durable(), each waiting for a snapshot number. */
  waiters: { upTo: number; resolve: () => void }[];
  /** The write loop of this allocation, while it runs. */
  running: Promise<void> | undefined;
  /** Set by remove(): drop what is waiting and make sure the file is gone afterwards. */
  removed: boolean;
}

function newSlot(removed = false): Slot {
  return { next: undefined, saved: 0, written: 0, waiters: [], running: undefined, removed };
}

/**
 * The state directory. `save` may be called at every change (synchronously, with the snapshot taken
 * at that moment); `flush` waits until everything saved so far is on disk.
 */
export class AgentStateStore {
  readonly dir: string;
  private readonly logger: Logger;
  private readonly slots = new Map<string, Slot>();
  private ready: Promise<void> | undefined;

  constructor(dir: string, logger: Logger) {
    this.dir = dir;
    this.logger = logger;
  }

  private fileOf(allocId: string): string {
    return join(this.dir, `${allocId}.json`);
  }

  private ensureDir(): Promise<void> {
    this.ready ??= mkdir(this.dir, { recursive: true, mode: 0o700 }).then(() => undefined);
    return this.ready;
  }

  /**
   * Every allocation found on disk. Files that can not be read or parsed (which atomic writes never
   * produce, but a disk can) are logged and skipped; stray temporary files are removed.
   */
  async load(): Promise<PersistedAlloc[]> {
    await this.ensureDir();
    const out: PersistedAlloc[] = [];
    for (const name of (await readdir(this.dir)).sort()) {
      const path = join(this.dir, name);
      if (name.endsWith('.tmp')) {
        await rm(path, { force: true });
        continue;
      }
      if (!name.endsWith('.json')) continue;
      const id = name.slice(0, -'.json'.length);
      try {
        const value = JSON.parse(await readFile(path, 'utf8')) as PersistedAlloc;
        if (value.version !== STATE_VERSION || value.alloc?.id !== id || !isSafeAllocId(id))
          throw new Error(`not an allocation state file of version ${STATE_VERSION}`);
        // Handles an earlier agent wrote in an older shape are read in today's.
        for (const task of Object.values(value.tasks ?? {})) {
          if (task.handle === undefined) continue;
          const handle = upgradeHandleState(task.handle);
          if (handle === undefined) delete task.handle;
          else task.handle = handle;
        }
        out.push(value);
      } catch (err) {
        this.logger.error({ err, file: path }, 'ignoring an unreadable allocation state file');
      }
    }
    return out;
  }

  /** Queues `snapshot` to be written; returns at once. Later snapshots of the same allocation win. */
  save(snapshot: PersistedAlloc): void {
    const id = snapshot.alloc.id;
    let slot = this.slots.get(id);
    if (slot === undefined) {
      slot = newSlot();
      this.slots.set(id, slot);
    }
    if (slot.removed) return;
    slot.next = snapshot;
    slot.saved += 1;
    slot.running ??= this.drain(id, slot);
  }

  /**
   * Resolves once everything saved so far for the allocation is on disk (or could not be written:
   * that is logged). The agent reports a state to the servers only after this, so that a server
   * never knows of a process the next agent process would not find in the state file.
   */
  durable(allocId: string): Promise<void> {
    const slot = this.slots.get(allocId);
    if (slot === undefined || slot.written >= slot.saved) return Promise.resolve();
    return new Promise((resolve) => slot.waiters.push({ upTo: slot.saved, resolve }));
  }

  /** Forgets an allocation: what is queued is dropped and its file removed. Idempotent. */
  async remove(allocId: string): Promise<void> {
    const slot = this.slots.get(allocId) ?? newSlot(true);
    slot.removed = true;
    slot.next = undefined;
    this.slots.set(allocId, slot);
    await slot.running;
    await rm(this.fileOf(allocId), { force: true });
    slot.written = slot.saved;
    this.wake(slot);
    if (this.slots.get(allocId) === slot) this.slots.delete(allocId);
  }

  private wake(slot: Slot): void {
    const ready = slot.waiters.filter((w) => w.upTo <= slot.written);
    slot.waiters = slot.waiters.filter((w) => w.upTo > slot.written);
    for (const w of ready) w.resolve();
  }

  /** Resolves once every snapshot saved so far is on disk. */
  async flush(): Promise<void> {
    for (;;) {
      const running = [...this.slots.values()].map((s) => s.running).filter((p) => p !== undefined);
      if (running.length === 0) return;
      await Promise.all(running);
    }
  }

  private async drain(id: string, slot: Slot): Promise<void> {
    try {
      await this.ensureDir();
      while (slot.next !== undefined && !slot.removed) {
        const snapshot = slot.next;
        const seq = slot.saved;
        slot.next = undefined;
        try {
          await writeFileAtomic(this.fileOf(id), JSON.stringify(snapshot));
        } catch (err) {
          // The tasks go on; the next change writes again. A full disk must not stop the agent.
          this.logger.error({ err, allocId: id }, 'could not write the allocation state file');
        }
        slot.written = seq;
        this.wake(slot);
      }
    } finally {
      slot.running = undefined;
      if (slot.removed || slot.next === undefined) {
        slot.written = slot.saved;
        this.wake(slot);
      }
      if (!slot.removed && this.slots.get(id) === slot && slot.next === undefined) this.slots.delete(id);
    }
  }
}
