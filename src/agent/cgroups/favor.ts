/**
 * Quick moves into cgroups. Every task start moves a process into the task's cgroup (writes its pid
 * to `cgroup.procs`). The kernel guards moves with one lock shared by every fork and exit of the
 * machine, tuned for forks: a move first waits for an RCU grace period, unless another move ran
 * within the last one. Task starts a few milliseconds apart each pay a whole grace period: 1–20 ms
 * on a 2-core VM (bench/isolation.ts), more than the rest of an isolated start together.
 *
 * The `favordynmods` option of a cgroup hierarchy (Linux 6.0 and later) turns that tuning around
 * for the whole machine: moves no longer wait, and each fork and exit pays one more memory barrier
 * (nanoseconds). The kernel's documentation recommends it where cgroups change often, which is
 * what a node of a cluster does. It is a property of the lock, not of one hierarchy: mounting any
 * hierarchy with it is enough, and it holds while that mount exists. The agent mounts a named v1
 * hierarchy without controllers (it limits nothing, and processes stay in its root) at
 * `/run/unum/cgroup-favordynmods`. It stays mounted after the agent stops (tasks outlive the
 * agent; the next start finds it), until reboot or `umount /run/unum/cgroup-favordynmods`. The
 * agent's `--no-favordynmods` leaves the kernel as it is.
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import type { Mount } from './mountinfo.ts';

export const FAVOR_DYNMODS_DIR = '/run/unum/cgroup-favordynmods';
const HIERARCHY_NAME = 'unum-favordynmods';

export type FavorDynmodsResult =
  { state: 'already' | 'mounted'; mountPoint: string } | { state: 'unavailable'; problem: string };

/** The mount of a cgroup hierarchy that has `favordynmods` on, if any. */
export function favoringMount(mounts: readonly Mount[]): Mount | undefined {
  return mounts.find(
    (m) => (m.fsType === 'cgroup' || m.fsType === 'cgroup2') && m.superOptions.includes('favordynmods'),
  );
}

/**
 * Makes moves into cgroups quick (see the top of this file): nothing to do when a hierarchy has
 * `favordynmods` on already, else mounts the named hierarchy at `dir`. Needs root; never rejects:
 * a kernel without the option (before 6.0) or without v1 named hierarchies is `unavailable`, with
 * what `mount` said.
 */
export async function favorDynamicMoves(
  mounts: readonly Mount[],
  dir = FAVOR_DYNMODS_DIR,
): Promise<FavorDynmodsResult> {
  const found = favoringMount(mounts);
  if (found !== undefined) return { state: 'already', mountPoint: found.mountPoint };
  try {
    await mkdir(dir, { recursive: true, mode: 0o755 });
  } catch (err) {
    return { state: 'unavailable', problem: `could not make ${dir}: ${(err as Error).message}` };
  }
  const problem = await new Promise<string | undefined>((resolve) => {
    execFile(
      'mount',
      ['-t', 'cgroup', '-o', `none,name=${HIERARCHY_NAME},favordynmods`, HIERARCHY_NAME, dir],
      { timeout: 10_000 },
      (err, _stdout, stderr) => {
        if (err === null) return resolve(undefined);
        resolve(stderr.trim().split('\n').at(-1) || err.message);
      },
    );
  });
  return problem === undefined
    ? { state: 'mounted', mountPoint: dir }
    : { state: 'unavailable', problem: `mount: ${problem}` };
}
