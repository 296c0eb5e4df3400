/** Fixture factories for tests: `mock.job({ count: 3 })`, `mock.node()`, `mock.alloc(job, node)`. */
import { parseJobSpec, type JobSpec, type JobSpecInput } from '../core/job-spec.ts';
import { newId } from '../core/ids.ts';
import type { Allocation, Evaluation, Job, Node } from '../core/types.ts';

let seq = 0;

type JobSpecOverrides = Partial<JobSpecInput> & {
  count?: number;
  cpu?: number;
  memory?: number;
  ports?: string[];
  /** The group's `ephemeral.sizeMiB` (default: parseJobSpec's). */
  disk?: number;
};

export const mock = {
  jobSpec(over: JobSpecOverrides = {}): JobSpec {
    const { count = 1, cpu = 100, memory = 64, ports = [], disk, ...rest } = over;
    return parseJobSpec({
      job: `job-${++seq}`,
      groups: [
        {
          name: 'web',
          count,
          network: { ports },
          tasks: [{ name: 'server', command: 'sleep', args: ['300'], resources: { cpu, memory } }],
          ...(disk !== undefined ? { ephemeral: { sizeMiB: disk } } : {}),
        },
      ],
      ...rest,
    });
  },

  job(over: JobSpecOverrides & { version?: number; stop?: boolean } = {}): Job {
    const { version = 0, stop = false, ...specOver } = over;
    const spec = mock.jobSpec(specOver);
    return {
      id: spec.job,
      namespace: spec.namespace,
      version,
      stop,
      status: 'pending',
      submittedAt: 0,
      spec,
    };
  },

  node(over: Partial<Node> & { cpu?: number; memory?: number; disk?: number } = {}): Node {
    const { cpu = 4000, memory = 8192, disk = 100_000, ...rest } = over;
    const id = rest.id ?? `node-${String(++seq).padStart(4, '0')}`;
    return {
      id,
      name: id,
      address: 'http://127.0.0.1:1',
      status: 'ready',
      eligibility: 'eligible',
      drain: false,
      resources: { cpu, memory, disk },
      reserved: { cpu: 0, memory: 0 },
      attributes: { os: 'linux', arch: 'x64', hostname: id },
      drivers: { exec: { detected: true, healthy: true }, raw_exec: { detected: true, healthy: true } },
      portRange: { min: 20000, max: 32000 },
      registeredAt: 0,
      lastHeartbeat: 0,
      ...rest,
    };
  },

  alloc(job: Job, node: Node, over: Partial<Allocation> = {}): Allocation {
    const group = job.spec.groups[0]!;
    const index = over.index ?? 0;
    return {
      id: newId(),
      namespace: job.namespace,
      jobId: job.id,
      jobVersion: job.version,
      jobType: job.spec.type,
      name: `${job.id}.${group.name}[${index}]`,
      group: group.name,
      index,
      nodeId: node.id,
      groupSpec: group,
      resources: {
        cpu: group.tasks[0]!.resources.cpu,
        memory: group.tasks[0]!.resources.memory,
        ...(group.ephemeral !== undefined ? { disk: group.ephemeral.sizeMiB } : {}),
        ports: [],
      },
      desiredStatus: 'run',
      clientStatus: 'running',
      taskStates: {},
      evalId: 'eval',
      rescheduleEvents: [],
      createdAt: 0,
      modifiedAt: 0,
      ...over,
    };
  },

  evaluation(job: Job, over: Partial<Evaluation> = {}): Evaluation {
    return {
      id: newId(),
      namespace: job.namespace,
      jobId: job.id,
      priority: job.spec.priority,
      triggeredBy: 'job-register',
      status: 'pending',
      createdAt: 0,
      modifiedAt: 0,
      ...over,
    };
  },
};
