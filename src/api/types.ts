/** Request and response bodies of the HTTP API (v1). See docs/api.md and /v1/openapi.json. */
import type {
  AllocClientStatus,
  Allocation,
  ClusterEvent,
  DriverInfo,
  Evaluation,
  Job,
  Node,
  NodeDevice,
  NodeResources,
  PlacementFailure,
  TaskState,
} from '../core/types.ts';
import type { ComputeResources } from '../core/job-spec.ts';

/** POST /v1/jobs: submit or update a job. `job` is a job document (YAML decoded, or JSON). */
export interface SubmitJobRequest {
  job: unknown;
}
export interface SubmitJobResponse {
  job: Job;
  /** False when the spec equals the current version (nothing changes). */
  changed: boolean;
  evalId?: string;
}

/** Counts of a job's allocations by client status. */
export interface JobSummary {
  desired: number;
  pending: number;
  running: number;
  complete: number;
  failed: number;
  lost: number;
}

export interface JobListItem {
  job: Job;
  summary: JobSummary;
}

export interface JobDetail {
  job: Job;
  summary: JobSummary;
  /** Latest evaluation's placement failures per group: why instances are pending. */
  placementFailures: Record<string, PlacementFailure>;
}

/** POST /v1/jobs/plan: a dry run. */
export interface PlanJobResponse {
  job: Job;
  /** Field-level differences from the current version; empty for a new job. */
  diff: FieldDiff[];
  isNew: boolean;
  /** What the scheduler would do now. */
  placements: {
    group: string;
    name: string;
    nodeId: string;
    nodeName: string;
    ports: { name: string; value: number }[];
  }[];
  stops: { allocId: string; name: string; description: string }[];
  failedGroups: Record<string, PlacementFailure>;
  /** Why the plan applier would refuse this plan now (the state moved under it, or no scheduler fits). */
  refused?: string;
}

export interface FieldDiff {
  path: string;
  type: 'added' | 'removed' | 'changed';
  before?: unknown;
  after?: unknown;
}

export interface Listed<T> {
  items: T[];
  /** Cache index of this answer: pass it back as `index` to block until something changes. */
  index: number;
}

/** A blocking query: return when the index moves past `index`, or after `waitMs`. */
export interface BlockingOptions {
  index?: number;
  waitMs?: number;
}

export interface NodeRegistration {
  /** Kept across agent restarts (from the agent's data dir) so the node keeps its allocations. */
  id: string;
  name: string;
  address: string;
  resources: NodeResources;
  reserved: ComputeResources;
  attributes: Record<string, string>;
  drivers: Record<string, DriverInfo>;
  /** GPUs and other devices; left out when the node has none. */
  devices?: NodeDevice[];
  portRange: { min: number; max: number };
}

export interface RegisterNodeResponse {
  node: Node;
  /** The heartbeat grace in seconds (what agents that predate `heartbeatIntervalMs` beat on: a third of it). */
  heartbeatTtlSeconds: number;
  /** How often the agent beats. */
  heartbeatIntervalMs: number;
  /** The silence after which the leader marks the node down. */
  heartbeatGraceMs: number;
  /**
   * Given once, when the node first registers: `secret` is the node's credential for every node
   * route from now on (keep it: it is not shown again), `agentKey` what servers will call the
   * node's agent with.
   */
  credential?: { secret: string; agentKey: string };
}

/**
 * The answer to a heartbeat: the settings, which the agent follows from then on (so that an
 * operator's change reaches every agent at its next beat).
 */
export interface HeartbeatAnswer {
  /** How often to beat. */
  intervalMs: number;
  /** The silence after which the leader marks the node down. */
  graceMs: number;
  /** `graceMs` in seconds, for agents that predate `intervalMs` (they beat every third of it). */
  ttlSeconds: number;
}

/** What an agent reports of one allocation. */
export interface AllocStatusUpdate {
  allocId: string;
  clientStatus: AllocClientStatus;
  clientDescription?: string;
  taskStates: Record<string, TaskState>;
  healthy?: boolean;
}

export interface ServerStatus {
  version: string;
  leader: boolean;
  revision: number;
  backend: string;
  nodes: number;
  addr: string;
}

/** GET /v1/operator/servers: the servers that answer now, the leader, and the Store's state. */
export interface ServersStatus {
  servers: { id: string; addr: string; startedAt: number; leader: boolean }[];
  /** The leader's server id; absent while nobody leads (an election is under way). */
  leader?: string;
  store: { backend: string; revision: number; compactRevision: number } | { error: string };
}

/** Resource use of one running task (from its cgroup). */
export interface TaskUsageStats {
  /** CPU time used since the task (its current run) started, nanoseconds. */
  cpuNanos: number;
  /**
   * CPU used over the last sample interval (a few seconds), in percent of one core: 250 is two and
   * a half cores busy. Absent until two samples exist.
   */
  cpuPercent?: number;
  memoryBytes: number;
  /** Processes and threads. */
  pids: number;
}

/**
 * GET /v1/nodes/:id/stats (served by the node's agent at GET /v1/agent/stats): usage of the
 * running tasks on a node. Tasks whose driver can not measure them (no cgroups) are left out.
 */
export interface NodeStats {
  nodeId: string;
  /** When the sample was taken (ms since the epoch). */
  time: number;
  /** By allocation id, then task name; `disk` once the agent has measured the allocation's directories. */
  allocations: Record<string, { tasks: Record<string, TaskUsageStats>; disk?: AllocDiskStats }>;
}

/** An allocation's disk: its task directories and shared `alloc/` (logs apart), as last measured. */
export interface AllocDiskStats {
  /** Bytes of the blocks its files take. */
  usedBytes: number;
  /** Its `ephemeral.sizeMiB` in bytes; absent when it has none (placed before sizes existed). */
  limitBytes?: number;
  /** Files and directories counted. */
  files: number;
  /** When it was measured (ms since the epoch): every few seconds, not at the request. */
  measuredAt: number;
}

export interface EventsPage {
  events: ClusterEvent[];
  /** Resume after this index. */
  index: number;
}

export type { Allocation, ClusterEvent, Evaluation, Job, Node, NodeDevice };

/** A join token as it is shown: never its secret, which is given once, when it is made. */
export interface JoinToken {
  /** Public id (for listing and revoking); the secret starts with it. */
  id: string;
  description?: string;
  createdAt: number;
  expiresAt: number;
  /** Who made it (as events name actors). */
  createdBy: string;
  /** Nodes that joined with it. */
  joins: number;
}

/** A join token just made: `secret` is what `unum agent --join … --token` takes, shown once. */
export interface MadeJoinToken {
  token: JoinToken;
  secret: string;
  /** The CA a joining agent pins (`--ca-hash`): sha256 of its DER. */
  caHash: string;
}

/** What a node gets when it joins (or renews): its certificate and the CA's, PEM. */
export interface JoinResponse {
  nodeId: string;
  certificate: string;
  ca: string;
  /** When the certificate expires (ms since the epoch). */
  expiresAt: number;
}
