/**
 * Reading task logs for the agent's log endpoint: where to start (an offset, or the last N lines)
 * and streaming a file to a writable, optionally following it as it grows.
 */
import { watch, type FSWatcher } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';

const CHUNK = 64 * 1024;

/** Size of the file in bytes; 0 when it does not exist yet. */
export async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

/**
 * The byte offset at which the last `lines` lines of the file start (a final newline does not start
 * a new line). 0 when the file has fewer lines; the file size when `lines` is 0.
 */
export async function tailOffset(path: string, lines: number): Promise<number> {
  const size = await fileSize(path);
  if (lines <= 0 || size === 0) return size;
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(CHUNK);
    let end = size;
    let found = 0;
    while (end > 0) {
      const start = Math.max(0, end - CHUNK);
      const { bytesRead } = await fh.read(buf, 0, end - start, start);
      for (let i = bytesRead - 1; i >= 0; i--) {
        if (buf[i] !== 0x0a) continue;
        const at = start + i;
        if (at === size - 1) continue;
        found += 1;
        if (found === lines) return at + 1;
      }
      end = start;
    }
    return 0;
  } finally {
    await fh.close();
  }
}

export interface StreamLogOptions {
  path: string;
  /** Byte offset to start from. */
  offset: number;
  /** Keep streaming what gets appended. */
  follow: boolean;
  /** While following: false once no more output can come (the allocation is finished). */
  isLive: () => boolean;
  /** How often to look for new data when no file-change notification arrives. */
  pollMs?: number;
}

/**
 * Writes the file from `offset` to `out`. With `follow`, goes on writing what is appended (woken by
 * fs.watch, with a periodic poll as fallback) until `out` closes, or `isLive()` turns false and the
 * file is drained. Does not end `out`. Respects backpressure.
 */
export async function streamLog(out: Writable, opts: StreamLogOptions): Promise<void> {
  let pos = opts.offset;
  let fh: FileHandle | undefined;
  let closed = out.destroyed || out.writableEnded;
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

  const copy = async (): Promise<void> => {
    if (fh === undefined) {
      try {
        fh = await open(opts.path, 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
    }
    for (;;) {
      if (closed) return;
      const buf = Buffer.allocUnsafe(CHUNK);
      const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
      if (bytesRead === 0) return;
      pos += bytesRead;
      if (!out.write(buf.subarray(0, bytesRead))) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            out.off('drain', done);
            out.off('close', done);
            resolve();
          };
          out.on('drain', done);
          out.on('close', done);
        });
      }
    }
  };

  let watcher: FSWatcher | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    await copy();
    if (!opts.follow) return;
    try {
      watcher = watch(opts.path, { persistent: false }, poke);
      watcher.on('error', () => undefined);
    } catch {
      // No notifications (file not there yet, or no inotify): the poll covers it.
    }
    timer = setInterval(poke, opts.pollMs ?? 250);
    while (!closed) {
      if (!dirty) await new Promise<void>((resolve) => (wake = resolve));
      dirty = false;
      if (closed) break;
      // Read liveness before copying: whatever was written before the end is then drained.
      const live = opts.isLive();
      await copy();
      if (!live) break;
    }
  } finally {
    out.off('close', onClose);
    watcher?.close();
    clearInterval(timer);
    await fh?.close();
  }
}
