/**
 * The agent: one per machine. Registers the node, keeps it alive, runs the allocations the servers
 * assign to it and serves their logs. See README.md for the flow.
 */
import { AgentCredential } from './credential.ts';
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import { resolve } from 'node:path';
import { InvalidError, UnauthenticatedError, type FieldProblem } from '../core/errors.ts';
import type { NodeTls } from './join.ts';

import { createLogger, type Logger } from '../core/log.ts';
import { Agent, type StopOptions } from './agent.ts';
import { allocsRoot } from './runner/alloc-dir.ts';
import { DEFAULT_DISK_WATCH } from './runner/disk-watch.ts';
import { loadNodeId } from './fingerprint.ts';
import { DEFAULT_LOG_LIMITS, DEFAULT_LOG_RETENTION_MS } from './logs.ts';
import { networkOptionProblems, type NetworkOptions } from './network/index.ts';
import {
  DEFAULT_AGENT_HTTP_ADDR,
  DEFAULT_PORT_RANGE,
  isolationOptionProblems,
  parseHostPort,
  type TaskIsolationMode,
} from './options.ts';

export interface AgentOptions {
  /** Agent state under <dataDir>/agent (node id file, allocation state files, alloc dirs). */
  dataDir: string;
  /** Server base URLs, e.g. ['http://127.0.0.1:8686']. */
  servers: string[];
  /** host:port of the agent's own HTTP endpoint; default 127.0.0.1:8687; port 0 = any free. */
  httpAddr?: string;
  /** Node name; default os.hostname(). */
  name?: string;
  /** Sent at the node's first registration (default: $UNUM_TOKEN); afterwards the node's own credential is. */
  token?: string;
  /**
   * Join a TLS server (join.ts): with the join token, trusting the CA of that hash. Skipped when the
   * node already holds a certificate of that CA that is still valid. `servers` may then be empty:
   * the join address is the server.
   */
  join?: { server: string; token: string; caHash: string };
  logger?: Logger;
  /** raw_exec driver off unless enabled. */
  enableRawExec?: boolean;
  /** Kept for the host. */
  reserved?: { cpu: number; memory: number };
  /** Dynamic ports, default 20000-32000. */
  portRange?: { min: number; max: number };
  /**
   * Bytes of log kept per stream (stdout, stderr) of a task, current and rotated files together;
   * default 10 MiB.
   */
  logMaxBytes?: number;
  /** Files those bytes are spread over (a file rotates at logMaxBytes / logMaxFiles); default 5. */
  logMaxFiles?: number;
  /** How long the logs (the directory) of a finished allocation are kept; default 24 h. */
  logRetentionMs?: number;
  /** How often task usage is sampled (the interval of cpuPercent); default 5 s. */
  statsIntervalMs?: number;
  /**
   * Task isolation (exec driver): `auto` enforces what the node allows (cgroups, namespaces, a uid
   * per allocation; see drivers/exec/isolation.ts); `off` runs tasks as the agent's user without any, as a
   * non-root agent does. Default `auto`.
   */
  taskIsolation?: TaskIsolationMode;
  /** Users a job's `user:` may name (`--allow-task-user NAME`); default none. */
  allowedTaskUsers?: string[];
  /** Uids handed to allocations, one each (`--task-uid-range 200000-265535`); default 200000-265535. */
  taskUidRange?: { min: number; max: number };
  /** Most processes and threads of a task that sets no `pids`; default 4096. */
  taskPidsLimit?: number;
  /**
   * Open files (RLIMIT_NOFILE, soft and hard) of every task, whatever the agent's own limit; default
   * 4096. The hard limit goes above the agent's only with CAP_SYS_RESOURCE.
   */
  taskOpenFiles?: number;
  /**
   * Most processes and threads of all tasks together (pids.max of the agent's parent cgroup, shared
   * by every agent on the machine); default three quarters of kernel.pid_max.
   */
  tasksPidsMax?: number;
  /** Also cap each task's CPU time at its `cpu` (otherwise `cpu` is a relative weight); default false. */
  cpuHardCap?: boolean;
  /** Mount a cgroup hierarchy with favordynmods when cgroups are used (default true; cgroups/favor.ts). */
  favorDynmods?: boolean;
  /** The parent of this agent's task cgroups (default unum, or unum.slice on v2). */
  cgroupParent?: string;
  /** Stop every task once no server has answered for this long (ms; default: never, they keep running). */
  maxDisconnectMs?: number;
  /** Allocation networks (network/index.ts). */
  network?: NetworkOptions;
  /**
   * Longest wait between two measurements of an allocation's disk (ms); shorter while it grows
   * toward its `ephemeral.sizeMiB`. Default 10 s.
   */
  allocDiskIntervalMs?: number;
  /** Files and directories counted in one allocation; one with more is over its disk limit. Default 100 000. */
  allocDiskMaxFiles?: number;
}

export type { StopOptions } from './agent.ts';

export interface RunningAgent {
  nodeId: string;
  /** What this node cannot enforce (isolation, limits), worded for the operator; empty when all is. */
  warnings: string[];
  /** The agent's HTTP base URL, e.g. http://127.0.0.1:8687. */
  address: string;
  /**
   * Stops the agent. Its tasks keep running (the next agent process re-attaches to them) unless
   * `killTasks`, which stops them too (killSignal, then SIGKILL after killTimeout).
   */
  stop(options?: StopOptions): Promise<void>;
}

/**
 * Starts an agent. Rejects with InvalidError (naming the option) on bad options; a server that can
 * not be reached yet is not an error: the agent keeps trying to register in the background.
 */
export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const problems: FieldProblem[] = [];
  const http = parseHostPort(options.httpAddr ?? DEFAULT_AGENT_HTTP_ADDR);
  if (http === undefined)
    problems.push({
      path: 'httpAddr',
      message: `expected host:port, got ${JSON.stringify(options.httpAddr)}`,
    });
  const servers =
    options.servers.length > 0 || options.join === undefined
      ? options.servers
      : options.join.server.split(',');
  if (servers.length === 0)
    problems.push({ path: 'servers', message: 'expected at least one server address' });
  const portRange = options.portRange ?? DEFAULT_PORT_RANGE;
  if (
    !Number.isInteger(portRange.min) ||
    !Number.isInteger(portRange.max) ||
    portRange.min < 1 ||
    portRange.max > 65535 ||
    portRange.min > portRange.max
  )
    problems.push({
      path: 'portRange',
      message: `expected 1 <= min <= max <= 65535, got ${portRange.min}-${portRange.max}`,
    });
  const reserved = options.reserved ?? { cpu: 0, memory: 0 };
  for (const k of ['cpu', 'memory'] as const)
    if (!Number.isInteger(reserved[k]) || reserved[k] < 0)
      problems.push({
        path: `reserved.${k}`,
        message: `expected a whole number, 0 or more, got ${reserved[k]}`,
      });
  const positive = (path: string, value: number | undefined, min = 1): void => {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < min))
      problems.push({ path, message: `expected a whole number, ${min} or more, got ${value}` });
  };
  positive('logMaxBytes', options.logMaxBytes);
  positive('logMaxFiles', options.logMaxFiles);
  positive('logRetentionMs', options.logRetentionMs, 0);
  positive('statsIntervalMs', options.statsIntervalMs);
  positive('allocDiskIntervalMs', options.allocDiskIntervalMs);
  positive('maxDisconnectMs', options.maxDisconnectMs);
  positive('allocDiskMaxFiles', options.allocDiskMaxFiles);
  problems.push(...isolationOptionProblems(options), ...networkOptionProblems(options.network));
  if (problems.length > 0 || http === undefined)
    throw InvalidError.fromFields(problems, 'invalid agent options');

  const dataDir = resolve(options.dataDir);
  await mkdir(allocsRoot(dataDir), { recursive: true });
  const nodeId = await loadNodeId(dataDir);
  const logger = options.logger ?? createLogger('agent');
  const tls = await nodeCertificates(dataDir, nodeId, servers, options.join, logger);
  const credential =
    tls !== undefined
      ? AgentCredential.certificate()
      : await AgentCredential.load(dataDir, nodeId, options.token ?? process.env['UNUM_TOKEN']);
  const agent = new Agent({
    dataDir,
    servers,
    nodeId,
    credential,
    ...(tls !== undefined ? { tls } : {}),
    name: options.name ?? os.hostname(),
    http,
    logger,
    enableRawExec: options.enableRawExec ?? false,
    reserved: { cpu: reserved.cpu, memory: reserved.memory },
    portRange: { min: portRange.min, max: portRange.max },
    logLimits: {
      maxBytes: options.logMaxBytes ?? DEFAULT_LOG_LIMITS.maxBytes,
      maxFiles: options.logMaxFiles ?? DEFAULT_LOG_LIMITS.maxFiles,
    },
    logRetentionMs: options.logRetentionMs ?? DEFAULT_LOG_RETENTION_MS,
    disk: {
      intervalMs: options.allocDiskIntervalMs ?? DEFAULT_DISK_WATCH.intervalMs,
      maxFiles: options.allocDiskMaxFiles ?? DEFAULT_DISK_WATCH.maxFiles,
    },
    ...(options.statsIntervalMs !== undefined ? { statsIntervalMs: options.statsIntervalMs } : {}),
    ...(options.taskIsolation !== undefined ? { taskIsolation: options.taskIsolation } : {}),
    ...(options.allowedTaskUsers !== undefined ? { allowedTaskUsers: options.allowedTaskUsers } : {}),
    ...(options.taskUidRange !== undefined ? { taskUidRange: options.taskUidRange } : {}),
    ...(options.taskPidsLimit !== undefined ? { taskPidsLimit: options.taskPidsLimit } : {}),
    ...(options.cpuHardCap !== undefined ? { cpuHardCap: options.cpuHardCap } : {}),
    ...(options.taskOpenFiles !== undefined ? { taskOpenFiles: options.taskOpenFiles } : {}),
    ...(options.tasksPidsMax !== undefined ? { tasksPidsMax: options.tasksPidsMax } : {}),
    ...(options.favorDynmods !== undefined ? { favorDynmods: options.favorDynmods } : {}),
    ...(options.cgroupParent !== undefined ? { cgroupParent: options.cgroupParent } : {}),
    ...(options.maxDisconnectMs !== undefined ? { maxDisconnectMs: options.maxDisconnectMs } : {}),
    ...(options.network !== undefined ? { network: options.network } : {}),
  });
  await agent.start();
  // The agent logs them once itself; callers (unum up, unum agent) show them to the operator.
  const warnings = await agent.isolationWarnings();
  const renewal = tls !== undefined ? renewWhenDue(dataDir, nodeId, servers, tls, agent, logger) : undefined;
  return {
    nodeId,
    address: agent.address,
    warnings,
    stop: (opts) => {
      clearInterval(renewal);
      return agent.stop(opts);
    },
  };
}

/** How often a running agent looks whether its certificate is due for renewal. */
const RENEWAL_CHECK_MS = 6 * 3_600_000;

/** Renews the node certificate of a running agent once past two thirds of its life. */
function renewWhenDue(
  dataDir: string,
  nodeId: string,
  servers: readonly string[],
  first: NodeTls,
  agent: Agent,
  logger: Logger,
): NodeJS.Timeout {
  let current = first;
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void (async () => {
      const { needsRenewal, renewNodeCertificate } = await import('./join.ts');
      if (!needsRenewal(current, Date.now())) return;
      for (const server of servers)
        try {
          current = await renewNodeCertificate(dataDir, nodeId, server, current);
          agent.useCertificate(current);
          logger.info({ expiresAt: new Date(current.expiresAt).toISOString() }, 'node certificate renewed');
          return;
        } catch (err) {
          logger.warn({ err, server }, 'could not renew the node certificate; will try again');
        }
    })().finally(() => {
      busy = false;
    });
  }, RENEWAL_CHECK_MS);
  timer.unref();
  return timer;
}

/**
 * The node's certificates for https:// servers: those kept from an earlier join (renewed when past
 * two thirds of their life), else a new join. None for plain http:// servers (`unum up`), even
 * where the data dir keeps certificates.
 * UnauthenticatedError when the node has not joined and no join was asked for.
 */
async function nodeCertificates(
  dataDir: string,
  nodeId: string,
  servers: readonly string[],
  join: AgentOptions['join'],
  logger: Logger,
): Promise<NodeTls | undefined> {
  const https = servers.some((s) => s.startsWith('https:'));
  // Plain servers (unum up's) take node secrets, whatever certificate the data dir keeps from a
  // join; and the certificate builder is slow to load.
  if (join === undefined && !https) return undefined;
  const { joinCluster, loadNodeTls, needsRenewal, renewNodeCertificate } = await import('./join.ts');
  const { parseCaHash } = await import('../transport/pki.ts');
  let tls = await loadNodeTls(dataDir, nodeId);
  const now = Date.now();
  const wantedCa = join !== undefined ? parseCaHash(join.caHash) : undefined;
  if (join !== undefined && (tls === undefined || tls.caHash !== wantedCa || tls.expiresAt <= now))
    return joinCluster(dataDir, nodeId, join);
  if (tls === undefined) {
    if (https)
      throw new UnauthenticatedError(
        `node ${nodeId} has not joined the cluster at ${servers.join(', ')}: start it once with "unum agent --join URL --token T --ca-hash H" (unum token create prints them)`,
      );
    return undefined;
  }
  if (tls.expiresAt <= now)
    throw new UnauthenticatedError(
      `the certificate of node ${nodeId} expired at ${new Date(tls.expiresAt).toISOString()}: join again with a new token (unum agent --join URL --token T --ca-hash ${tls.caHash})`,
    );
  if (needsRenewal(tls, now)) {
    for (const server of servers)
      try {
        tls = await renewNodeCertificate(dataDir, nodeId, server, tls);
        logger.info({ expiresAt: new Date(tls.expiresAt).toISOString() }, 'node certificate renewed');
        break;
      } catch (err) {
        // The next server; a certificate not renewed still serves until it expires.
        logger.warn({ err, server }, 'could not renew the node certificate');
      }
  }
  return tls;
}
