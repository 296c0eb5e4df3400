/**
 * Task logs on the node: rotation, reading (an offset, or the last N lines) across rotated files,
 * streaming (optionally following), and the garbage collection of old allocation directories.
 *
 * Files of one stream of a task, oldest first:
 *
 *     logs/stdout.log.4 … stdout.log.2  stdout.log.1  stdout.log      (current: the task writes here)
 *     logs/.stdout.log.base                 logical offset of the first byte of stdout.log
 *
 * Tasks write straight into `stdout.log` through a file descriptor opened in append mode, so they keep
 * logging while the agent is down. The agent rotates by **copy and truncate**: when the current file
 * has passed the size limit it shifts the rotated files (dropping the oldest), copies the current file
 * into `.1` and truncates it to zero; the task's next write (O_APPEND) lands at the new end. Whatever
 * the task writes between the agent's last read of the file and the truncate (a few microseconds) is
 * lost: that is the price of rotating a file the agent does not own the writer of.
 *
 * Offsets are **logical**: byte N of everything the task wrote to that stream on this node, stable
 * across rotations and agent restarts (the base of the current file is kept in `.stdout.log.base`).
 * Reads go through the files oldest first; an offset older than what is still kept starts at the
 * oldest byte kept, and bytes lost in a rotation's window never had an offset.
 *
 * Readers and the rotator live in the same agent process: a per-file generation counter (odd while a
 * rotation runs) lets a reader detect a rotation that happened during its read and read again.
 */
import { fstatSync, ftruncateSync, readSync, watch, writeSync, type FSWatcher } from 'node:fs';
import { open, readFile, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import { isSafeAllocId } from './runner/alloc-dir.ts';
import { writeFileAtomic } from './state.ts';

const CHUNK = 64 * 1024;
/** How long a follower holds back the end of a line that has no newline yet (by default). */
const PARTIAL_LINE_MS = 500;
/** The most a rotation copies synchronously, right before its truncate. */
const SYNC_CATCH_UP = 1024 * 1024;
/** More rotated files than this are never looked for. */
const MAX_ROTATED = 1000;

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

// --- rotation bookkeeping (one agent process) -----------------------------------------------------

interface FileState {
  /** Even when idle, odd while a rotation runs. */
  generation: number;
  /** Resolves when the running rotation ends. */
  idle: Promise<void>;
  base: number | undefined;
}

const files = new Map<string, FileState>();

function fileState(path: string): FileState {
  let s = files.get(path);
  if (s === undefined) {
    s = { generation: 0, idle: Promise.resolve(), base: undefined };
    files.set(path, s);
  }
  return s;
}

function baseFile(path: string): string {
  return join(dirname(path), `.${basename(path)}.base`);
}

async function readBase(path: string): Promise<number> {
  const s = fileState(path);
  if (s.base !== undefined) return s.base;
  let base = 0;
  try {
    const n = Number((await readFile(baseFile(path), 'utf8')).trim());
    if (Number.isSafeInteger(n) && n >= 0) base = n;
  } catch {
    // No rotation yet.
  }
  s.base ??= base;
  return s.base;
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Size of the file in bytes; 0 when it does not exist yet. */
export async function fileSize(path: string): Promise<number> {
  return (await sizeOf(path)) ?? 0;
}

/**
 * Rotates `path` when it has passed `maxBytes / maxFiles` (copy and truncate; see the top of this
 * file). Of a file that grew far beyond the limit (the agent was down), only the last `maxBytes` are
 * kept. Returns whether it rotated. Never runs twice at once for one file.
 */
export async function rotateLog(path: string, limits: LogLimits): Promise<boolean> {
  const s = fileState(path);
  const threshold = Math.max(1, Math.ceil(limits.maxBytes / Math.max(1, limits.maxFiles)));
  if (((await sizeOf(path)) ?? 0) < threshold) return false;
  while (s.generation % 2 === 1) await s.idle;
  const done = Promise.withResolvers<void>();
  s.idle = done.promise;
  s.generation += 1;
  try {
    // Looked at again now that no other rotation can run.
    if (((await sizeOf(path)) ?? 0) < threshold) return false;
    const base = await readBase(path);
    const keepRotated = Math.max(0, Math.floor(limits.maxFiles) - 1);
    const moved = await copyAndTruncate(path, keepRotated, limits.maxBytes);
    s.base = base + moved;
    await writeFileAtomic(baseFile(path), `${s.base}\n`);
    return true;
  } finally {
    s.generation += 1;
    done.resolve();
  }
}

/** For tests: a write landing in the copy-truncate window, made to happen on purpose. */
export const rotationHooks: { beforeTruncate?: ((path: string) => void) | undefined } = {};

/** Removes rotated files numbered `keep + 1` and above. */
async function dropRotated(path: string, keep: number): Promise<void> {
  const prefix = `${basename(path)}.`;
  for (const name of await readdir(dirname(path))) {
    if (!name.startsWith(prefix)) continue;
    const k = Number(name.slice(prefix.length));
    if (Number.isInteger(k) && k > keep) await rm(join(dirname(path), name), { force: true });
  }
}

async function renameIfExists(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Shifts the rotated files (keeping `keepRotated`), copies the file into `.1` (when one is kept) and
 * truncates it, catching up with what the task appends meanwhile so that only the writes between
 * the last read and the truncate are lost. Of a file longer than `maxCopy` (it grew while the agent
 * was down) only the last `maxCopy` bytes are copied, from the first line that starts in them, and
 * the older rotated files are dropped: they would no longer join up with it. When writes were lost
 * and the copy ends inside a line, that line is left out of `.1` (a copy without any newline gets
 * one instead). Returns the length of the file that was moved out (copied, with that newline, or
 * skipped; not the line left out): the logical offset advances by that much.
 */
async function copyAndTruncate(path: string, keepRotated: number, maxCopy: number): Promise<number> {
  const src = await open(path, 'r+');
  try {
    const size = (await src.stat()).size;
    if (keepRotated === 0) {
      await src.truncate(0);
      return size;
    }
    const buf = Buffer.allocUnsafe(CHUNK);
    let skip = Math.max(0, size - maxCopy);
    if (skip > 0) {
      // Start at a line: the bytes before the first newline are the end of a line that is not kept.
      const { bytesRead } = await src.read(buf, 0, Math.min(CHUNK, size - skip), skip);
      const nl = buf.subarray(0, bytesRead).indexOf(0x0a);
      if (nl >= 0 && nl + 1 < bytesRead) skip += nl + 1;
    }
    await dropRotated(path, skip > 0 ? 0 : keepRotated);
    if (skip === 0)
      for (let k = keepRotated - 1; k >= 1; k--) await renameIfExists(`${path}.${k}`, `${path}.${k + 1}`);
    const to = `${path}.1`;
    const tmp = `${to}.tmp`;
    const out = await open(tmp, 'w', 0o644);
    let pos = skip;
    // Just after the last newline copied (in the file's offsets).
    let lineEnd = pos;
    const copied = (n: number): void => {
      const nl = buf.subarray(0, n).lastIndexOf(0x0a);
      if (nl >= 0) lineEnd = pos + nl + 1;
      pos += n;
    };
    try {
      let end = size;
      for (let round = 0; round < 16 && pos < end; round++) {
        while (pos < end) {
          const { bytesRead } = await src.read(buf, 0, Math.min(CHUNK, end - pos), pos);
          if (bytesRead === 0) break;
          await out.write(buf, 0, bytesRead);
          copied(bytesRead);
        }
        end = (await src.stat()).size;
      }
      // The last catch-up is synchronous, up to the end of the file (at most SYNC_CATCH_UP bytes):
      // what the task writes meanwhile would otherwise land in a trip through the thread pool.
      for (let caught = 0; caught < SYNC_CATCH_UP;) {
        const n = readSync(src.fd, buf, 0, CHUNK, pos);
        if (n === 0) break;
        writeSync(out.fd, buf, 0, n);
        copied(n);
        caught += n;
      }
      rotationHooks.beforeTruncate?.(path);
      // Writes that land between the last read and the truncate are lost (the copy-truncate
      // window): microseconds, with no turn of the event loop in between.
      const lost = fstatSync(src.fd).size > pos;
      ftruncateSync(src.fd, 0);
      // The copy may end inside a line whose rest was just lost (a writer that outran the copy, or
      // a write seen half done). That line is dropped: it would run into the next file's first one,
      // and a follower (which holds back a line until its newline) has not shown it. A copy without
      // any newline (one line longer than the file) is ended instead.
      if (lost && lineEnd < pos) {
        if (lineEnd > skip) {
          ftruncateSync(out.fd, lineEnd - skip);
          pos = lineEnd;
        } else {
          writeSync(out.fd, '\n');
          pos += 1;
        }
      }
    } finally {
      await out.close();
    }
    await rename(tmp, to);
    return pos;
  } finally {
    await src.close();
  }
}

// --- reading ----------------------------------------------------------------------------------------

export interface LogSegment {
  path: string;
  /** Logical offset of the file's first byte. */
  start: number;
  size: number;
}

/** The files of a log stream, oldest first, with their logical offsets (consistent when `generation` did not move). */
export async function logSegments(path: string): Promise<LogSegment[]> {
  const base = await readBase(path);
  const segs: LogSegment[] = [{ path, start: base, size: (await sizeOf(path)) ?? 0 }];
  let start = base;
  for (let k = 1; k <= MAX_ROTATED; k++) {
    const p = `${path}.${k}`;
    const size = await sizeOf(p);
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

/** Runs `read` until no rotation of `path` overlapped it. */
async function consistent<T>(path: string, read: () => Promise<T>): Promise<T> {
  const s = fileState(path);
  for (;;) {
    await s.idle;
    const g = s.generation;
    if (g % 2 === 1) continue;
    const value = await read();
    if (s.generation === g) return value;
  }
}

/** The logical offsets of the oldest byte kept and of the end of the stream. */
export async function logBounds(path: string): Promise<{ start: number; end: number }> {
  return consistent(path, async () => {
    const segs = await logSegments(path);
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
  return consistent(path, async () => {
    const segs = await logSegments(path);
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
  return consistent(path, async () => {
    const segs = await logSegments(path);
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
  // waited PARTIAL_LINE_MS: a prompt, dots of progress): a rotation that loses the rest of a line
  // drops what was written of it, and a follower must not have shown it (see copyAndTruncate).
  let partial: { at: number; since: number } | undefined;
  const holdMs = opts.holdPartialLineMs ?? PARTIAL_LINE_MS;
  const copy = async (hold: boolean): Promise<void> => {
    for (;;) {
      if (closed || gone()) return;
      const chunk = await readAt(opts.path, pos);
      let data = chunk.data;
      if (data.length === 0) return;
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
      // Copy-truncate keeps the current file's inode: the watch survives rotations.
      watcher = watch(opts.path, { persistent: false }, poke);
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
    await rm(root, { recursive: true, force: true });
    for (const path of files.keys()) if (path.startsWith(`${root}/`)) files.delete(path);
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
