/**
 * The bubblewrap command line of a sandboxed task (../../README.md, "Isolation", says why each piece is
 * there). Pure: paths in, argv out.
 *
 *   /            the host, read-only                 /proc      the task's pid namespace, masks on top
 *   /dev         minimal (null, zero, urandom, tty…)  /dev/shm   private tmpfs
 *   /sys         empty, read-only tmpfs
 *   /tmp         private tmpfs                        <dataDir>  empty tmpfs (other allocations unseen)
 *   <task>/      read-write (its logs/ read-only)     <alloc>/alloc/  read-write (the group's shared dir)
 *
 * and, with `seccompFd`, the task filter (./seccomp.ts): no user namespaces, no io_uring.
 */
import { dirname, relative, isAbsolute, sep } from 'node:path';

export interface SandboxSpec {
  /** Directories to hide behind an empty tmpfs (the agent's data dir). */
  hide: readonly string[];
  /** The task directory: bound read-write, the working directory. */
  taskDir: string;
  /**
   * Inside taskDir, bound read-only (the task writes its logs through descriptors only): for a
   * task running as root; others are kept out of it by ownership.
   */
  logsDir?: string;
  /** The group's shared `alloc/` directory, bound read-write. */
  sharedDir?: string;
  /** /proc entries to mask: files get /dev/null, directories an empty tmpfs. */
  maskedProc: { files: readonly string[]; dirs: readonly string[] };
  hostname: string;
  /**
   * The machine's shared /dev tree (./sandbox-dev.ts), bound in one mount; absent: bwrap's own
   * `--dev`. Only for an unprivileged task without devices: bwrap makes their mount points in /dev.
   */
  sharedDev?: string;
  /** Device files to bind into /dev (a granted GPU); missing ones are skipped. */
  devices?: readonly string[];
  /** Size of the private /tmp and /dev/shm (their pages count against the task's memory limit too). */
  tmpfsBytes: number;
  /** Descriptor (in bwrap) where bwrap writes its JSON status: child pid, then exit code. */
  statusFd: number;
  /**
   * Descriptor (in bwrap) to read the seccomp program from (./seccomp.ts): bwrap installs it just
   * before it execs the entry, after its own set-up. Absent: no filter.
   */
  seccompFd?: number;
  /**
   * Descriptors for joining a cgroup while bwrap sets up the mounts: bwrap writes the sandbox's
   * init pid to `info`, then waits (after its set-up, before the task is forked) until a byte or
   * EOF arrives on `block`.
   */
  join?: { info: number; block: number };
  /**
   * What runs first inside, before the drop and the command (../launch.ts sandboxEntryArgs: the
   * cgroup check and the open-file limit).
   */
  entry?: readonly string[];
  /** Drop to this uid/gid inside (dropArgs); absent: stay root (an allowed `user: root`). */
  drop?: Drop;
  command: string;
  args: readonly string[];
}

/**
 * What a task running as root (an allowed `user: root`) may still do: own and change the files it
 * can reach, change its uid and gid, bind low ports, signal its own processes, chroot. Not among
 * them: mounting (CAP_SYS_ADMIN), device nodes (CAP_MKNOD: a disk's node made in the allocation
 * directory would read the host's disk), raw sockets, ptrace, modules, the clock, the host's
 * network configuration. The list container runtimes give root in a container, without MKNOD and
 * NET_RAW.
 */
export const ROOT_TASK_CAPABILITIES = [
  'CAP_AUDIT_WRITE',
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_NET_BIND_SERVICE',
  'CAP_SETFCAP',
  'CAP_SETGID',
  'CAP_SETPCAP',
  'CAP_SETUID',
  'CAP_SYS_CHROOT',
] as const;

/** bwrap's arguments (after the program name) for the spec. */
export function bwrapArgs(spec: SandboxSpec): string[] {
  const dev = spec.sharedDev === undefined ? ['--dev', '/dev'] : ['--dev-bind', spec.sharedDev, '/dev'];
  const a: string[] = ['--ro-bind', '/', '/', ...dev, '--proc', '/proc'];
  // A task running as root must not tune the host's kernel (an unprivileged uid can not anyway).
  if (spec.drop === undefined) a.push('--ro-bind', '/proc/sys', '/proc/sys');
  for (const f of spec.maskedProc.files) a.push('--ro-bind', '/dev/null', f);
  for (const d of spec.maskedProc.dirs) a.push('--tmpfs', d);
  a.push('--perms', '1777', '--size', String(spec.tmpfsBytes), '--tmpfs', '/dev/shm');
  for (const d of spec.devices ?? []) a.push('--dev-bind-try', d, d);
  // Nothing of the host's devices, kernel objects or cgroup tree (the limits are in UNUM_*_LIMIT).
  // An unprivileged task can not write to a root-owned 0555 directory: no read-only remount needed
  // (each costs bwrap a pass over the mount table). A task running as root gets one.
  if (spec.drop !== undefined) a.push('--perms', '0555', '--tmpfs', '/sys');
  else a.push('--tmpfs', '/sys', '--remount-ro', '/sys');

  const tmpfsRoots = ['/tmp'];

  a.push('--perms', '1777', '--size', String(spec.tmpfsBytes), '--tmpfs', '/tmp');
  for (const h of spec.hide) {
    // Under /tmp it is already out of sight.
    if (isWithin('/tmp', h)) continue;
    a.push('--tmpfs', h);
    tmpfsRoots.push(h);
  }
  const binds = [spec.taskDir, ...(spec.sharedDir !== undefined ? [spec.sharedDir] : [])];
  a.push(...dirsDown(tmpfsRoots, binds));
  a.push('--bind', spec.taskDir, spec.taskDir);
  if (spec.logsDir !== undefined) a.push('--ro-bind', spec.logsDir, spec.logsDir);
  if (spec.sharedDir !== undefined) a.push('--bind', spec.sharedDir, spec.sharedDir);

  a.push('--unshare-pid', '--unshare-ipc', '--unshare-uts', '--hostname', spec.hostname);
  // The task leads its own session and process group, apart from bwrap's monitor process, which must
  // outlive a kill signal to record the exit status. There is no terminal to lose (stdin is
  // /dev/null; the agent starts tasks without a controlling terminal).
  a.push('--new-session');
  a.push('--chdir', spec.taskDir, '--json-status-fd', String(spec.statusFd));
  // bwrap run by root keeps every capability by default: a task allowed to run as root gets the
  // short list a container runtime gives its root (an unprivileged task has none either way).
  if (spec.drop === undefined) {
    a.push('--cap-drop', 'ALL');
    for (const cap of ROOT_TASK_CAPABILITIES) a.push('--cap-add', cap);
  }
  if (spec.join !== undefined)
    a.push('--info-fd', String(spec.join.info), '--block-fd', String(spec.join.block));
  if (spec.seccompFd !== undefined) a.push('--seccomp', String(spec.seccompFd));
  a.push('--');
  if (spec.entry !== undefined) a.push(...spec.entry);
  if (spec.drop !== undefined) a.push(...dropArgs(spec.drop));
  a.push(spec.command, ...spec.args);
  return a;
}

/**
 * How a task drops from root to its uid: the program execs the task with that uid and gid and no
 * supplementary groups, and without capabilities (a uid change from 0 clears them).
 *
 *   unshare  `unshare -S UID -G GID --` (util-linux 2.32+): in the sandbox, where bwrap has set
 *            no_new_privs already. About 0.6 ms quicker than setpriv, which first looks the number
 *            up as a user name (NSS modules loaded and all).
 *   setpriv  `setpriv --reuid --regid --clear-groups --no-new-privs --`: outside a sandbox, where
 *            nothing else sets no_new_privs, and where unshare lacks -S.
 */
export interface Drop {
  tool: 'unshare' | 'setpriv';
  path: string;
  uid: number;
  gid: number;
}

/** The drop's command line, up to the task's command. */
export function dropArgs(drop: Drop): string[] {
  if (drop.tool === 'unshare') return [drop.path, '-S', String(drop.uid), '-G', String(drop.gid), '--'];
  return [drop.path, `--reuid=${drop.uid}`, `--regid=${drop.gid}`, '--clear-groups', '--no-new-privs', '--'];
}

/**
 * `--perms 0711 --dir D` for the directories bwrap must create inside a tmpfs to reach a bind mount:
 * it would make them 0700 (root only), and the task's uid could not reach its own directory.
 * 0711: passable, not listable.
 */
function dirsDown(tmpfsRoots: readonly string[], targets: readonly string[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const target of targets) {
    const root = tmpfsRoots
      .filter((r) => isWithin(r, target) && r !== target)
      .sort((x, y) => y.length - x.length)[0];
    if (root === undefined) continue;
    const chain: string[] = [];
    for (let d = dirname(target); d !== root && isWithin(root, d); d = dirname(d)) chain.unshift(d);
    for (const d of chain) {
      if (seen.has(d)) continue;
      seen.add(d);
      out.push('--perms', '0711', '--dir', d);
    }
  }
  return out;
}

/** Whether `path` is `dir` or inside it. */
export function isWithin(dir: string, path: string): boolean {
  const r = relative(dir, path);
  return r === '' || (!r.startsWith(`..${sep}`) && r !== '..' && !isAbsolute(r));
}

/** An allocation name as a hostname label: `web.api[0]` → `web-api-0`. */
export function sanitizeHostname(name: string): string {
  const label = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 63)
    .replace(/-$/, '');
  return label === '' ? 'task' : label;
}
