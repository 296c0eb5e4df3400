/**
 * Task logs on the node: reading (an offset, or the last N lines) across rotated files, streaming
 * (optionally following), and the garbage collection of old allocation directories.
 *
 * Files of one stream of a task, oldest first:
 *
 *     logs/stdout.log.4 … stdout.log.2  stdout.log.1  stdout.log      (current)
 *     logs/.stdout.log.base                 the base record: logical offset of stdout.log's first byte
 *
 * The task's log shipper (log-shipper.ts), a process beside the task, writes them: it fills the
 * current file up to its size, then renames the files one up (dropping the oldest) and starts a new
 * current file. No byte is lost or copied, and no file passes its size.
 *
 * Offsets are **logical**: byte N of everything the task wrote to that stream on this node, stable
 * across rotations and agent restarts. Reads go through the files oldest first; an offset older
 * than what is still kept starts at the oldest byte kept.
 *
 * The base record is `<base> <inode of the current file>` between rotations and `<base> -` while the
 * shipper rotates (a bare `<base>` is also read, without the inode check). The rotation runs in
 * another process: a reader takes a snapshot only when the record is settled and names the current
 * file's inode, and reads again when the record changed under it.
 */
import { watch, type FSWatcher } from 'node:fs';
import { open, readFile, readdir, stat, utimes } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { isSafeAllocId, removeTree } from './runner/alloc-dir.ts';

const CHUNK = 64 * 1024;
/** How long a follower holds back the end of a line that has no newline yet (by default). */
const PARTIAL_LINE_MS = 500;
/** More rotated files than this are never looked for. */
const MAX_ROTATED = 1000;
/** How long a reader waits for a rotation to settle before it reads what is there (a shipper killed mid-rotation). */
const SETTLE_MS = 2_000;

export const MiB = 1024 * 1024;

/** How much log the agent keeps per stream of a task, and for how long after the allocation ended. */
export interface LogLimits {
  /** Bytes kept per stream (stdout, stderr) of a task, current file and rotated ones together. */
  maxBytes: number;
  /** Files those bytes are spread over (current + rotated); a file rotates at maxBytes / maxFiles. */
  maxFiles: number;
}

export const DEFAULT_LOG_LIMITS: LogLimits = { maxBytes: 10 * MiB, maxFiles: 5 };
export const DEFAULT_LOG_RETENTION_MS = 24 * 60 * 60 * 1000;

function baseFile(path: string): string {
  return join(dirname(path), `.${basename(path)}.base`);
}

interface BaseRecord {
  /** As read, to see whether it changed. */
  text: string;
  base: number;
  /** The inode of the current file it belongs to; undefined when not recorded. */
  inode?: number | undefined;
  /** A rotation is under way (or was cut short). */
  rotating: boolean;
}

async function readBaseRecord(path: string): Promise<BaseRecord> {
  let text = '';
  try {
    text = await readFile(baseFile(path), 'utf8');
  } catch {
    return { text, base: 0, rotating: false }; // no rotation yet
  }
  const m = /^(\d+)(?: (\d+|-))?\n$/.exec(text);
  if (m === null) return { text, base: 0, rotating: true }; // being written
  const base = Number(m[1]);
  if (m[2] === '-') return { text, base, rotating: true };
  return { text, base, inode: m[2] === undefined ? undefined : Number(m[2]), rotating: false };
}

async function statOf(path: string): Promise<{ size: number; ino: number } | undefined> {
  try {
    const st = await stat(path);
    return { size: st.size, ino: st.ino };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Size of the file in bytes; 0 when it does not exist yet. */
export async function fileSize(path: string): Promise<number> {
  return (await statOf(path))?.size ?? 0;
}

// --- reading ----------------------------------------------------------------------------------------

export interface LogSegment {
  path: string;
  /** Logical offset of the file's first byte. */
  start: number;
  size: number;
}

/** The files of a stream, oldest first, from a base record; undefined when they do not match it (a rotation ran). */
async function segmentsFor(path: string, rec: BaseRecord): Promise<LogSegment[] | undefined> {
  const current = await statOf(path);
  if (rec.inode !== undefined && current !== undefined && current.ino !== rec.inode) return undefined;
  const segs: LogSegment[] = [{ path, start: rec.base, size: current?.size ?? 0 }];
  let start = rec.base;
  for (let k = 1; k <= MAX_ROTATED; k++) {
    const p = `${path}.${k}`;
    const size = (await statOf(p))?.size;
    if (size === undefined) break;
    start -= size;
    segs.unshift({ path: p, start, size });
  }
  // A base lost in a crash: count from the oldest file kept.
  const first = segs[0];
  if (first !== undefined && first.start < 0) {
    const shift = -first.start;
    for (const seg of segs) seg.start += shift;
  }
  return segs;
}

/**
 * Runs `read` on a settled snapshot of the stream's files, again when a rotation overlapped it.
 * After SETTLE_MS of rotations that never settle (a shipper killed in the middle of one), reads
 * what is there.
 */
async function consistent<T>(path: string, read: (segs: LogSegment[]) => Promise<T>): Promise<T> {
  const deadline = Date.now() + SETTLE_MS;
  for (;;) {
    const late = Date.now() > deadline;
    const rec = await readBaseRecord(path);
    const segs =
      rec.rotating && !late ? undefined : await segmentsFor(path, late ? { ...rec, inode: undefined } : rec);
    if (segs !== undefined) {
      const value = await read(segs);
      if (late || (await readBaseRecord(path)).text === rec.text) return value;
    }
    await sleep(1);
  }
}

/** The files of a log stream, oldest first, with their logical offsets. */
export async function logSegments(path: string): Promise<LogSegment[]> {
  return consistent(path, async (segs) => segs);
}

/** The logical offsets of the oldest byte kept and of the end of the stream. */
export async function logBounds(path: string): Promise<{ start: number; end: number }> {
  return consistent(path, async (segs) => {
    const last = segs.at(-1);
    return { start: segs[0]?.start ?? 0, end: last === undefined ? 0 : last.start + last.size };
  });
}

/**
 * The logical offset at which the last `lines` lines start, across rotated files (a final newline
 * does not start a new line). The oldest offset kept when there are fewer lines; the end when
 * `lines` is 0.
 */
export async function tailOffset(path: string, lines: number): Promise<number> {
  return consistent(path, async (segs) => {
    const last = segs.at(-1);
    const end = last === undefined ? 0 : last.start + last.size;
    if (lines <= 0 || end === 0) return end;
    const buf = Buffer.alloc(CHUNK);
    let found = 0;
    for (let i = segs.length - 1; i >= 0; i--) {
      const seg = segs[i];
      if (seg === undefined || seg.size === 0) continue;
      const fh = await open(seg.path, 'r').catch(() => undefined);
      if (fh === undefined) continue;
      try {
        let hi = seg.size;
        while (hi > 0) {
          const lo = Math.max(0, hi - CHUNK);
          const { bytesRead } = await fh.read(buf, 0, hi - lo, lo);
          for (let j = bytesRead - 1; j >= 0; j--) {
            if (buf[j] !== 0x0a) continue;
            const at = seg.start + lo + j;
            if (at === end - 1) continue;
            found += 1;
            if (found === lines) return at + 1;
          }
          hi = lo;
        }
      } finally {
        await fh.close();
      }
    }
    return segs[0]?.start ?? 0;
  });
}

/**
 * Reads up to CHUNK bytes at logical offset `pos`. Returns where the bytes start (later than `pos`
 * when `pos` was rotated away) and the bytes (none at the end of the stream).
 */
async function readAt(path: string, pos: number): Promise<{ pos: number; data: Buffer }> {
  return consistent(path, async (segs) => {
    const first = segs[0];
    let at = pos;
    if (first !== undefined && at < first.start) at = first.start;
    // The current file (last) may have grown past its stat: read it to its real end.
    const seg = segs.find((s, i) => at < s.start + s.size || i === segs.length - 1);
    if (seg === undefined) return { pos: at, data: Buffer.alloc(0) };
    const isCurrent = seg === segs.at(-1);
    const want = isCurrent ? CHUNK : Math.min(CHUNK, seg.start + seg.size - at);
    if (at < seg.start) at = seg.start;
    const fh = await open(seg.path, 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (fh === undefined) return { pos: at, data: Buffer.alloc(0) };
    try {
      const buf = Buffer.allocUnsafe(want);
      const { bytesRead } = await fh.read(buf, 0, want, at - seg.start);
      return { pos: at, data: buf.subarray(0, bytesRead) };
    } finally {
      await fh.close();
    }
  });
}

export interface StreamLogOptions {
  /** The current log file (`…/logs/stdout.log`); rotated files are found next to it. */
  path: string;
  /** Logical byte offset to start from. */
  offset: number;
  /** Keep streaming what gets appended. */
  follow: boolean;
  /** While following: false once no more output can come (the allocation is finished). */
  isLive: () => boolean;
  /** How often to look for new data when no file-change notification arrives. */
  pollMs?: number;
  /** Ends a follow (the agent is shutting down). */
  signal?: AbortSignal;
  /** While following: how long the end of a line without its newline is held back (default 500 ms). */
  holdPartialLineMs?: number;
}

/**
 * Writes the log from logical `offset` to `out`, through the rotated files oldest first. With
 * `follow`, goes on writing what is appended (woken by fs.watch, with a periodic poll as fallback),
 * also across rotations, until `out` closes, or `isLive()` turns false and the log is drained. Does
 * not end `out`. Respects backpressure.
 */
export async function streamLog(out: Writable, opts: StreamLogOptions): Promise<void> {
  let pos = opts.offset;
  // 'close' is the usual news of a reader gone, but a stream closed under us (the server closing
  // every connection at shutdown) may not say so in time: the state is checked at every wake-up too.
  const gone = (): boolean =>
    out.destroyed ||
    out.writableEnded ||
    (out as { closed?: boolean }).closed === true ||
    opts.signal?.aborted === true;
  let closed = gone();
  let wake: (() => void) | undefined;
  let dirty = false;
  const poke = (): void => {
    dirty = true;
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onClose = (): void => {
    closed = true;
    poke();
  };
  out.once('close', onClose);
  opts.signal?.addEventListener('abort', onClose, { once: true });

  // While following a live task, the end of a line is held back until its newline (or until it has
  // waited PARTIAL_LINE_MS: a prompt, dots of progress), so that a follower shows whole lines when
  // the task writes a line in several writes.
  let partial: { at: number; since: number } | undefined;
  const holdMs = opts.holdPartialLineMs ?? PARTIAL_LINE_MS;
  const copy = async (hold: boolean): Promise<void> => {
    for (;;) {
      if (closed || gone()) return;
      const chunk = await readAt(opts.path, pos);
      let data = chunk.data;
      if (data.length === 0) return;
      if (chunk.pos > pos && pos > opts.offset) {
        // A follower that fell more than the log's limit behind: what it missed was rotated away.
        // It goes on at the next line rather than in the middle of one.
        const nl = data.indexOf(0x0a);
        if (nl < 0) {
          pos = chunk.pos + data.length;
          continue;
        }
        data = data.subarray(nl + 1);
        chunk.pos += nl + 1;
        if (data.length === 0) {
          pos = chunk.pos;
          continue;
        }
      }
      if (hold) {
        const nl = data.lastIndexOf(0x0a);
        if (nl + 1 < data.length && data.length < CHUNK) {
          // The chunk ends inside a line: hold its end back, unless it has waited long enough.
          // (The poll wakes this loop again in time to let it go.)
          const start = chunk.pos + nl + 1;
          if (partial?.at !== start) partial = { at: start, since: Date.now() };
          if (Date.now() - partial.since < holdMs) {
            if (nl < 0) return;
            data = data.subarray(0, nl + 1);
          }
        }
      }
      pos = chunk.pos + data.length;
      if (pos > (partial?.at ?? Infinity)) partial = undefined;
      if (!out.write(data)) {
        // Wait for room; a poke (the poll, the agent shutting down) also ends the wait, so that a
        // socket that died without a word cannot hold this loop forever.
        await new Promise<void>((resolve) => {
          const done = (): void => {
            out.off('drain', done);
            out.off('close', done);
            out.off('error', done);
            if (wake === done) wake = undefined;
            resolve();
          };
          out.on('drain', done);
          out.on('close', done);
          out.on('error', done);
          wake = done;
        });
      }
    }
  };

  let watcher: FSWatcher | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    if (opts.follow) timer = setInterval(poke, opts.pollMs ?? 250);
    await copy(opts.follow && opts.isLive());
    if (!opts.follow) return;
    try {
      // The directory: a rotation renames the current file, and a watch on it would follow it away.
      watcher = watch(dirname(opts.path), { persistent: false }, poke);
      watcher.on('error', () => undefined);
    } catch {
      // No notifications (file not there yet, or no inotify): the poll covers it.
    }
    while (!closed) {
      if (!dirty) await new Promise<void>((resolve) => (wake = resolve));
      dirty = false;
      if (closed || gone()) break;
      // Read liveness before copying: whatever was written before the end is then drained.
      const live = opts.isLive();
      // Once the task can write no more, its last line goes out whole or not.
      await copy(live);
      if (!live) break;
    }
  } finally {
    out.off('close', onClose);
    opts.signal?.removeEventListener('abort', onClose);
    watcher?.close();
    clearInterval(timer);
  }
}

// --- retention ---------------------------------------------------------------------------------------

/**
 * Removes the directories of allocations that ended more than `retentionMs` ago. The end of an
 * allocation is the newest modification time found in its directory, its task directories and their
 * log files (the agent stamps an allocation's directory with its end time when it forgets it).
 * `keep(id)` protects allocations the agent still runs or reports. Returns the ids removed.
 */
export async function gcAllocDirs(
  allocsDir: string,
  opts: { retentionMs: number; now: number; keep: (allocId: string) => boolean },
): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(allocsDir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const removed: string[] = [];
  for (const e of entries) {
    if (!e.isDirectory() || !isSafeAllocId(e.name) || opts.keep(e.name)) continue;
    const root = join(allocsDir, e.name);
    const last = await lastActivity(root);
    if (last === undefined || opts.now - last < opts.retentionMs) continue;
    // Checked again: the allocation may have come back while the directory was being looked at.
    if (opts.keep(e.name)) continue;
    // However deep the task nested its files (coreutils' rm, not Node's: see removeTree).
    await removeTree(root);
    removed.push(e.name);
  }
  return removed;
}

/** Newest mtime (ms) of the allocation dir, its task dirs and their log files. */
async function lastActivity(root: string): Promise<number | undefined> {
  let newest: number | undefined;
  const see = async (p: string): Promise<void> => {
    try {
      const t = (await stat(p)).mtimeMs;
      if (newest === undefined || t > newest) newest = t;
    } catch {
      // Gone meanwhile.
    }
  };
  await see(root);
  let tasks;
  try {
    tasks = await readdir(root, { withFileTypes: true });
  } catch {
    return newest;
  }
  for (const t of tasks) {
    if (!t.isDirectory()) continue;
    const logs = join(root, t.name, 'logs');
    await see(join(root, t.name));
    await see(logs);
    let names: string[] = [];
    try {
      names = await readdir(logs);
    } catch {
      // No logs dir (the shared `alloc` dir).
    }
    for (const n of names) await see(join(logs, n));
  }
  return newest;
}

/** Stamps an allocation directory with the time its allocation ended (read back by gcAllocDirs). */
export async function markAllocDirEnded(root: string, endedAt: number): Promise<void> {
  const t = new Date(endedAt);
  await utimes(root, t, t).catch(() => undefined);
}
