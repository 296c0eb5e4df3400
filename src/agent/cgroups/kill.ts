/**
 * The loop both versions end killAll() with: kill what is left, look again, until the cgroup is
 * empty or the deadline passes. Looking again matters: a process that was being moved in (the
 * wrapper writes its pid to cgroup.procs while we kill) or that forked just before the kill shows
 * up on the next round.
 */
import { InternalError, UnavailableError } from '../../core/errors.ts';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from '../../core/log.ts';
import { sigkill } from './files.ts';

export interface KillUntilEmptyOptions {
  /** Pids in the cgroup now. */
  list: () => Promise<number[]>;
  /** Kills them (v1: SIGKILL each pid; v2: write 1 to cgroup.kill). */
  kill: (pids: number[]) => Promise<void>;
  /** The cgroup, for the error message. */
  path: string;
  timeoutMs: number;
  logger: Logger;
}

/** Resolves once `list()` is empty; rejects with the pids still there after `timeoutMs`. */
export async function killUntilEmpty(options: KillUntilEmptyOptions): Promise<void> {
  const deadline = performance.now() + options.timeoutMs;
  let wait = 1;
  let round = 0;
  for (;;) {
    const pids = await options.list();
    if (pids.length === 0) return;
    if (performance.now() >= deadline)
      throw new UnavailableError(
        `cgroup ${options.path} still holds processes ${pids.join(', ')} ${options.timeoutMs} ms after SIGKILL (stuck in uninterruptible sleep, e.g. on a hung NFS mount?)`,
      );
    if (round > 0)
      options.logger.debug({ cgroup: options.path, pids, round }, 'cgroup not empty yet: killing again');
    await options.kill(pids);
    round++;
    await delay(wait);
    wait = Math.min(wait * 2, 50);
  }
}

/** Polls `check` until it is true or `timeoutMs` passes; resolves with the last answer. */
export async function pollUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  let wait = 1;
  for (;;) {
    if (await check()) return true;
    if (performance.now() >= deadline) return false;
    await delay(wait);
    wait = Math.min(wait * 2, 20);
  }
}

/** Refuses to go on when the agent's own process is among `pids` (it was put in a task's cgroup). */
export function refuseSelf(pids: readonly number[]): void {
  if (pids.includes(process.pid))
    throw new InternalError(
      `the agent itself (pid ${process.pid}) is in this task cgroup: refusing to kill it`,
    );
}

/** SIGKILL to each pid (gone ones are skipped), never to the agent itself. */
export function killEach(pids: readonly number[]): void {
  refuseSelf(pids);
  for (const pid of pids) sigkill(pid);
}

/** The waits of killAll() and destroy(), shared by the v1 and v2 managers. */
export interface CgroupTimeoutOptions {
  /** How long killAll() keeps killing before it gives up (default 10 s). */
  killTimeoutMs?: number;
  /** How long killAll() waits for the freezer before killing anyway (default 2 s). */
  freezeTimeoutMs?: number;
  /** How long destroy() retries EBUSY (default 2 s). */
  removeTimeoutMs?: number;
}

export interface Timeouts {
  kill: number;
  freeze: number;
  remove: number;
}

export function timeoutsFrom(options: CgroupTimeoutOptions): Timeouts {
  return {
    kill: options.killTimeoutMs ?? 10_000,
    freeze: options.freezeTimeoutMs ?? 2_000,
    remove: options.removeTimeoutMs ?? 2_000,
  };
}
