/**
 * What the role verbs (`up`, `server`, `agent`) share: where state lives, where to listen, the
 * logger, and running until Ctrl-C or SIGTERM.
 */
import { chmod, mkdir, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { parseDuration } from '../core/duration.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { UsageError, boolFlag, intFlag, stringFlag, type Args, type Context } from './context.ts';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** `--data-dir`, else `UNUM_DATA_DIR`, else `${XDG_DATA_HOME:-~/.local/share}/unum`. */
export function dataDirFrom(
  flag: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string {
  if (flag) return resolve(flag);
  const fromEnv = env['UNUM_DATA_DIR'];
  if (fromEnv) return resolve(fromEnv);
  const xdg = env['XDG_DATA_HOME'];
  const base = xdg && isAbsolute(xdg) ? xdg : join(env['HOME'] || homedir(), '.local', 'share');
  return join(base, 'unum');
}

/** Normalizes a listen address to `host:port`; accepts `http://host:port` too (the form UNUM_ADDR has). */
export function listenAddr(input: string, flag = '--addr'): string {
  const bare = input.replace(/^https?:\/\//, '').replace(/\/+$/, '');
  const m = /^(\[[0-9a-fA-F:]+\]|[^:/\s]+):(\d{1,5})$/.exec(bare);
  if (!m || Number(m[2]) > 65535)
    throw new UsageError(`${flag} expects host:port (like 127.0.0.1:8686), got "${input}"`);
  return bare;
}

/** `--log-level`, else UNUM_LOG_LEVEL, else `fallback`. */
export function logLevel(
  args: Args,
  env: Readonly<Record<string, string | undefined>>,
  fallback: string,
): string {
  const level = stringFlag(args, 'log-level') ?? env['UNUM_LOG_LEVEL'] ?? fallback;
  if (!(LOG_LEVELS as readonly string[]).includes(level))
    throw new UsageError(`--log-level expects one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  return level;
}

export function daemonLogger(name: string, level: string): Logger {
  return createLogger(name, level);
}

export async function ensureDataDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o711 });
    // Others may pass through (a task outside a sandbox reaches its directory below) but not list
    // or read it: the management token and the store are the operator's alone.
    const mode = (await stat(dir)).mode & 0o777;
    if ((mode & 0o066) !== 0) await chmod(dir, mode & ~0o066);
  } catch (err) {
    throw new Error(`cannot create the data directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
}

/** Resolves on the first Ctrl-C or SIGTERM. */
export function untilInterrupted(ctx: Context): Promise<void> {
  const signal = ctx.interrupted();
  return new Promise((done) => {
    if (signal.aborted) return done();
    signal.addEventListener('abort', () => done(), { once: true });
  });
}

/** Clearer words for the usual reasons a daemon cannot start. */
export function startError(what: string, addr: string, err: unknown): Error {
  const code = (err as { code?: string }).code;
  if (code === 'EADDRINUSE')
    return new Error(
      `cannot start the ${what}: ${addr} is already in use (another unum running?). Pick another with --addr.`,
      { cause: err },
    );
  if (code === 'EACCES')
    return new Error(`cannot start the ${what}: no permission to listen on ${addr}`, { cause: err });
  return new Error(`cannot start the ${what}: ${(err as Error).message ?? String(err)}`, { cause: err });
}

export const DAEMON_FLAGS = {
  'data-dir': { type: 'string' },
  'log-level': { type: 'string' },
} as const;

/** Flags of the verbs that run an agent (`up`, `agent`): which drivers, and how tasks are isolated. */
export const TASK_FLAGS = {
  'raw-exec': { type: 'boolean' },
  'task-isolation': { type: 'string' },
  'allow-task-user': { type: 'string', multiple: true },
  'task-uid-range': { type: 'string' },
  'task-pids-limit': { type: 'string' },
  'task-open-files': { type: 'string' },
  'tasks-pids-max': { type: 'string' },
  'cpu-hard-cap': { type: 'boolean' },
  'no-favordynmods': { type: 'boolean' },
  'cgroup-parent': { type: 'string' },
  'max-disconnect': { type: 'string' },
  network: { type: 'string' },
  'network-bridge': { type: 'string' },
  'alloc-subnet': { type: 'string' },
  'allow-host-network': { type: 'boolean' },
  'alloc-disk-interval': { type: 'string' },
  'alloc-disk-max-files': { type: 'string' },
} as const;

/** Flags of the roles that run a server (`unum up`, `unum server`). */
export const SERVER_FLAGS = {
  'allow-host': { type: 'string', multiple: true },
  'max-connections': { type: 'string' },
  'max-connections-per-source': { type: 'string' },
  'alloc-disk-mib': { type: 'string' },
  'heartbeat-interval': { type: 'string' },
  'heartbeat-grace': { type: 'string' },
  'heartbeat-max-rate': { type: 'string' },
} as const;

export const SERVER_FLAGS_HELP = `  --allow-host NAME    also answer requests for this host name (repeatable). By default only IP
                       addresses and localhost are served, so that a web page cannot reach the
                       API through a DNS name of its own (DNS rebinding)
  --max-connections N  connections the API holds open at once (default 4096); more get 503
  --max-connections-per-source N
                       connections one address may hold open to the API (default 512)
  --alloc-disk-mib N   disk of an allocation whose group sets no ephemeral.sizeMiB, in MiB
                       (default 1024), given at submission
  --heartbeat-interval D
                       how often agents heartbeat (default 1s; agents are told at registration
                       and in every heartbeat answer)
  --heartbeat-grace D  silence after which the leader marks a node down and replaces its
                       allocations (default 4s, or 4 intervals if longer; at least 2 intervals).
                       Shorter: quicker replacement; longer: a paused or starved agent survives
                       longer without being taken for dead
  --heartbeat-max-rate N
                       heartbeats per second the leader asks of all agents together (default
                       5000; 0: no limit). Past N × interval nodes, the interval and the grace
                       grow in proportion (10 000 nodes at the defaults: 2s and 8s)`;

/** The server options the server flags set. */
export function serverOptions(args: Args): {
  allowedHosts?: string[];
  limits?: { maxConnections?: number; maxConnectionsPerSource?: number };
  allocDiskMiB?: number;
  heartbeat?: { intervalMs?: number; graceMs?: number; maxRate?: number };
} {
  const out: ReturnType<typeof serverOptions> = {};
  const hosts = args.flags['allow-host'];
  if (Array.isArray(hosts)) out.allowedHosts = hosts.filter((h): h is string => typeof h === 'string');
  const total = intFlag(args, 'max-connections', 1);
  const perSource = intFlag(args, 'max-connections-per-source', 1);
  if (total !== undefined || perSource !== undefined)
    out.limits = {
      ...(total !== undefined ? { maxConnections: total } : {}),
      ...(perSource !== undefined ? { maxConnectionsPerSource: perSource } : {}),
    };
  const disk = intFlag(args, 'alloc-disk-mib', 1);
  if (disk !== undefined) out.allocDiskMiB = disk;
  const heartbeat = heartbeatFlags(args);
  if (heartbeat) out.heartbeat = heartbeat;
  return out;
}

/** `--heartbeat-interval`, `--heartbeat-grace`, `--heartbeat-max-rate` (the server's rules, in the flags' words). */
function heartbeatFlags(args: Args): { intervalMs?: number; graceMs?: number; maxRate?: number } | undefined {
  const duration = (flag: string): number | undefined => {
    const text = stringFlag(args, flag);
    if (text === undefined) return undefined;
    const ms = parseDuration(text);
    if (ms === undefined || ms <= 0)
      throw new UsageError(`--${flag} expects a duration like 2s, got "${text}"`);
    return ms;
  };
  const intervalMs = duration('heartbeat-interval');
  const graceMs = duration('heartbeat-grace');
  const maxRate = intFlag(args, 'heartbeat-max-rate', 0);
  if (intervalMs === undefined && graceMs === undefined && maxRate === undefined) return undefined;
  // As src/server/heartbeats.ts checks them (MIN_HEARTBEAT_INTERVAL_MS, twice the interval).
  if (intervalMs !== undefined && intervalMs < 100)
    throw new UsageError(`--heartbeat-interval must be at least 100ms, got ${intervalMs}ms`);
  const interval = intervalMs ?? 1000;
  if (graceMs !== undefined && graceMs < 2 * interval)
    throw new UsageError(
      `--heartbeat-grace must be at least twice the heartbeat interval (${2 * interval}ms): one late beat must not take a node down`,
    );
  return {
    ...(intervalMs !== undefined ? { intervalMs } : {}),
    ...(graceMs !== undefined ? { graceMs } : {}),
    ...(maxRate !== undefined ? { maxRate } : {}),
  };
}

export const TASK_FLAGS_HELP = `  --raw-exec           allow the raw_exec driver (tasks run without isolation)
  --task-isolation M   auto (default): enforce what this machine allows (cgroup limits, own
                       namespaces, a uid per allocation); off: run tasks as this user, unlimited
  --allow-task-user U  a job's "user:" may name U (repeatable; default: none)
  --task-uid-range R   uids handed to allocations, one each (default 200000-265535)
  --task-pids-limit N  most processes and threads per task (default 4096)
  --task-open-files N  open files of each task, whatever this process's limit (default 4096)
  --tasks-pids-max N   most processes and threads of all tasks together (default: three
                       quarters of kernel.pid_max)
  --cpu-hard-cap       cap each task's CPU time at its "cpu" (default: a relative weight)
  --no-favordynmods    do not mount a cgroup hierarchy with favordynmods (by default, as root,
                       the agent does: it makes each task start up to 20 ms quicker)
  --alloc-disk-interval D
                       how often each allocation's disk use is measured (default 10s; sooner
                       while it grows toward its ephemeral.sizeMiB)
  --alloc-disk-max-files N
                       files and directories the agent counts in one allocation (default
                       100000); an allocation with more is over its disk limit
  --max-disconnect D   stop every task once no server has answered for D (e.g. 2m; default:
                       never: tasks keep running while the servers are out of reach)
  --cgroup-parent P    the parent of this agent's task cgroups (default unum; unum.slice on
                       cgroup v2): one per agent where several share a kernel
  --network M          bridge (default, as root): each allocation gets its own network namespace
                       and address, its ports published on this machine's addresses; host: every
                       task shares this machine's network
  --network-bridge B   the allocations' bridge (default unum0)
  --alloc-subnet CIDR  the allocations' addresses on this machine (default 172.26.64.0/20)
  --allow-host-network a group may ask for network mode "host" (this machine's own network)`;

/** The allocation network options (the agent checks the bridge name and the subnet). */
interface NetworkFlags {
  mode?: 'bridge' | 'host';
  bridge?: string;
  subnet?: string;
  allowHost?: boolean;
}

/** The agent options those flags set. Bad values are usage errors; startAgent checks the rest. */
export function taskAgentOptions(args: Args): {
  enableRawExec: boolean;
  taskIsolation?: 'auto' | 'off';
  allowedTaskUsers?: string[];
  taskUidRange?: { min: number; max: number };
  taskPidsLimit?: number;
  taskOpenFiles?: number;
  tasksPidsMax?: number;
  cpuHardCap?: boolean;
  favorDynmods?: boolean;
  cgroupParent?: string;
  network?: NetworkFlags;
  allocDiskIntervalMs?: number;
  maxDisconnectMs?: number;
  allocDiskMaxFiles?: number;
} {
  const out: ReturnType<typeof taskAgentOptions> = { enableRawExec: boolFlag(args, 'raw-exec') };
  const mode = stringFlag(args, 'task-isolation');
  if (mode !== undefined) {
    if (mode !== 'auto' && mode !== 'off')
      throw new UsageError(`--task-isolation expects auto or off, got "${mode}"`);
    out.taskIsolation = mode;
  }
  const users = args.flags['allow-task-user'];
  if (Array.isArray(users)) out.allowedTaskUsers = users.filter((u): u is string => typeof u === 'string');
  const range = stringFlag(args, 'task-uid-range');
  if (range !== undefined) {
    const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(range);
    if (!m) throw new UsageError(`--task-uid-range expects MIN-MAX, e.g. 200000-265535, got "${range}"`);
    out.taskUidRange = { min: Number(m[1]), max: Number(m[2]) };
  }
  const pids = intFlag(args, 'task-pids-limit', 1);
  if (pids !== undefined) out.taskPidsLimit = pids;
  const files = intFlag(args, 'task-open-files', 1);
  if (files !== undefined) out.taskOpenFiles = files;
  const total = intFlag(args, 'tasks-pids-max', 1);
  if (total !== undefined) out.tasksPidsMax = total;
  if (boolFlag(args, 'cpu-hard-cap')) out.cpuHardCap = true;
  if (boolFlag(args, 'no-favordynmods')) out.favorDynmods = false;
  const cgroupParent = stringFlag(args, 'cgroup-parent');
  if (cgroupParent !== undefined) out.cgroupParent = cgroupParent;
  const network: NetworkFlags = {};
  const netMode = stringFlag(args, 'network');
  if (netMode !== undefined) {
    if (netMode !== 'bridge' && netMode !== 'host')
      throw new UsageError(`--network expects bridge or host, got "${netMode}"`);
    network.mode = netMode;
  }
  const bridge = stringFlag(args, 'network-bridge');
  if (bridge !== undefined) network.bridge = bridge;
  const subnet = stringFlag(args, 'alloc-subnet');
  if (subnet !== undefined) network.subnet = subnet;
  if (boolFlag(args, 'allow-host-network')) network.allowHost = true;
  if (Object.keys(network).length > 0) out.network = network;
  const disconnect = stringFlag(args, 'max-disconnect');
  if (disconnect !== undefined) {
    const ms = parseDuration(disconnect);
    if (ms === undefined || ms < 1_000)
      throw new UsageError(
        `--max-disconnect expects a duration of at least 1s, like 2m, got "${disconnect}"`,
      );
    out.maxDisconnectMs = ms;
  }
  const interval = stringFlag(args, 'alloc-disk-interval');
  if (interval !== undefined) {
    const ms = parseDuration(interval);
    if (ms === undefined || ms < 1)
      throw new UsageError(`--alloc-disk-interval expects a duration like 10s, got "${interval}"`);
    out.allocDiskIntervalMs = ms;
  }
  const maxFiles = intFlag(args, 'alloc-disk-max-files', 1);
  if (maxFiles !== undefined) out.allocDiskMaxFiles = maxFiles;
  return out;
}
