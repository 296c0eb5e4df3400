/**
 * The mount table (/proc/self/mountinfo), to find where each cgroup v1 controller is mounted and
 * whether a cgroup filesystem is read-only. Format (proc(5)):
 *
 *   36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
 *   id parent dev root mount-point mount-options [optional fields…] - fstype source super-options
 */
import { readFile } from 'node:fs/promises';

export interface Mount {
  mountPoint: string;
  /** The part of the filesystem mounted there (a cgroup path when the cgroup fs is bind-mounted). */
  root: string;
  /** `cgroup` (v1) or `cgroup2`, `tmpfs`, … */
  fsType: string;
  /** Per-mount options: `rw` or `ro`, … */
  mountOptions: string[];
  /** Filesystem options: for v1 cgroups, the controllers of the hierarchy (`rw,cpu,cpuacct`). */
  superOptions: string[];
}

/** Octal escapes (`\040` for a space) as the kernel writes them in paths. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(' ');
    const dash = fields.indexOf('-', 6);
    if (dash < 0 || fields.length < dash + 4) continue;
    const [, , , root, mountPoint, mountOptions] = fields;
    const [fsType, , superOptions] = fields.slice(dash + 1);
    if (root === undefined || mountPoint === undefined || mountOptions === undefined) continue;
    if (fsType === undefined || superOptions === undefined) continue;
    mounts.push({
      mountPoint: unescape(mountPoint),
      root: unescape(root),
      fsType,
      mountOptions: mountOptions.split(','),
      superOptions: superOptions.split(','),
    });
  }
  return mounts;
}

/** The mount table, or none when it can not be read (not Linux, no /proc): detection then uses the layout. */
export async function readMounts(path = '/proc/self/mountinfo'): Promise<Mount[]> {
  try {
    return parseMountinfo(await readFile(path, 'utf8'));
  } catch {
    return [];
  }
}

/** The mount whose mount point holds `path` (the longest matching one), if any. */
export function mountOf(mounts: readonly Mount[], path: string): Mount | undefined {
  let best: Mount | undefined;
  for (const m of mounts) {
    const under =
      path === m.mountPoint ||
      path.startsWith(m.mountPoint.endsWith('/') ? m.mountPoint : `${m.mountPoint}/`);
    // Later lines win on equal length: a later mount over the same point hides the earlier one.
    if (under && (best === undefined || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}
