/**
 * Background write-back of the WAL (synchronous=normal only): after every WAL_SYNC_WRITES committed
 * writes, if none is in flight, an `fdatasync` of the `-wal` file on the libuv thread pool. SQLite
 * fsyncs the WAL before every checkpoint; from the commit that triggers it, on the event loop, that
 * fsync used to write back the whole WAL (16 MB: ~40 ms, about half of a lone writer's time per
 * transaction). Flushing earlier, off the event loop, leaves it little to do. It changes nothing
 * about what an acknowledgement means (the commit's WAL write still happens before it), so a
 * failure here only turns it off. See ../README.md ("Where a write's time goes").
 */
import { closeSync, fdatasync, openSync, realpathSync } from 'node:fs';
import type { Logger } from '../../core/log.ts';

/** Logical writes committed between two background `fdatasync`s of the WAL. */
export const WAL_SYNC_WRITES = 64;

export class WalFlusher {
  /** Background fdatasyncs started. */
  syncs = 0;
  private readonly log: Logger;
  /** Undefined: no flushing (memory, synchronous=full, or turned off after a failure). */
  private walPath: string | undefined;
  private walFd: number | undefined;
  /** The fdatasync in flight, if any. */
  private inFlight: Promise<void> | undefined;
  private writesSinceSync = 0;
  private closed = false;

  /** `dbPath` undefined: never flushes. */
  constructor(dbPath: string | undefined, log: Logger) {
    this.log = log;
    if (dbPath === undefined) return;
    try {
      // SQLite names the WAL after the database path with symbolic links resolved.
      this.walPath = `${realpathSync(dbPath)}-wal`;
    } catch (err) {
      log.warn({ err, path: dbPath }, 'no background flushing of the WAL');
    }
  }

  /** Counts `writes` committed to the WAL; starts a flush once WAL_SYNC_WRITES have accumulated. */
  written(writes: number): void {
    this.writesSinceSync += writes;
    if (this.inFlight !== undefined || this.writesSinceSync < WAL_SYNC_WRITES) return;
    if (this.walPath === undefined || this.closed) return;
    this.writesSinceSync = 0;
    try {
      // A second descriptor on the WAL: SQLite holds no locks on that file (they are on the main
      // file), so it cannot drop one when closed. The WAL file lives as long as the connection.
      this.walFd ??= openSync(this.walPath, 'r+');
    } catch (err) {
      this.log.warn({ err, path: this.walPath }, 'cannot open the WAL for background flushing');
      this.walPath = undefined;
      return;
    }
    const fd = this.walFd;
    this.syncs++;
    this.inFlight = new Promise<void>((resolve) => {
      fdatasync(fd, (err) => {
        this.inFlight = undefined;
        if (err !== null) {
          this.log.warn({ err, path: this.walPath }, 'background flush of the WAL failed; turned off');
          this.walPath = undefined;
        }
        resolve();
      });
    });
  }

  /** Waits for the flush in flight and lets go of the WAL. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.inFlight !== undefined) await this.inFlight;
    if (this.walFd !== undefined) {
      closeSync(this.walFd);
      this.walFd = undefined;
    }
  }
}
