/** What an Agent is built from (index.ts fills it from the options and their defaults). */
import type { AgentCredential } from './credential.ts';
import type { NodeTls } from './join.ts';
import type { Logger } from '../core/log.ts';
import type { LogLimits } from './logs.ts';
import type { NetworkOptions } from './network/index.ts';
import type { DiskWatchOptions } from './runner/disk-watch.ts';

export interface AgentConfig {
  dataDir: string;
  servers: string[];
  nodeId: string;
  /** The node's credential (and the join token used before it has one). */
  credential: AgentCredential;
  /**
   * The node's certificates (it joined a TLS server): every call to the servers presents them, and
   * the agent's own API serves TLS with them.
   */
  tls?: NodeTls;
  name: string;
  http: { host: string; port: number };
  logger: Logger;
  enableRawExec: boolean;
  reserved: { cpu: number; memory: number };
  portRange: { min: number; max: number };
  /** How long a blocking query waits on the server. */
  watchWaitMs?: number;
  /** First and largest delay between retries when the servers can not be reached. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Poll period of followed logs. */
  logPollMs?: number;
  /** How much log is kept per stream of a task (see logs.ts). */
  logLimits: LogLimits;
  /** How long the directory (logs) of a finished allocation is kept. */
  logRetentionMs: number;
  /** How often old allocation directories are looked for; default min(retention / 4, 10 min). */
  gcIntervalMs?: number;
  /** How often task usage is sampled (for cpuPercent); default 5 s. */
  statsIntervalMs?: number;
  /** Task isolation and identity (see drivers/exec/isolation.ts and drivers/exec/exec.ts). */
  taskIsolation?: 'auto' | 'off';
  allowedTaskUsers?: readonly string[];
  taskUidRange?: { min: number; max: number };
  taskPidsLimit?: number;
  cpuHardCap?: boolean;
  /** RLIMIT_NOFILE of every task (default 4096: drivers/launch.ts). */
  taskOpenFiles?: number;
  /** pids.max of the parent of the task cgroups (default: options.ts defaultTasksPidsMax). */
  tasksPidsMax?: number;
  /** Mount a cgroup hierarchy with favordynmods when cgroups are used (default true; cgroups/favor.ts). */
  favorDynmods?: boolean;
  /** The parent of this agent's task cgroups (default unum, or unum.slice on v2): one per agent on a shared kernel. */
  cgroupParent?: string;
  /** Stop every task once no server has answered for this long (ms; default: never). */
  maxDisconnectMs?: number;
  /** Allocation networks (network/index.ts; default: bridge unum0, 172.26.64.0/20, host mode refused). */
  network?: NetworkOptions;
  /** How each allocation's disk is measured (runner/disk-watch.ts). */
  disk: DiskWatchOptions;
}

export interface StopOptions {
  /**
   * Also stop every task (killSignal, then SIGKILL), and forget them: the next agent process starts
   * the allocations the server still wants afresh. Default false: tasks keep running and the next
   * agent process re-attaches to them.
   */
  killTasks?: boolean;
}
