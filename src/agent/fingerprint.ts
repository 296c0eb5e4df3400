/**
 * What this machine offers, as the node registration says it: resources (cpu in millicores, memory
 * and disk in MiB), devices (GPUs), attributes for constraints and the drivers. Also the node id,
 * generated once and kept in the data dir so that an agent restart is the same node.
 *
 * Attributes (all strings, all usable in job constraints):
 *
 *   os arch hostname kernel kernel.version
 *   cpu.cores cpu.model cpu.mhz cpu.millicores memory.mib
 *   disk.mib (free, as before) disk.free.mib disk.total.mib      of the file system of the data dir
 *   cgroup.version                       v1 | v2 | none (the layout of /sys/fs/cgroup)
 *   driver.<name>                        1 when the driver is usable
 *   driver.exec.isolated                 true when exec tasks get namespaces, their own uid and cgroup limits
 *   gpu.count gpu.vendor gpu.<i>.name gpu.<i>.uuid gpu.<i>.memory.mib     when nvidia-smi finds GPUs
 */
import { InvalidError } from '../core/errors.ts';
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { mkdir, readFile, rename, statfs, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { delimiter, join } from 'node:path';
import { newId } from '../core/ids.ts';
import type { DriverInfo, NodeDevice, NodeResources } from '../core/types.ts';
import type { Driver } from './drivers/types.ts';

const MiB = 1024 * 1024;

export type CgroupVersion = 'v1' | 'v2' | 'none';

export interface Fingerprint {
  resources: NodeResources;
  attributes: Record<string, string>;
  drivers: Record<string, DriverInfo>;
  devices: NodeDevice[];
}

/** What the node can enforce on exec tasks (the shape of drivers/exec/isolation.ts's IsolationCapability). */
export interface IsolationSummary {
  namespaces: boolean;
  unprivilegedUser: boolean;
  cgroups: { version: 'v1' | 'v2' } | undefined;
}

export interface FingerprintOptions {
  /** Where `nvidia-smi` is looked for; default the agent's PATH. */
  path?: string;
  /** What exec can enforce here; without it `driver.exec.isolated` is left out. */
  isolation?: IsolationSummary;
  /** The cgroup file system root; default /sys/fs/cgroup. */
  cgroupRoot?: string;
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
  return (await diskMiB(dir)).free;
}

/** Total and free (for unprivileged writers) space of the file system holding `dir`, MiB. */
export async function diskMiB(dir: string): Promise<{ total: number; free: number }> {
  const s = await statfs(dir);
  return {
    total: Math.floor((Number(s.blocks) * Number(s.bsize)) / MiB),
    free: Math.floor((Number(s.bavail) * Number(s.bsize)) / MiB),
  };
}

export async function fingerprint(
  dataDir: string,
  drivers: readonly Driver[],
  options: FingerprintOptions = {},
): Promise<Fingerprint> {
  const cpus = os.cpus();
  const cores = cpus.length > 0 ? cpus.length : os.availableParallelism();
  const memory = Math.floor(os.totalmem() / MiB);
  const [disk, gpus] = await Promise.all([diskMiB(dataDir), detectNvidiaGpus(options.path)]);
  const cgroup = options.isolation?.cgroups?.version ?? detectCgroupVersion(options.cgroupRoot);
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
    'disk.mib': String(disk.free),
    'disk.free.mib': String(disk.free),
    'disk.total.mib': String(disk.total),
    'cgroup.version': cgroup,
  };
  const mhz = cpus[0]?.speed;
  if (mhz !== undefined && mhz > 0) attributes['cpu.mhz'] = String(mhz);
  const driverInfo: Record<string, DriverInfo> = {};
  for (const d of drivers) {
    const info = await d.fingerprint();
    driverInfo[d.name] = info;
    if (info.detected && info.healthy) attributes[`driver.${d.name}`] = '1';
  }
  const iso = options.isolation;
  if (iso !== undefined && attributes['driver.exec'] === '1')
    attributes['driver.exec.isolated'] = String(
      iso.namespaces && iso.unprivilegedUser && iso.cgroups !== undefined,
    );
  Object.assign(attributes, gpuAttributes(gpus));
  return {
    resources: { cpu: cores * 1000, memory, disk: disk.free },
    attributes,
    drivers: driverInfo,
    devices: gpus,
  };
}

// --- GPUs ----------------------------------------------------------------------------------------------

export const NVIDIA_SMI_ARGS = ['--query-gpu=index,uuid,name,memory.total', '--format=csv,noheader,nounits'];

/**
 * The NVIDIA GPUs `nvidia-smi` reports; none when it is not installed or fails (no driver loaded).
 * Never rejects.
 */
export async function detectNvidiaGpus(path = process.env['PATH'] ?? ''): Promise<NodeDevice[]> {
  const program = findProgram('nvidia-smi', path);
  if (program === undefined) return [];
  const output = await new Promise<string | undefined>((resolve) => {
    execFile(program, NVIDIA_SMI_ARGS, { timeout: 10_000, encoding: 'utf8' }, (err, stdout) =>
      resolve(err ? undefined : stdout),
    );
  });
  return output === undefined ? [] : parseNvidiaSmi(output);
}

/**
 * Parses `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`:
 * `0, GPU-3b1c…, NVIDIA A100-SXM4-40GB, 40960` per line. Lines that do not parse are skipped; a
 * memory of `[N/A]` is left out.
 */
export function parseNvidiaSmi(output: string): NodeDevice[] {
  const out: NodeDevice[] = [];
  for (const line of output.split(/\r?\n/)) {
    const parts = line.split(',').map((p) => p.trim());
    if (parts.length < 4) continue;
    const [indexText, uuid] = parts;
    const memoryText = parts.at(-1) ?? '';
    // A model name with a comma in it: everything between the uuid and the memory.
    const name = parts.slice(2, -1).join(', ');
    const index = Number(indexText);
    if (!Number.isInteger(index) || index < 0 || uuid === undefined || uuid === '') continue;
    const device: NodeDevice = { type: 'gpu', vendor: 'nvidia', id: uuid, name, index };
    const memory = Number(memoryText);
    if (memoryText !== '' && Number.isFinite(memory) && memory >= 0) device.memoryMiB = Math.floor(memory);
    out.push(device);
  }
  return out.sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
}

/** `gpu.count`, `gpu.vendor`, `gpu.<i>.name`, `gpu.<i>.uuid`, `gpu.<i>.memory.mib`. */
export function gpuAttributes(gpus: readonly NodeDevice[]): Record<string, string> {
  const list = gpus.filter((d) => d.type === 'gpu');
  if (list.length === 0) return {};
  const attrs: Record<string, string> = { 'gpu.count': String(list.length) };
  const vendors = [...new Set(list.map((d) => d.vendor))];
  attrs['gpu.vendor'] = vendors.join(',');
  list.forEach((d, i) => {
    const n = d.index ?? i;
    attrs[`gpu.${n}.name`] = d.name;
    attrs[`gpu.${n}.uuid`] = d.id;
    if (d.memoryMiB !== undefined) attrs[`gpu.${n}.memory.mib`] = String(d.memoryMiB);
  });
  return attrs;
}

function findProgram(name: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
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
    throw new InvalidError(
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
