/**
 * The `exec` driver: the default way to run a program, isolated as far as the node allows
 * (./isolation.ts detects it once):
 *
 *   cgroup     memory, CPU and pids limits; usage; kill-all; OOM kills seen   (root + cgroups)
 *   sandbox    bwrap: own pid/mount/ipc/uts namespaces, read-only host, only its own directories
 *              writable, private /tmp, masked /sys and /proc entries          (root + bwrap)
 *   seccomp    no new user namespaces, no io_uring (./seccomp.ts)             (bwrap installs it)
 *   identity   a uid of its own per allocation (or an allowed `user:`), no_new_privs (root + setpriv;
 *              in a sandbox the drop itself is unshare's, where it has -S/-G)
 *
 * Without root none of these exist: the task runs as the agent's user behind a small shell that
 * records its exit code (so that a restarted agent still learns it). ../../README.md, "Isolation".
 */
import { UnavailableError } from '../../../core/errors.ts';
import { basename, dirname, join } from 'node:path';
import type { DriverInfo } from '../../../core/types.ts';
import type { Logger } from '../../../core/log.ts';
import { allocDirPaths } from '../../runner/alloc-dir.ts';
import { taskCgroupName } from '../../cgroups/index.ts';
import type { CgroupManager, TaskCgroup } from '../../cgroups/types.ts';
import { DEFAULT_TASK_PIDS_LIMIT } from '../../options.ts';
import { detectIsolationOnce, maskedProcPaths, type IsolationCapability } from './isolation.ts';
import { ensureSandboxDev, sandboxDevReady } from './sandbox-dev.ts';
import {
  DEFAULT_TASK_UID_RANGE,
  UidPool,
  currentUserName,
  assertTaskUserAllowed,
  prepareTaskDirs,
  resolveTaskUser,
  type TaskIdentity,
} from './users.ts';
import { checkCommand, checkReachable, type CommandCheck } from '../process.ts';
import { bwrapArgs, dropArgs, isWithin, sanitizeHostname, type Drop, type SandboxSpec } from './sandbox.ts';
import {
  BWRAP_FDS,
  DEFAULT_TASK_OPEN_FILES,
  launch,
  sandboxEntryArgs,
  statusPathFor,
  type LaunchSpec,
  type Prepared,
} from '../launch.ts';
import { processHandleData } from '../handle-state.ts';
import { reattach, type TaskProcess } from '../task-process.ts';
import {
  ExecError,
  type Driver,
  type DriverOptions,
  type TaskConfig,
  type TaskHandle,
  type TaskHandleState,
} from '../types.ts';

/** The PATH of a task that runs as another user (when the job sets none). */
const TASK_SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function createExecDriver(options: DriverOptions): Driver {
  return new ExecDriver(options);
}

class ExecDriver implements Driver {
  readonly name = 'exec' as const;
  private readonly opts: DriverOptions;
  private readonly logger: Logger;
  private capability: Promise<IsolationCapability> | undefined;
  private pool: UidPool | undefined;
  private remakingDev: Promise<void> | undefined;
  /** Allocations with a task running through this driver (their uid leases are not reclaimed). */
  private readonly running = new Map<string, number>();

  constructor(options: DriverOptions) {
    this.opts = options;
    this.logger = options.logger.child({ driver: 'exec' });
  }

  private cap(): Promise<IsolationCapability> {
    this.capability ??= Promise.resolve(this.opts.isolation ?? detectIsolationOnce());
    return this.capability;
  }

  async fingerprint(): Promise<DriverInfo> {
    if (process.platform === 'win32')
      return { detected: false, healthy: false, description: 'needs a POSIX system' };
    if (!this.opts.enabled)
      return { detected: true, healthy: false, description: 'disabled by configuration' };
    const cap = await this.cap();
    const refusal = refuses(cap);
    if (refusal !== undefined) return { detected: true, healthy: false, description: refusal };
    const parts = [
      cap.namespaces
        ? `own namespaces (bubblewrap${cap.seccomp !== undefined ? ', seccomp filter' : ''})`
        : 'no namespaces',
      cap.unprivilegedUser ? 'a uid per allocation' : `runs as ${currentUserName()}`,
      cap.cgroups !== undefined ? `cgroups ${cap.cgroups.version} limits` : 'no resource limits',
    ];
    return { detected: true, healthy: true, description: parts.join('; ') };
  }

  async start(config: TaskConfig): Promise<TaskHandle> {
    if (!this.opts.enabled) throw new UnavailableError('the exec driver is disabled on this node');
    const cap = await this.cap();
    const refusal = refuses(cap);
    if (refusal !== undefined) throw new UnavailableError(`the exec driver ${refusal}`);
    const logger = this.logger.child({ allocId: config.allocId, task: config.task });
    const layout = this.layout(config);

    const sandboxed = cap.namespaces && cap.bwrapPath !== undefined;
    const identity = await this.identity(config, cap);
    // A task that runs as another user gets the system PATH, not the agent's own: the agent's may
    // name directories that user cannot read (a root's ~/.pyenv, say). A PATH the job set stays.
    if (
      identity !== undefined &&
      identity.uid !== process.getuid?.() &&
      config.env['PATH'] !== undefined &&
      config.env['PATH'] === process.env['PATH']
    )
      config = { ...config, env: { ...config.env, PATH: TASK_SYSTEM_PATH } };
    // The other preparations run side by side and, in a sandbox with a cgroup, while bwrap sets up
    // its mounts: the task is let go once they are all done.
    const check: CommandCheck = {};
    if (identity !== undefined) check.as = identity;
    if (sandboxed) check.hiddenFrom = (path) => hiddenFromSandbox(path, config.cwd, layout);
    const dirsFor = identity !== undefined && identity.uid !== 0 ? identity : undefined;
    // The cgroup is made synchronously (about 0.3 ms; ../cgroups/files.ts says why). In a sandbox it
    // is needed only once bwrap has set up its mounts: a microtask defers it until just after the
    // spawn (launch() calls the gate and spawns in one go), off the path to the task's first
    // instruction. Without a sandbox the wrapper joins it as it starts: it is made before.
    const cgroups = cap.cgroups;
    let cgroupP: Promise<Prepared | undefined> = Promise.resolve(undefined);
    const discardCgroup = () => cgroupP.then((p) => p?.cgroup?.destroy()).catch(() => undefined);
    const prepare = (): Promise<Prepared> => {
      if (cgroups !== undefined)
        cgroupP = sandboxed
          ? Promise.resolve().then(() => this.createCgroup(cgroups, config))
          : this.createCgroup(cgroups, config);
      return Promise.allSettled([
        checkCommand(config, check),
        dirsFor === undefined ? undefined : this.prepareDirs(config, layout, dirsFor),
        // In a sandbox the task's directories are bound where it can reach them; outside, by path.
        dirsFor === undefined || sandboxed ? undefined : checkReachable(config.cwd, dirsFor),
        cgroupP,
      ]).then(async (settled) => {
        const failures = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
        if (failures.length === 0) return (await cgroupP) ?? {};
        await discardCgroup();
        // A problem of the job (ExecError) is said before a problem of the node.
        throw failures.find((e) => e instanceof ExecError) ?? failures[0];
      });
    };
    // bwrap waits for them (--block-fd) while it sets up the sandbox.
    const gated = sandboxed;

    const dropsTo = identity !== undefined && identity.uid !== 0 ? identity : undefined;
    let argv: string[];
    if (sandboxed && cap.bwrapPath !== undefined) {
      const drop = dropsTo === undefined ? undefined : dropper(cap, dropsTo, true);
      const spec: SandboxSpec = {
        hide: layout.hide,
        taskDir: config.cwd,
        maskedProc: maskedProcPaths(drop === undefined),
        hostname: sanitizeHostname(config.allocName ?? config.env['UNUM_ALLOC_NAME'] ?? config.allocId),
        tmpfsBytes: config.resources.memory * 1024 * 1024,
        ...(config.devicePaths?.length ? { devices: config.devicePaths } : {}),
        statusFd: BWRAP_FDS.status,
        command: config.command,
        args: config.args,
      };
      const logsDir = dirname(config.stdoutPath);
      // For a task that is not root, logs/ is closed by its owner and the sticky task dir already;
      // root gets a read-only mount over it.
      if (drop === undefined && isWithin(config.cwd, logsDir) && logsDir !== config.cwd)
        spec.logsDir = logsDir;
      if (layout.shared !== undefined) spec.sharedDir = layout.shared;
      if (drop !== undefined) spec.drop = drop;
      const sharedDev = drop !== undefined && !config.devicePaths?.length ? this.sharedDev(cap) : undefined;
      if (sharedDev !== undefined) spec.sharedDev = sharedDev;
      if (gated) spec.join = { info: BWRAP_FDS.info, block: BWRAP_FDS.block };
      if (cap.seccomp !== undefined) spec.seccompFd = BWRAP_FDS.seccomp;
      spec.entry = sandboxEntryArgs(
        cgroups !== undefined ? taskCgroupName(config.allocId, config.task) : undefined,
        this.opts.taskOpenFiles ?? DEFAULT_TASK_OPEN_FILES,
      );
      argv = [cap.bwrapPath, ...bwrapArgs(spec)];
    } else {
      const drop = dropsTo === undefined ? undefined : dropper(cap, dropsTo, false);
      argv = [...(drop === undefined ? [] : dropArgs(drop)), config.command, ...config.args];
    }

    const spec: LaunchSpec = {
      driver: 'exec',
      config,
      wrapper: sandboxed ? 'bwrap' : 'sh',
      argv,
      statusPath: statusPathFor(config),
      openFiles: this.opts.taskOpenFiles ?? DEFAULT_TASK_OPEN_FILES,
      logger,
    };
    if (gated) spec.gate = prepare;
    else spec.prepared = await prepare();
    const filter = sandboxed ? cap.seccomp : undefined;
    if (filter !== undefined) spec.seccomp = () => filter.open();
    if (identity !== undefined) {
      spec.uid = identity.uid;
      spec.gid = identity.gid;
    }
    let handle: TaskProcess;
    try {
      handle = await launch(spec);
    } catch (err) {
      await discardCgroup();
      throw err;
    }
    logger.debug({ pid: handle.pid, wrapper: handle.proc.wrapper, uid: identity?.uid }, 'task started');
    return this.track(handle);
  }

  async prepareAllocation(allocId: string, allocsDir: string): Promise<void> {
    if (!this.opts.enabled) return;
    const cap = await this.cap();
    if (refuses(cap) !== undefined || !cap.unprivilegedUser) return;
    // The allocation's uid: leasing it takes a few file operations, off the start of its tasks.
    await this.uidPool(allocsDir).acquire(allocId);
  }

  /** The task's cgroup with its limits, and the OOM kills it counted already (a leftover re-opened). */
  private async createCgroup(manager: CgroupManager, config: TaskConfig): Promise<Prepared> {
    const cgroup = await manager.create(taskCgroupName(config.allocId, config.task), {
      memoryMiB: config.resources.memory,
      cpuMillicores: config.resources.cpu,
      pids: config.resources.pids ?? this.opts.taskPidsLimit ?? DEFAULT_TASK_PIDS_LIMIT,
      cpuHardCap: this.opts.cpuHardCap ?? false,
    });
    // Unreadable: every OOM kill seen at exit counts.
    const oomKillsBefore = () =>
      cgroup.usage().then(
        (u) => u.oomKills,
        () => 0,
      );
    return { cgroup, oomKillsBefore };
  }

  private async prepareDirs(
    config: TaskConfig,
    layout: { shared?: string },
    identity: { uid: number; gid: number },
  ): Promise<void> {
    const dirs: Parameters<typeof prepareTaskDirs>[0] = {
      task: config.cwd,
      private: ['local', 'secrets', 'tmp'].map((d) => join(config.cwd, d)),
    };
    if (layout.shared !== undefined) dirs.shared = layout.shared;
    await prepareTaskDirs(dirs, identity);
  }

  async recover(state: TaskHandleState): Promise<TaskHandle | undefined> {
    const data = processHandleData(state, 'exec');
    if (data === undefined) return undefined;
    const cap = await this.cap();
    let cgroup: TaskCgroup | undefined;
    if (data.cgroup !== undefined && cap.cgroups !== undefined) cgroup = await cap.cgroups.open(data.cgroup);
    return this.track(reattach('exec', data, cgroup, this.logger));
  }

  /**
   * The shared /dev when it is whole. Unmounted since (by hand): this start uses bwrap's own, and
   * the tree is made again in the background for the next ones.
   */
  private sharedDev(cap: IsolationCapability): string | undefined {
    const dir = cap.sandboxDev;
    if (dir === undefined) return undefined;
    if (sandboxDevReady(dir)) return dir;
    this.remakingDev ??= ensureSandboxDev(dir).then((problem) => {
      this.remakingDev = undefined;
      if (problem !== undefined)
        this.logger.warn({ dir, problem }, 'could not make the shared sandbox /dev again');
    });
    return undefined;
  }

  /** Counts the allocation's running tasks until this one exits. */
  private track(handle: TaskProcess): TaskProcess {
    const id = handle.proc.allocId;
    this.running.set(id, (this.running.get(id) ?? 0) + 1);
    void handle.wait().then(() => {
      const n = (this.running.get(id) ?? 1) - 1;
      if (n <= 0) this.running.delete(id);
      else this.running.set(id, n);
    });
    return handle;
  }

  /**
   * The allocation's directories, when the task dir follows the agent's layout
   * (`<allocs>/<allocId>/<task>`, see ../../runner/alloc-dir.ts): its shared dir, and what to hide.
   */
  private layout(config: TaskConfig): { shared?: string; hide: string[]; allocsRoot?: string } {
    const ours = basename(config.cwd) === config.task && basename(dirname(config.cwd)) === config.allocId;
    const allocsRoot = ours ? dirname(dirname(config.cwd)) : undefined;
    const hide =
      this.opts.dataDir !== undefined ? [this.opts.dataDir] : allocsRoot !== undefined ? [allocsRoot] : [];
    const out: { shared?: string; hide: string[]; allocsRoot?: string } = { hide };
    if (allocsRoot !== undefined) {
      out.shared = allocDirPaths(allocsRoot, config.allocId).shared;
      out.allocsRoot = allocsRoot;
    }
    return out;
  }

  /** Whom the task runs as: undefined = the agent's own user (nothing to switch). */
  private async identity(config: TaskConfig, cap: IsolationCapability): Promise<TaskIdentity | undefined> {
    const allowed = this.opts.allowedTaskUsers ?? [];
    if (config.user !== undefined) {
      if (cap.unprivilegedUser) return resolveTaskUser(config.user, allowed);
      const me = currentUserName();
      assertTaskUserAllowed(config.user, allowed);
      if (config.user !== me)
        throw new ExecError(
          `user ${JSON.stringify(config.user)} can not be used on this node: tasks run as the agent's user ${JSON.stringify(me)} (switching users needs root)`,
          'EPERM',
        );
      return undefined;
    }
    if (!cap.unprivilegedUser) return undefined;
    const uid = await this.uidPool(this.layout(config).allocsRoot ?? dirname(config.cwd)).acquire(
      config.allocId,
    );
    return { uid, gid: uid, name: `uid ${uid}` };
  }

  /** The uid leases: in the data dir, else next to the allocations root. */
  private uidPool(allocsRoot: string): UidPool {
    if (this.pool === undefined) {
      const dir =
        this.opts.dataDir !== undefined
          ? join(this.opts.dataDir, 'agent', 'task-uids')
          : join(dirname(allocsRoot), 'task-uids');
      this.pool = new UidPool(dir, this.opts.taskUidRange ?? DEFAULT_TASK_UID_RANGE, (id) =>
        this.running.has(id),
      );
    }
    return this.pool;
  }
}

/** Why the program is out of the sandbox's sight, if it is. */
function hiddenFromSandbox(
  path: string,
  taskDir: string,
  layout: { shared?: string; hide: string[] },
): string | undefined {
  if ([taskDir, layout.shared].some((d) => d !== undefined && isWithin(d, path))) return undefined;
  if (isWithin('/tmp', path)) return 'not visible inside the task sandbox (its /tmp is private)';
  if (layout.hide.some((h) => isWithin(h, path)))
    return 'not visible inside the task sandbox (the agent data dir is hidden)';
  return undefined;
}

/**
 * The program that drops a task to its uid (sandbox.ts, Drop): unshare in a sandbox (bwrap set
 * no_new_privs), setpriv elsewhere. Undefined without setpriv (refuses() stops such starts).
 */
function dropper(
  cap: IsolationCapability,
  to: { uid: number; gid: number },
  inSandbox: boolean,
): Drop | undefined {
  if (inSandbox && cap.unsharePath !== undefined)
    return { tool: 'unshare', path: cap.unsharePath, uid: to.uid, gid: to.gid };
  if (cap.setprivPath !== undefined)
    return { tool: 'setpriv', path: cap.setprivPath, uid: to.uid, gid: to.gid };
  return undefined;
}

/** Why the exec driver will not run tasks on this node, if it will not. */
function refuses(cap: IsolationCapability): string | undefined {
  // As root, a task must never silently run as root.
  if (cap.root && !cap.unprivilegedUser)
    return 'can not run tasks as an unprivileged user on this node: setpriv (util-linux) is missing or does not work';
  return undefined;
}
