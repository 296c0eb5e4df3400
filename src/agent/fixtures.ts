/**
 * Test fixtures for the agent's tests: allocations built from real (validated) job specs, temp data
 * dirs, and a liveness probe for processes. Not used by the agent itself.
 */
import { mkdtemp } from 'node:fs/promises';
import { readFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { parseDuration } from '../core/duration.ts';
import { newId } from '../core/ids.ts';
import { parseJobSpec, type JobSpecInput } from '../core/job-spec.ts';
import type { Allocation, AllocatedPort } from '../core/types.ts';
import { shipperEnded, startLogShipper } from './log-shipper.ts';
import type { LogLimits } from './logs.ts';
import { removeTree } from './runner/alloc-dir.ts';

type GroupInput = JobSpecInput['groups'][number];

export interface TestAllocOptions {
  type?: 'service' | 'batch';
  tasks: GroupInput['tasks'];
  restart?: GroupInput['restart'];
  services?: GroupInput['services'];
  ephemeral?: GroupInput['ephemeral'];
  /** Allocated ports (their names also go into the group's network). */
  ports?: AllocatedPort[];
  nodeId?: string;
}

/** An allocation of a one-group job, as the server would send it. */
export function testAlloc(opts: TestAllocOptions): Allocation {
  const ports = opts.ports ?? [];
  const group: GroupInput = {
    name: 'g',
    tasks: opts.tasks,
    network: { ports: ports.map((p) => p.name) },
  };
  // Tests restart within milliseconds, below the floor job files get: the delays are set after validation.
  const { delay, maxDelay, ...restart } = opts.restart ?? {};
  if (opts.restart !== undefined) group.restart = restart;
  if (opts.services !== undefined) group.services = opts.services;
  if (opts.ephemeral !== undefined) group.ephemeral = opts.ephemeral;
  const spec = parseJobSpec({ job: 'test', type: opts.type ?? 'service', groups: [group] });
  const groupSpec = spec.groups[0];
  if (groupSpec === undefined) throw new Error('no group');
  if (delay !== undefined) groupSpec.restart.delay = parseDuration(delay) ?? 0;
  if (maxDelay !== undefined) groupSpec.restart.maxDelay = parseDuration(maxDelay) ?? 0;
  const id = newId();
  return {
    id,
    namespace: spec.namespace,
    jobId: spec.job,
    jobVersion: 0,
    jobType: spec.type,
    name: `${spec.job}.${groupSpec.name}[0]`,
    group: groupSpec.name,
    index: 0,
    nodeId: opts.nodeId ?? 'node-1',
    groupSpec,
    resources: {
      cpu: groupSpec.tasks.reduce((a, t) => a + t.resources.cpu, 0),
      memory: groupSpec.tasks.reduce((a, t) => a + t.resources.memory, 0),
      ports,
    },
    desiredStatus: 'run',
    clientStatus: 'pending',
    taskStates: {},
    evalId: newId(),
    rescheduleEvents: [],
    createdAt: Date.now(),
    modifiedAt: Date.now(),
  };
}

/** A fresh temp dir and its removal. */
export async function tempDir(
  prefix = 'unum-agent-',
): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(os.tmpdir(), prefix));
  // However deep a test (or a task in it) nested its files.
  return { path, cleanup: () => removeTree(path) };
}

/**
 * Whether a process still exists. A zombie counts as gone: it is dead, only not yet reaped (orphans
 * are reparented to PID 1, which does not always reap them promptly).
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch (err) {
    // Gone in between, or no /proc (not Linux): kill(pid, 0) has the last word.
    return (err as NodeJS.ErrnoException).code !== 'ENOENT' || process.platform !== 'linux';
  }
}

/** Kills a process (group) if it still exists: cleanup in tests. */
export function killQuietly(pid: number | undefined, group = true): void {
  if (pid === undefined) return;
  try {
    process.kill(group ? -pid : pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * Writes `writes` (one write each) into the log `stdoutPath` through a log shipper, as a task
 * would, and waits for the shipper to end (the stream is closed after the last write).
 */
export async function shipLog(stdoutPath: string, limits: LogLimits, ...writes: string[]): Promise<void> {
  const pipes = await startLogShipper(
    { stdoutPath, stderrPath: join(dirname(stdoutPath), 'stderr.log') },
    limits,
  );
  try {
    for (const w of writes) writeSync(pipes.stdout, w);
  } finally {
    pipes.close();
  }
  await shipperGone(pipes);
}

/** Waits until the shipper has written everything and ended. */
export async function shipperGone(pipes: { shipperPid: number }): Promise<void> {
  if (!(await shipperEnded(pipes.shipperPid, 10_000))) throw new Error('the log shipper did not end');
}
