/** Tasks an earlier agent process started but never recorded (see killUnrecorded). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../core/log.ts';
import type { CgroupManager } from './cgroups/types.ts';
import { processHandleData } from './drivers/handle-state.ts';
import type { PersistedAlloc } from './state.ts';

/**
 * Kills what an earlier agent process started but never recorded: it died between making a
 * task's cgroup (or spawning its process) and writing the state file that names it. Such a task
 * would otherwise run on, unknown, beside the one started again for the same allocation. A task
 * cgroup is this agent's when its allocation has a directory in this agent's data dir (other
 * agents on the machine share the parent); it is recorded when a state file's handle names it.
 * Called before anything is started or re-attached. Processes that never joined a cgroup do not
 * start their task (drivers/launch.ts, the sandbox's entry), so the cgroups hold all there is.
 */
export async function killUnrecorded(
  cgroups: CgroupManager,
  saved: readonly PersistedAlloc[],
  root: string,
  logger: Logger,
): Promise<void> {
  const recorded = new Set<string>();
  for (const p of saved)
    for (const t of Object.values(p.tasks)) {
      const data = t.handle === undefined ? undefined : processHandleData(t.handle, t.handle.driver);
      if (data?.cgroup !== undefined) recorded.add(data.cgroup);
    }
  let names: string[];
  try {
    names = await cgroups.list();
  } catch (err) {
    logger.warn({ err }, 'could not list the task cgroups to find unrecorded tasks');
    return;
  }
  for (const name of names) {
    const allocId = name.slice(0, name.indexOf('.'));
    if (recorded.has(name) || allocId === '' || !existsSync(join(root, allocId))) continue;
    try {
      const cgroup = await cgroups.open(name);
      if (cgroup === undefined) continue;
      const pids = await cgroup.pids();
      await cgroup.killAll();
      await cgroup.destroy();
      logger.warn(
        { allocId, cgroup: name, pids },
        'killed a task the previous agent process started but never recorded',
      );
    } catch (err) {
      logger.error({ err, allocId, cgroup: name }, 'could not kill an unrecorded task');
    }
  }
}
