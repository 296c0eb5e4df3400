/**
 * Detection: which cgroup version this machine has, whether unum can use it, and a CgroupManager for
 * it. Whatever stops it is said in one sentence for the operator (`reason`): what was found, what is
 * wrong, what to do about it. See README.md.
 *
 *   <root>/cgroup.controllers exists?  ── yes ──▶ v2: memory, cpu, pids available? enable them down
 *          │ no                                       the parent chain, parent holds no processes?
 *          ▼
 *   v1 controller hierarchies (mount table, else the layout of <root>): memory, cpu, cpuacct, pids,
 *   freezer all there? `<hierarchy>/<parent>` can be made and written in each?
 */
import { constants } from 'node:fs';
import { access, mkdir, readdir, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidError } from '../../core/errors.ts';
import { silentLogger, type Logger } from '../../core/log.ts';
import {
  errnoOf,
  exists,
  isDirectory,
  makeCgroupDir,
  parsePidList,
  readControl,
  readOptionalControl,
  writeControl,
} from './files.ts';
import { mountOf, readMounts, type Mount } from './mountinfo.ts';
import { isValidCgroupName } from './names.ts';
import type { CgroupDetection, CgroupVersion } from './types.ts';
import { V1_CONTROLLERS, V1CgroupManager, type V1Controller, type V1Hierarchies } from './v1.ts';
import { V2_CONTROLLERS, V2CgroupManager } from './v2.ts';

export type * from './types.ts';
export { CgroupFileError, writeControl, writeControlSync } from './files.ts';
export { taskCgroupName, validateCgroupName, isValidCgroupName } from './names.ts';
export { cpuShares, cpuWeightFromShares, cpuQuotaMicros } from './limits.ts';
export { V1CgroupManager, type V1ManagerOptions, type V1Hierarchies } from './v1.ts';
export { V2CgroupManager, type V2ManagerOptions } from './v2.ts';
export { favorDynamicMoves, favoringMount, FAVOR_DYNMODS_DIR, type FavorDynmodsResult } from './favor.ts';

export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';
export const DEFAULT_V1_PARENT = 'unum';
export const DEFAULT_V2_PARENT = 'unum.slice';

const ENFORCE = 'to enforce memory, CPU and process limits';

export interface DetectCgroupsOptions {
  /** Where cgroup filesystems are mounted (default `/sys/fs/cgroup`). */
  root?: string;
  /**
   * The unum parent cgroup, relative to the root of each hierarchy; `/` separates levels (default
   * `unum` on v1, `unum.slice` on v2).
   */
  parent?: string;
  logger?: Logger;
  /** The mount table to read (default `/proc/self/mountinfo`). */
  mountinfoPath?: string;
  /** Passed to the manager: how long killAll() keeps killing before it gives up (default 10 s). */
  killTimeoutMs?: number;
}

/**
 * Finds the cgroup version and prepares the unum parent (made if missing; on v2 its controllers are
 * enabled). Never rejects for a machine that can not enforce limits: that is `{ available: false,
 * reason }`. Rejects with InvalidError for a malformed `parent`. Idempotent: running it again (an
 * agent restart) re-uses the parent and leaves task cgroups alone.
 */
export async function detectCgroups(options: DetectCgroupsOptions = {}): Promise<CgroupDetection> {
  const root = options.root ?? DEFAULT_CGROUP_ROOT;
  const logger = options.logger ?? silentLogger();
  if (options.parent !== undefined) validateParent(options.parent);
  const mounts = await readMounts(options.mountinfoPath);
  const v2 = await exists(join(root, 'cgroup.controllers'));
  let detection: CgroupDetection;
  try {
    detection = v2
      ? await detectV2(root, options.parent ?? DEFAULT_V2_PARENT, mounts, logger, options)
      : await detectV1(root, options.parent ?? DEFAULT_V1_PARENT, mounts, logger, options);
  } catch (err) {
    // A file that could not be read (CgroupFileError names it): still an answer, not a crash.
    const message = err instanceof Error ? err.message : String(err);
    detection = unavailable(v2 ? 'v2' : 'v1', `cgroups ${v2 ? 'v2' : 'v1'} found but ${message} ${ENFORCE}`);
  }
  if (detection.available)
    logger.debug({ version: detection.manager.version, root }, 'cgroups: task limits can be enforced');
  else logger.debug({ version: detection.version, root, reason: detection.reason }, 'cgroups: not usable');
  return detection;
}

/** Files of every cgroup v1 directory: a cgroup of that name can not be made beside them. */
const V1_CONTROL_FILES = new Set(['tasks', 'notify_on_release', 'release_agent', 'cgroup.procs']);

function validateParent(parent: string): void {
  const segments = parent.split('/');
  const clash = segments.find((s) => V1_CONTROL_FILES.has(s));
  if (clash !== undefined)
    throw new InvalidError(
      `invalid cgroup parent ${JSON.stringify(parent)}: "${clash}" is the name of a cgroup's own file; choose another name`,
      { details: { fields: [{ path: 'parent', message: `"${clash}" is a cgroup file name` }] } },
    );
  if (!segments.every(isValidCgroupName))
    throw new InvalidError(
      `invalid cgroup parent ${JSON.stringify(parent)}: expected names of letters, digits, '_', '.' or '-' separated by '/'`,
      { details: { fields: [{ path: 'parent', message: 'not a relative cgroup path' }] } },
    );
}

function unavailable(version: CgroupVersion | 'none', reason: string): CgroupDetection {
  return { available: false, version, reason };
}

function listWords(items: readonly string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1] ?? ''}`;
}

/** The operator's sentence for a directory unum could not make or write to. */
function notWritable(version: CgroupVersion, path: string, code: string): string {
  const found = `cgroups ${version} found but`;
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return `${found} ${path} is not writable: run the agent as root ${ENFORCE}`;
    case 'EROFS':
      return `${found} ${path} is mounted read-only: remount it read-write (in a container: run it privileged, or with a writable cgroup filesystem) ${ENFORCE}`;
    default:
      return `${found} ${path} can not be written to (${code}): unum needs it ${ENFORCE}`;
  }
}

/** Read-only by its mount options (Docker mounts /sys/fs/cgroup read-only unless privileged). */
async function readOnlyMount(mounts: readonly Mount[], path: string): Promise<boolean> {
  const real = await realpath(path).catch(() => path);
  return mountOf(mounts, real)?.mountOptions.includes('ro') ?? false;
}

/** Whether this process may create and write in `path`; the errno when not. */
async function writeAccess(path: string): Promise<string | undefined> {
  try {
    await access(path, constants.W_OK);
    return undefined;
  } catch (err) {
    return errnoOf(err);
  }
}

// ---------------------------------------------------------------------------------------------- v1

/**
 * Where each v1 controller is mounted under `root`: from the mount table (a `cgroup` mount whose
 * options name the controller), else from the layout (`<root>/<controller>`, or a co-mounted
 * `<root>/cpu,cpuacct`, holding a cgroup.procs).
 */
export async function findV1Hierarchies(
  root: string,
  mounts: readonly Mount[],
): Promise<Partial<V1Hierarchies>> {
  const found: Partial<V1Hierarchies> = {};
  const prefix = root.endsWith('/') ? root : `${root}/`;
  for (const m of mounts) {
    if (m.fsType !== 'cgroup' || !m.mountPoint.startsWith(prefix)) continue;
    for (const c of V1_CONTROLLERS)
      if (m.superOptions.includes(c) && found[c] === undefined) found[c] = m.mountPoint;
  }
  let entries: string[] | undefined;
  for (const c of V1_CONTROLLERS) {
    if (found[c] !== undefined) continue;
    const direct = join(root, c);
    // Real paths: `cpu` and `cpuacct` are often symlinks to one `cpu,cpuacct` mount.
    if (await exists(join(direct, 'cgroup.procs'))) {
      found[c] = await realpath(direct);
      continue;
    }
    entries ??= await readdir(root).catch(() => []);
    for (const e of entries)
      if (e.split(',').includes(c) && (await exists(join(root, e, 'cgroup.procs')))) {
        found[c] = await realpath(join(root, e));
        break;
      }
  }
  return found;
}

async function detectV1(
  root: string,
  parent: string,
  mounts: readonly Mount[],
  logger: Logger,
  options: DetectCgroupsOptions,
): Promise<CgroupDetection> {
  const found = await findV1Hierarchies(root, mounts);
  const missing = V1_CONTROLLERS.filter((c) => found[c] === undefined);
  if (missing.length === V1_CONTROLLERS.length) {
    const what = (await isDirectory(root))
      ? `no cgroup filesystem found at ${root} (neither cgroups v2's cgroup.controllers nor cgroups v1 controller directories)`
      : `no cgroup filesystem found: ${root} does not exist`;
    return unavailable('none', `${what}: mount cgroups (most Linux distributions do at boot) ${ENFORCE}`);
  }
  if (missing.length > 0) {
    const one = missing.length === 1;
    return unavailable(
      'v1',
      `cgroups v1 found at ${root} but the ${listWords(missing)} controller${one ? ' is' : 's are'} not mounted: mount ${one ? 'it' : 'them'} (e.g. mount -t cgroup -o ${missing[0] ?? ''} cgroup ${join(root, missing[0] ?? '')}) ${ENFORCE}`,
    );
  }
  const hierarchies = found as V1Hierarchies;
  const dirs = [...new Set(V1_CONTROLLERS.map((c: V1Controller) => hierarchies[c]))];
  for (const dir of dirs) {
    if (await readOnlyMount(mounts, dir)) return unavailable('v1', notWritable('v1', dir, 'EROFS'));
    const parentDir = join(dir, parent);
    try {
      await mkdir(parentDir, { recursive: true });
    } catch (err) {
      return unavailable('v1', notWritable('v1', dir, errnoOf(err)));
    }
    const denied = await writeAccess(parentDir);
    if (denied !== undefined) return unavailable('v1', notWritable('v1', parentDir, denied));
  }
  const managerOptions: ConstructorParameters<typeof V1CgroupManager>[0] = { hierarchies, parent, logger };
  if (options.killTimeoutMs !== undefined) managerOptions.killTimeoutMs = options.killTimeoutMs;
  return { available: true, manager: new V1CgroupManager(managerOptions) };
}

// ---------------------------------------------------------------------------------------------- v2

async function detectV2(
  root: string,
  parent: string,
  mounts: readonly Mount[],
  logger: Logger,
  options: DetectCgroupsOptions,
): Promise<CgroupDetection> {
  const controllersFile = join(root, 'cgroup.controllers');
  const available = (await readControl(controllersFile)).trim().split(/\s+/).filter(Boolean);
  const missing = V2_CONTROLLERS.filter((c) => !available.includes(c));
  if (missing.length > 0) {
    const one = missing.length === 1;
    return unavailable(
      'v2',
      `cgroups v2 found but the ${listWords(missing)} controller${one ? ' is' : 's are'} not available in ${controllersFile} (available: ${available.join(' ') || 'none'}): ${one ? 'it is' : 'they are'} bound to a cgroups v1 hierarchy or not delegated to this cgroup (systemd: Delegate=yes); make ${one ? 'it' : 'them'} available ${ENFORCE}`,
    );
  }
  if (await readOnlyMount(mounts, root)) return unavailable('v2', notWritable('v2', root, 'EROFS'));

  // Each level down to the unum parent enables the controllers for the next one; the unum parent
  // enables them for the task cgroups.
  let dir = root;
  for (const segment of parent.split('/')) {
    if (dir !== root) {
      const procs = await procsOf(dir);
      if (procs.length > 0) return unavailable('v2', internalProcesses(dir, root, procs));
    }
    const problem = await enableControllers(dir, root);
    if (problem !== undefined) return unavailable('v2', problem);
    try {
      await makeCgroupDir(join(dir, segment));
    } catch (err) {
      return unavailable('v2', notWritable('v2', dir, errnoOf(err)));
    }
    dir = join(dir, segment);
  }
  // "No internal processes": a cgroup with processes can not give controllers to children. The
  // root is exempt (but a container's root is not: the kernel then says EBUSY, handled below).
  const procs = await procsOf(dir);
  if (procs.length > 0) return unavailable('v2', internalProcesses(dir, root, procs));
  const problem = await enableControllers(dir, root);
  if (problem !== undefined) return unavailable('v2', problem);
  const denied = await writeAccess(dir);
  if (denied !== undefined) return unavailable('v2', notWritable('v2', dir, denied));

  const managerOptions: ConstructorParameters<typeof V2CgroupManager>[0] = { root, parent, logger };
  if (options.killTimeoutMs !== undefined) managerOptions.killTimeoutMs = options.killTimeoutMs;
  return { available: true, manager: new V2CgroupManager(managerOptions) };
}

async function procsOf(dir: string): Promise<number[]> {
  return parsePidList((await readOptionalControl(join(dir, 'cgroup.procs'))) ?? '');
}

function internalProcesses(dir: string, root: string, pids: readonly number[]): string {
  const shown = pids.length === 0 ? '' : ` (${pids.slice(0, 5).join(', ')}${pids.length > 5 ? ', …' : ''})`;
  const fix =
    dir === root
      ? `move them into a child cgroup first (in a container: mkdir ${join(root, 'init')} and write each pid to its cgroup.procs)`
      : `move them to another cgroup, or choose another parent`;
  return `cgroups v2 found but ${dir} holds processes${shown}, and cgroups v2 lets only a cgroup without processes hand controllers to its children: ${fix} ${ENFORCE}`;
}

/**
 * Writes the controllers missing from `<dir>/cgroup.subtree_control` (`+cpu +memory +pids`), and
 * nothing when they are all there already. Returns the operator's sentence when it fails.
 */
async function enableControllers(dir: string, root: string): Promise<string | undefined> {
  const file = join(dir, 'cgroup.subtree_control');
  const enabled = ((await readOptionalControl(file)) ?? '').trim().split(/\s+/);
  const missing = V2_CONTROLLERS.filter((c) => !enabled.includes(c));
  if (missing.length === 0) return undefined;
  try {
    await writeControl(file, missing.map((c) => `+${c}`).join(' '));
    return undefined;
  } catch (err) {
    const code = errnoOf(err);
    if (code === 'EBUSY') {
      return internalProcesses(dir, root, await procsOf(dir));
    }
    if (code === 'ENOENT')
      return `cgroups v2 found but the ${listWords(missing)} controller${missing.length === 1 ? ' is' : 's are'} not available in ${join(dir, 'cgroup.controllers')}: enable ${missing.length === 1 ? 'it' : 'them'} in the parent cgroup ${ENFORCE}`;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return notWritable('v2', file, code);
    return `cgroups v2 found but ${missing.map((c) => `+${c}`).join(' ')} can not be written to ${file} (${code}): unum needs it ${ENFORCE}`;
  }
}
