/**
 * The workload identity hook: each task of a running allocation finds its signed identity token
 * (a JWT naming its namespace, job, group, allocation and task) in `secrets/identity.jwt` of its
 * directory (`UNUM_IDENTITY_FILE`), owned by the task's user, rewritten before it expires. An
 * allocation hook, so that a re-attached allocation keeps rotating its tokens after an agent
 * restart. A server that cannot be reached does not stop the tasks: the hook retries in the
 * background.
 */
import { chown, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../core/log.ts';
import type { Allocation } from '../../core/types.ts';
import { taskDirPaths } from './alloc-dir.ts';
import type { AllocHook } from './hooks.ts';

export const IDENTITY_FILE = 'identity.jwt';

export type FetchIdentity = (
  allocId: string,
) => Promise<{ tokens: Record<string, string>; expiresAt: number }>;

/** Writes `token` into the task's secrets dir, owned by whoever owns that dir (the task's user once it ran). */
async function writeToken(secretsDir: string, token: string): Promise<void> {
  const file = join(secretsDir, IDENTITY_FILE);
  const tmp = `${file}.tmp`;
  // A leftover of a crash (mode 0400) would refuse every later write.
  await rm(tmp, { force: true });
  await writeFile(tmp, `${token}\n`, { mode: 0o400 });
  const owner = await stat(secretsDir);
  if (process.getuid?.() === 0) await chown(tmp, owner.uid, owner.gid);
  await rename(tmp, file);
}

export function identityHook(
  alloc: Allocation,
  allocsDir: string,
  fetchIdentity: FetchIdentity,
  logger: Logger,
  retryMs = 5_000,
  /** How long the tasks' start waits for the first tokens. */
  startWaitMs = 2_000,
): AllocHook {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  // Asked for at once, while the allocation's directories and uid are made: off the path to the
  // tasks' start. Its failure counts only if prestart uses it.
  let early: ReturnType<FetchIdentity> | undefined = fetchIdentity(alloc.id);
  early.catch(() => undefined);
  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => void refresh(), Math.max(1_000, ms));
    timer.unref();
  };
  async function refresh(): Promise<void> {
    try {
      const pending = early ?? fetchIdentity(alloc.id);
      early = undefined;
      const { tokens, expiresAt } = await pending;
      for (const [task, token] of Object.entries(tokens))
        await writeToken(taskDirPaths(allocsDir, alloc.id, task).secrets, token);
      // Rewritten half-way through its life: a server unreachable for a while is survived.
      schedule((expiresAt - Date.now()) / 2);
    } catch (err) {
      if (stopped) return;
      logger.warn({ err, allocId: alloc.id }, 'could not fetch the workload identity; retrying');
      schedule(retryMs);
    }
  }
  return {
    name: 'identity',
    // A server that is slow or silent does not hold the tasks back: the refresh goes on behind.
    prestart: () => Promise.race([refresh(), new Promise<void>((r) => setTimeout(r, startWaitMs).unref())]),
    stop: () => {
      stopped = true;
      early = undefined;
      if (timer) clearTimeout(timer);
    },
  };
}
