/**
 * What this agent can enforce on the tasks it runs, detected once at start-up:
 *
 *   root?                  cgroups, namespaces and changing uid all need it
 *   bwrap can sandbox?     own pid/mount/ipc/uts namespaces, read-only host, private /tmp (bubblewrap)
 *   setpriv?               drop to the task's uid with no_new_privs (util-linux)
 *   unshare -S/-G?         the same, quicker, inside a sandbox (util-linux 2.32+; else setpriv)
 *   shared sandbox /dev?   one bind instead of bwrap's --dev (./sandbox-dev.ts; else --dev)
 *   seccomp filter?        the kernel takes the task filter (./seccomp.ts), bwrap installs it: no
 *                          user namespaces, no io_uring (probed with the sandbox itself)
 *   cgroups?               memory/CPU/pids limits, usage, kill-all (../../cgroups)
 *
 * Whatever is missing is said once, in words for the operator (`warnings`): the agent logs them and
 * `unum up` prints them. The exec driver adapts to what is there (../../README.md, "Isolation").
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  accessSync,
  closeSync,
  constants,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { detectCgroups, favorDynamicMoves, type FavorDynmodsResult } from '../../cgroups/index.ts';
import { readMounts } from '../../cgroups/mountinfo.ts';
import type { CgroupDetection, CgroupManager } from '../../cgroups/types.ts';
import { SANDBOX_DEV_DIR, ensureSandboxDev } from './sandbox-dev.ts';
import { taskFilterBytes } from './seccomp.ts';
import { DEFAULT_TASK_UID_RANGE, uidRangeWarnings } from './users.ts';

export interface IsolationCapability {
  /** The agent runs as root. */
  root: boolean;
  /** Tasks get their own pid, mount, ipc and uts namespaces (bwrap works here, as root). */
  namespaces: boolean;
  /** Tasks run as an unprivileged uid (root, and setpriv is there). */
  unprivilegedUser: boolean;
  /** Limits, usage and kill-all; undefined when cgroups can not be used. */
  cgroups: CgroupManager | undefined;
  /** One line per missing piece, worded for the operator; empty when everything is enforced. */
  warnings: string[];
  /** Absolute paths of the tools, when found. */
  bwrapPath?: string;
  setprivPath?: string;
  /** unshare, when it can set the uid and gid (-S/-G): drops to the task's uid inside a sandbox. */
  unsharePath?: string;
  /** The shared /dev of unprivileged sandboxes (./sandbox-dev.ts), when it could be made. */
  sandboxDev?: string;
  /** Whether moves into cgroups are quick (../../cgroups/favor.ts); looked at only with cgroups. */
  cgroupMoves?: FavorDynmodsResult;
  /**
   * The seccomp filter bwrap installs in every sandbox (./seccomp.ts), when there is one for this
   * architecture and the kernel took it at the probe. Only with `namespaces`: it needs bwrap.
   */
  seccomp?: SeccompProgramFile;
}

export interface DetectIsolationOptions {
  /**
   * `off`: enforce nothing (as if not root): tasks run as the agent's user, without namespaces or
   * cgroups. For development machines and tests. Default `auto`.
   */
  mode?: 'auto' | 'off';
  /** Checked against /etc/passwd and /etc/subuid for overlaps (a warning). */
  taskUidRange?: { min: number; max: number };
  /** Cgroup detection (default ../../cgroups detectCgroups). */
  detectCgroups?: () => Promise<CgroupDetection>;
  /** Where tools are looked up (default the agent's PATH plus the standard system dirs). */
  path?: string;
  /**
   * Make moves into cgroups quick by mounting a hierarchy with `favordynmods` (../../cgroups/favor.ts),
   * when cgroups are used. Default true; false leaves the kernel as it is.
   */
  favorDynmods?: boolean;
  /** The mount table to look for `favordynmods` in (default `/proc/self/mountinfo`). */
  mountinfoPath?: string;
  /** The architecture the seccomp filter is made for, as Node names it (default `process.arch`). */
  arch?: string;
  /** A seccomp program instead of the task filter (tests: one the kernel refuses). */
  seccompProgram?: Buffer;
}

const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The capability of a node where nothing is enforced. */
export function noIsolation(warnings: string[] = []): IsolationCapability {
  return { root: false, namespaces: false, unprivilegedUser: false, cgroups: undefined, warnings };
}

/** Detects what this agent can enforce. Never rejects: what fails to work is reported in `warnings`. */
export async function detectIsolation(options: DetectIsolationOptions = {}): Promise<IsolationCapability> {
  const root = process.getuid?.() === 0;
  if (options.mode === 'off')
    return noIsolation([
      `task isolation is turned off in the agent configuration: tasks run as ${root ? 'root' : 'your user'}, without memory/CPU/process limits and without their own namespaces`,
    ]);
  if (process.platform !== 'linux')
    return noIsolation([
      `unum runs tasks without isolation on ${process.platform}: as your user, without memory/CPU/process limits and without their own namespaces (they need Linux)`,
    ]);
  if (!root)
    return noIsolation([
      'unum is not running as root: tasks run as your user, without memory/CPU/process limits and without their own namespaces (cgroups and namespaces need root)',
    ]);

  const warnings: string[] = [];
  const searchPath = `${options.path ?? process.env['PATH'] ?? ''}${delimiter}${SYSTEM_PATH}`;
  const setprivPath = findProgram('setpriv', searchPath);
  const bwrapPath = findProgram('bwrap', searchPath);
  const unsharePath = findProgram('unshare', searchPath);

  const arch = options.arch ?? process.arch;
  const seccompProgram = options.seccompProgram ?? taskFilterBytes(arch);
  // Made only where bwrap could install it.
  const filter =
    seccompProgram === undefined || bwrapPath === undefined ? undefined : programFile(seccompProgram);
  const [setprivError, sandboxProbe, cgroups, unshareError] = await Promise.all([
    setprivPath === undefined
      ? Promise.resolve('not found')
      : probe(setprivPath, [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          '--no-new-privs',
          '--',
          '/bin/true',
        ]),
    bwrapPath === undefined
      ? Promise.resolve<SandboxProbe>({ bwrapError: 'not found' })
      : probeSandbox(bwrapPath, filter instanceof SeccompProgramFile ? filter : undefined),
    (options.detectCgroups ?? detectCgroups)().catch((err: unknown): CgroupDetection => ({
      available: false,
      version: 'none',
      reason: err instanceof Error ? err.message : String(err),
    })),
    unsharePath === undefined
      ? Promise.resolve('not found')
      : probe(unsharePath, ['-S', '65534', '-G', '65534', '--', '/bin/true']),
  ]);

  const { bwrapError, seccompError } = sandboxProbe;
  const unprivilegedUser = setprivError === undefined;
  if (!unprivilegedUser)
    warnings.push(
      `setpriv (util-linux) ${setprivError === 'not found' ? 'is not installed' : `does not work here (${setprivError})`}: the exec driver can not run tasks as an unprivileged user, so it refuses to run them (install util-linux)`,
    );
  // The sandbox drops to the task's uid with setpriv: without it, no sandbox either.
  const namespaces = bwrapError === undefined && unprivilegedUser;
  if (bwrapError !== undefined)
    warnings.push(
      bwrapError === 'not found'
        ? 'bubblewrap (bwrap) is not installed: tasks run without their own namespaces: they see the host\'s processes and files (install the "bubblewrap" package)'
        : `bubblewrap (bwrap) can not create namespaces here (${bwrapError}): tasks run without their own namespaces: they see the host's processes and files`,
    );
  if (namespaces) {
    const lacking =
      'tasks can create user namespaces (and be root in them) and use io_uring, both frequent ways into the kernel';
    if (filter === undefined)
      warnings.push(
        `unum has no seccomp filter for this architecture (${arch}; there is one for x64 and arm64): ${lacking}`,
      );
    else if (typeof filter === 'string')
      warnings.push(`the seccomp filter for tasks could not be written (${filter}): ${lacking}`);
    else if (seccompError !== undefined)
      warnings.push(`the kernel refused the seccomp filter for tasks (${seccompError}): ${lacking}`);
  }
  if (!cgroups.available)
    warnings.push(
      `cgroups can not be used (${cgroups.reason}): tasks run without memory/CPU/process limits, and a task that leaves its process group may outlive its stop`,
    );
  if (unprivilegedUser) warnings.push(...uidRangeWarnings(options.taskUidRange ?? DEFAULT_TASK_UID_RANGE));

  const cap: IsolationCapability = {
    root,
    namespaces,
    unprivilegedUser,
    cgroups: cgroups.available ? cgroups.manager : undefined,
    warnings,
  };
  if (bwrapPath !== undefined) cap.bwrapPath = bwrapPath;
  if (setprivPath !== undefined) cap.setprivPath = setprivPath;
  // Quietly: setpriv does the same, a little slower.
  if (unsharePath !== undefined && unshareError === undefined) cap.unsharePath = unsharePath;
  if (filter instanceof SeccompProgramFile && namespaces && seccompError === undefined) cap.seccomp = filter;
  if (cap.cgroups !== undefined && options.favorDynmods !== false)
    cap.cgroupMoves = await favorDynamicMoves(await readMounts(options.mountinfoPath));
  // Quietly too: without it each sandbox gets bwrap's own /dev, a little slower.
  if (namespaces && (await ensureSandboxDev(SANDBOX_DEV_DIR)) === undefined) cap.sandboxDev = SANDBOX_DEV_DIR;
  return cap;
}

let shared: Promise<IsolationCapability> | undefined;

/**
 * The lines to show the operator about what this agent can not enforce (`unum up` prints them, the
 * agent logs them once). Detection with default options runs once per process and is shared.
 */
export async function isolationWarnings(options?: DetectIsolationOptions): Promise<string[]> {
  const cap = await (options === undefined ? detectIsolationOnce() : detectIsolation(options));
  return [...cap.warnings];
}

/** `detectIsolation()` with default options, run once per process. */
export function detectIsolationOnce(): Promise<IsolationCapability> {
  shared ??= detectIsolation();
  return shared;
}

/** The first executable file named `name` in `searchPath`. */
export function findProgram(name: string, searchPath: string): string | undefined {
  for (const dir of searchPath.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** What the agent's sandboxes are made of, at the least: checked once with `/bin/true` inside. */
const PROBE_SANDBOX = [
  '--ro-bind',
  '/',
  '/',
  '--proc',
  '/proc',
  '--dev',
  '/dev',
  '--tmpfs',
  '/sys',
  '--unshare-pid',
  '--unshare-ipc',
  '--unshare-uts',
  '--new-session',
];

/** Why bwrap can not make a sandbox here, or (bwrap working) why it can not install the filter. */
interface SandboxProbe {
  bwrapError?: string;
  seccompError?: string;
}

/**
 * Whether bwrap makes a sandbox here, and installs the seccomp filter in it. One run with the filter
 * when all is well; when it fails, a second without tells a kernel that refuses the filter (the
 * sandbox then goes without it) from a bwrap that does not work at all.
 */
async function probeSandbox(
  bwrapPath: string,
  filter: SeccompProgramFile | undefined,
): Promise<SandboxProbe> {
  const plain = () => probe(bwrapPath, [...PROBE_SANDBOX, '--', '/bin/true']);
  const out: SandboxProbe = {};
  if (filter !== undefined) {
    let error: string | undefined;
    try {
      error = await probe(bwrapPath, [...PROBE_SANDBOX, '--seccomp', '3', '--', '/bin/true'], filter.open());
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    }
    if (error === undefined) return out;
    out.seccompError = error;
  }
  const bwrapError = await plain();
  if (bwrapError !== undefined) out.bwrapError = bwrapError;
  return out;
}

/**
 * The task filter, in a file the agent holds open and has already unlinked: nothing on disk to go
 * stale or be removed while the agent runs. bwrap reads its `--seccomp` descriptor to the end, so
 * every sandbox needs a descriptor of its own at offset 0 (a dup would share the offset with the
 * others): `open()` opens the same file anew through /proc/self/fd (with its close, about 10 µs).
 */
export class SeccompProgramFile {
  private readonly fd: number;
  /** Size of the program in bytes (8 per instruction). */
  readonly bytes: number;

  constructor(fd: number, bytes: number) {
    this.fd = fd;
    this.bytes = bytes;
  }

  /** A new read-only descriptor for one bwrap, at the start of the program; the caller closes it. */
  open(): number {
    return openSync(`/proc/self/fd/${this.fd}`, 'r');
  }
}

/** The files made, by program: the same program serves every task, made once per process. */
const programFiles = new Map<string, SeccompProgramFile>();

/** The program's file, or why it could not be made. */
function programFile(program: Buffer): SeccompProgramFile | string {
  const key = program.toString('base64');
  const made = programFiles.get(key);
  if (made !== undefined) return made;
  let dir: string | undefined;
  try {
    dir = mkdtempSync(join(tmpdir(), 'unum-seccomp-'));
    const path = join(dir, 'task-filter.bpf');
    writeFileSync(path, program, { mode: 0o400 });
    const file = new SeccompProgramFile(openSync(path, 'r'), program.length);
    programFiles.set(key, file);
    return file;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  } finally {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs a program; undefined when it exits 0, else what went wrong (its stderr's last line). `fd3`,
 * when given, is its descriptor 3 (closed here once the program is started).
 */
function probe(program: string, args: string[], fd3?: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let stderr = '';
    const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'ignore', 'pipe'];
    if (fd3 !== undefined) stdio.push(fd3);
    let child: ChildProcess;
    try {
      child = spawn(program, args, { stdio, env: { PATH: SYSTEM_PATH } });
    } finally {
      if (fd3 !== undefined) closeSync(fd3);
    }
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      if (stderr.length < 4096) stderr += chunk;
    });
    child.on('error', (err) => resolve(err.message));
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(undefined);
      const last = stderr.trim().split('\n').pop()?.trim();
      resolve(last || (signal !== null ? `killed by ${signal}` : `exit code ${code}`));
    });
  });
}

const masked = new Map<boolean, { files: string[]; dirs: string[] }>();

/**
 * /proc entries a task must not read (runc's and Nomad's masked paths), those that exist on this
 * kernel. For a task that is not root, only those others may read: the rest (kcore, timer_list,
 * sysrq-trigger: mode 0400/0200) are closed to it anyway, and every mount costs start-up time.
 */
export function maskedProcPaths(forRoot = true): { files: string[]; dirs: string[] } {
  let found = masked.get(forRoot);
  if (found === undefined) {
    found = findMaskedProcPaths(forRoot);
    masked.set(forRoot, found);
  }
  return found;
}

function findMaskedProcPaths(forRoot: boolean): { files: string[]; dirs: string[] } {
  const files: string[] = [];
  const dirs: string[] = [];
  for (const name of MASKED_PROC) {
    const path = `/proc/${name}`;
    try {
      const st = statSync(path);
      if (!forRoot && (st.mode & 0o004) === 0) continue;
      (st.isDirectory() ? dirs : files).push(path);
    } catch {
      // not on this kernel
    }
  }
  return { files, dirs };
}

/** runc's masked paths (which Nomad's exec driver inherits through libcontainer), plus sysrq-trigger. */
const MASKED_PROC = [
  'kcore',
  'keys',
  'timer_list',
  'timer_stats',
  'sched_debug',
  'latency_stats',
  'sysrq-trigger',
  'acpi',
  'asound',
  'scsi',
];
