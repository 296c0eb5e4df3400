/**
 * What this machine offers, as the node registration says it: resources (cpu in millicores, memory
 * and disk in MiB), attributes for constraints (`os`, `arch`, `kernel`, `cpu.cores`, `cgroup.version`,
 * `driver.exec`, …) and the drivers. Also the node id, generated once and kept in the data dir so that
 * an agent restart is the same node.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, statfs, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { newId } from '../core/ids.ts';
import type { DriverInfo, NodeResources } from '../core/types.ts';
import type { Driver } from './drivers/types.ts';

const MiB = 1024 * 1024;

export type CgroupVersion = 'v1' | 'v2' | 'none';

export interface Fingerprint {
  resources: NodeResources;
  attributes: Record<string, string>;
  drivers: Record<string, DriverInfo>;
}

/** v2 when /sys/fs/cgroup is the unified hierarchy, v1 when it holds per-controller hierarchies (also "hybrid"). */
export function detectCgroupVersion(root = '/sys/fs/cgroup'): CgroupVersion {
  if (existsSync(join(root, 'cgroup.controllers'))) return 'v2';
  if (
    existsSync(join(root, 'memory')) ||
    existsSync(join(root, 'cpu')) ||
    existsSync(join(root, 'cpu,cpuacct'))
  )
    return 'v1';
  return 'none';
}

/** Free disk space (MiB) of the file system holding `dir`, as an unprivileged writer sees it. */
export async function diskFreeMiB(dir: string): Promise<number> {
  const s = await statfs(dir);
  return Math.floor((Number(s.bavail) * Number(s.bsize)) / MiB);
}

export async function fingerprint(dataDir: string, drivers: readonly Driver[]): Promise<Fingerprint> {
  const cpus = os.cpus();
  const cores = cpus.length > 0 ? cpus.length : os.availableParallelism();
  const memory = Math.floor(os.totalmem() / MiB);
  const disk = await diskFreeMiB(dataDir);
  const cgroup = detectCgroupVersion();
  const attributes: Record<string, string> = {
    os: process.platform,
    arch: process.arch,
    hostname: os.hostname(),
    kernel: os.release(),
    'kernel.version': os.version(),
    'cpu.cores': String(cores),
    'cpu.model': cpus[0]?.model.trim() ?? 'unknown',
    'cpu.millicores': String(cores * 1000),
    'memory.mib': String(memory),
    'disk.mib': String(disk),
    'cgroup.version': cgroup,
  };
  const driverInfo: Record<string, DriverInfo> = {};
  for (const d of drivers) {
    const info = await d.fingerprint();
    driverInfo[d.name] = info;
    if (info.detected && info.healthy) attributes[`driver.${d.name}`] = '1';
  }
  return { resources: { cpu: cores * 1000, memory, disk }, attributes, drivers: driverInfo };
}

/**
 * The node id from `<dataDir>/agent/node-id`, created on first start. Written through a rename so a
 * crash never leaves a half-written id.
 */
export async function loadNodeId(dataDir: string): Promise<string> {
  const dir = join(dataDir, 'agent');
  const file = join(dir, 'node-id');
  try {
    const id = (await readFile(file, 'utf8')).trim();
    if (/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id)) return id;
    throw new Error(
      `${file} does not hold a valid node id (${JSON.stringify(id.slice(0, 40))}): remove it to get a new one`,
    );
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dir, { recursive: true });
  const id = newId();
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${id}\n`, { mode: 0o644 });
  await rename(tmp, file);
  return id;
}
