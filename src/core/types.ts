/**
 * The shared vocabulary of every folder (docs/architecture.md shows how they flow). These are the
 * objects kept in the Store and sent on the wire. Times are milliseconds since the epoch; sizes are
 * millicores and MiB.
 */
import type { GroupSpec, JobSpec, ComputeResources } from './job-spec.ts';

export type JobStatus = 'pending' | 'running' | 'complete' | 'dead';

/** A submitted job: the user's intent at one version. */
export interface Job {
  id: string;
  namespace: string;
  /** Starts at 0; every change of the spec makes a new version. */
  version: number;
  /** Set by `unum stop`: every allocation is to stop. */
  stop: boolean;
  /**
   * The idempotency keys of the latest submissions that made a version (at most 16, newest last):
   * a submission sent again with one of them is answered as done, not done twice.
   */
  submissionKeys?: string[];
  status: JobStatus;
  submittedAt: number;
  spec: JobSpec;
}

export type AllocDesiredStatus = 'run' | 'stop';
export type AllocClientStatus = 'pending' | 'running' | 'complete' | 'failed' | 'lost';
export type TaskRunState = 'pending' | 'running' | 'dead';

export type TaskEventType =
  | 'received'
  | 'started'
  | 'terminated'
  | 'restarting'
  | 'not-restarting'
  | 'driver-failure'
  | 'killing'
  | 'killed'
  | 'health'
  /** A restarted agent found the task still running and took it over (same process). */
  | 'reattached'
  /** The allocation went over a limit the agent enforces (its disk): the task is killed and fails. */
  | 'limit-exceeded';

export interface TaskEvent {
  time: number;
  type: TaskEventType;
  message: string;
  exitCode?: number;
  signal?: string;
}

export interface TaskState {
  state: TaskRunState;
  /** The task ended in failure (non-zero exit, signal, exec error, OOM). */
  failed: boolean;
  restarts: number;
  pid?: number;
  startedAt?: number;
  finishedAt?: number;
  exitCode?: number;
  signal?: string;
  oomKilled?: boolean;
  /** Most recent last; capped by the agent. */
  events: TaskEvent[];
}

export interface AllocatedPort {
  name: string;
  value: number;
}

/** A whole device given to one task of an allocation. */
export interface AllocatedDevice {
  task: string;
  type: string;
  vendor: string;
  /** The node's id of the device (a GPU's UUID). */
  id: string;
  /** The vendor's index of the device on its node (names its device file, e.g. /dev/nvidia0). */
  index?: number;
}

export interface AllocatedResources {
  cpu: number;
  memory: number;
  /** MiB of disk (the group's `ephemeral.sizeMiB`); absent in allocations placed before it existed. */
  disk?: number;
  ports: AllocatedPort[];
  /** Absent when the group asks for none. */
  devices?: AllocatedDevice[];
}

export interface RescheduleEvent {
  time: number;
  prevAllocId: string;
  delayMs: number;
}

/** One instance of a group on one node. */
export interface Allocation {
  id: string;
  namespace: string;
  jobId: string;
  jobVersion: number;
  jobType: JobSpec['type'];
  /** `web.web[2]`: job, group and instance index. */
  name: string;
  group: string;
  index: number;
  nodeId: string;
  /** The group as it was at `jobVersion`: what the agent runs. */
  groupSpec: GroupSpec;
  resources: AllocatedResources;
  desiredStatus: AllocDesiredStatus;
  desiredDescription?: string;
  clientStatus: AllocClientStatus;
  clientDescription?: string;
  taskStates: Record<string, TaskState>;
  /** Set by the agent from the services' health checks; absent when the group has none. */
  healthy?: boolean;
  evalId: string;
  previousAllocId?: string;
  nextAllocId?: string;
  rescheduleEvents: RescheduleEvent[];
  /** What the leader asks of this allocation besides its desired status (a node drain). */
  desiredTransition?: DesiredTransition;
  createdAt: number;
  modifiedAt: number;
}

/** Changes the leader asks for that the scheduler carries out. */
export interface DesiredTransition {
  /** Its node is draining: the scheduler places a replacement elsewhere, then stops this one. */
  migrate?: boolean;
}

export type NodeStatus = 'initializing' | 'ready' | 'down';

export type NodeEligibility = 'eligible' | 'ineligible';

/** How a drain goes: its allocations move elsewhere until `deadline`, when what is left is stopped. */
export interface DrainStrategy {
  startedAt: number;
  /** Milliseconds since the epoch; allocations still on the node then are stopped. */
  deadline: number;
}

export interface NodeResources extends ComputeResources {
  disk: number;
}

export interface DriverInfo {
  detected: boolean;
  healthy: boolean;
  description?: string;
}

/** Kinds of devices a node can offer besides CPU and memory. */
export type DeviceType = 'gpu';

/** A device of a node (found by the agent's fingerprint), e.g. one GPU. */
export interface NodeDevice {
  type: DeviceType;
  /** `nvidia`, … */
  vendor: string;
  /** Stable identity of the device on its node (a GPU's UUID). */
  id: string;
  /** Model, e.g. `NVIDIA A100-SXM4-40GB`. */
  name: string;
  /** The device's own index on the node (as the vendor's tools number it). */
  index?: number;
  /** Device memory (MiB), when it has its own. */
  memoryMiB?: number;
}

export interface Node {
  id: string;
  name: string;
  /** Where the agent serves logs and other node-local calls, e.g. `http://127.0.0.1:8687`. */
  address: string;
  status: NodeStatus;
  statusDescription?: string;
  /**
   * `ineligible`: the scheduler places nothing new here (`unum node ineligible`, and from the start
   * of a drain until `unum node eligible`). What runs there keeps running.
   */
  eligibility: NodeEligibility;
  /** A drain is under way (`unum node drain`): its allocations are moving to other nodes. */
  drain: boolean;
  /** The drain under way; absent when the node is not draining. */
  drainStrategy?: DrainStrategy;
  resources: NodeResources;
  /** Kept for the host: the scheduler never hands these out. */
  reserved: ComputeResources;
  /** os, arch, hostname, kernel, cpu.cores, cgroup.version, driver.exec, … */
  attributes: Record<string, string>;
  drivers: Record<string, DriverInfo>;
  /** Devices (GPUs, …) the node offers; absent when it has none. */
  devices?: NodeDevice[];
  /** Dynamic ports are taken from this range. */
  portRange: { min: number; max: number };
  registeredAt: number;
  lastHeartbeat: number;
}

export type EvalTrigger =
  | 'job-register'
  | 'job-deregister'
  | 'alloc-failure'
  | 'alloc-stop'
  | 'node-update'
  | 'node-drain'
  | 'reschedule'
  | 'blocked-retry';

export type EvalStatus = 'pending' | 'complete' | 'blocked' | 'failed' | 'canceled';

/** Why the scheduler could not place an instance of a group: kept for `unum status` and `unum why`. */
export interface PlacementFailure {
  /** How many instances could not be placed. */
  unplaced: number;
  nodesEvaluated: number;
  /** Filter name → nodes it rejected (e.g. `constraint os = windows`: 3). */
  nodesFiltered: Record<string, number>;
  /** Dimension → nodes that lacked it (cpu, memory, disk, ports, devices). */
  nodesExhausted: Record<string, number>;
  /** One sentence for people. */
  summary: string;
}

/** A reason to look at a job again. */
export interface Evaluation {
  id: string;
  namespace: string;
  jobId: string;
  priority: number;
  triggeredBy: EvalTrigger;
  status: EvalStatus;
  statusDescription?: string;
  /** Not before this time (used for delayed rescheduling). */
  waitUntil?: number;
  nodeId?: string;
  failedGroups?: Record<string, PlacementFailure>;
  /** For a blocked evaluation: the evaluation it continues. */
  previousEvalId?: string;
  createdAt: number;
  modifiedAt: number;
}

/** An allocation a plan tells to stop, and why. */
export interface PlanStop {
  allocId: string;
  description: string;
  /** The allocation placed by the same plan to take its place (recorded as its `nextAllocId`). */
  nextAllocId?: string;
}

/** What a scheduler proposes for one evaluation; the plan applier re-checks and commits it. */
export interface Plan {
  evalId: string;
  namespace: string;
  jobId: string;
  jobVersion: number;
  /** New allocations to create; the applier checks that each still fits on its node. */
  place: Allocation[];
  /**
   * Existing allocations carried over to a new job version without a restart (only the count or
   * metadata changed): the applier takes `jobVersion` and `groupSpec` from these, nothing else.
   */
  inPlace: Allocation[];
  /** Allocations to stop (or, when already finished, to mark replaced), with the reason. */
  stop: PlanStop[];
  /** Allocations to stop so that this plan's placements fit (preemption); stopped like `stop`. */
  preempt: PlanStop[];
  failedGroups: Record<string, PlacementFailure>;
  /** Evaluations to create (delayed reschedules). */
  followups: Evaluation[];
  /** Set when no plan could be made at all (e.g. no scheduler for the job's type): the evaluation fails. */
  error?: string;
}

export type EventTopic = 'job' | 'allocation' | 'evaluation' | 'node' | 'task' | 'acl';

/** An entry of the cluster's append-only history, as `unum events` shows it. */
export interface ClusterEvent {
  /** Store revision at which it was written: resume a stream from here. */
  index: number;
  time: number;
  topic: EventTopic;
  type: string;
  namespace?: string;
  jobId?: string;
  allocId?: string;
  nodeId?: string;
  evalId?: string;
  task?: string;
  message: string;
  /** Who made the change: `token:<name> (<accessor>)`, `node:<id>`, `leader`. The audit trail. */
  actor?: string;
}
