/**
 * Hooks: what runs around an allocation's and a task's life, in the spirit of Nomad's task
 * lifecycle (prestart, poststart, exited, stop). Each is a small object with a `name`; a runner
 * calls its list in order. What an allocation or a task needs besides its process (directories,
 * environment, devices, health checks; later volumes, templates, DNS, identities) is one more hook
 * in a list, not one more line in a runner's constructor.
 *
 *   alloc runner   prestart (before any task starts; skipped pieces say so)  poststart (every task
 *                  started: the allocation runs)  stop (it is stopping, failed, ended or detached)
 *   task runner    prestart (before the first start by this runner; a throw fails the task, no
 *                  process runs)  poststart (a process started)  exited (it exited)  stop (asked to
 *                  stop for good)
 *
 * Hooks must not throw from poststart, exited or stop: those are notices (a throw is logged).
 */
import type { Logger } from '../../core/log.ts';
import type { TaskSpec } from '../../core/job-spec.ts';
import type { Allocation } from '../../core/types.ts';
import { allocDirPaths, buildAllocDir, taskDirPaths } from './alloc-dir.ts';
import type { Driver, ExitResult, TaskConfig, TaskHandle } from '../drivers/types.ts';
import { HealthWatcher, checkTargets, type HealthSnapshot } from './health.ts';
import { buildTaskEnv, interpolateCommand } from './task-env.ts';

export interface AllocHookContext {
  allocId: string;
  /** `<dataDir>/agent/allocs` */
  allocsDir: string;
  taskNames: string[];
  /** Rebuilt after an agent restart: its tasks are re-attached, not started. */
  restored: boolean;
  logger: Logger;
  /** Stops the allocation (what a hook does when something it set up in the background failed). */
  stop(reason: string): void;
}

export interface AllocHook {
  readonly name: string;
  /** Before any task starts. A throw fails every task without running it (for a restored allocation it is logged). */
  prestart?(ctx: AllocHookContext): Promise<void>;
  /** Every task has started: the allocation is running. */
  poststart?(ctx: AllocHookContext): void;
  /** The allocation is stopping, has failed or ended, or the agent is leaving it running. */
  stop?(ctx: AllocHookContext): void;
  /** Every task is dead and nothing more will run (not called when the agent leaves it running). */
  finished?(ctx: AllocHookContext): void;
}

export interface TaskHookContext {
  allocId: string;
  task: TaskSpec;
  /** What will be started: prestart hooks fill it in (environment, command, devices, …). */
  config: TaskConfig;
  logger: Logger;
}

export interface TaskHook {
  readonly name: string;
  /** Before the first start. A throw fails the task at once (never retried) and no process runs. */
  prestart?(ctx: TaskHookContext): Promise<void> | void;
  poststart?(ctx: TaskHookContext, handle: TaskHandle): void;
  exited?(ctx: TaskHookContext, result: ExitResult): void;
  stop?(ctx: TaskHookContext, reason: string): void;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** `prestart hook "env" failed: …`: what a task's or an allocation's events say. */
export function hookFailure(hook: { name: string }, err: unknown): string {
  return `prestart hook "${hook.name}" failed: ${errorMessage(err)}`;
}

// --- allocation hooks --------------------------------------------------------------------------

/** The allocation's directories (shared `alloc/`, one per task, logs/). */
export function allocDirHook(): AllocHook {
  return {
    name: 'alloc-dir',
    prestart: (ctx) => buildAllocDir(ctx.allocsDir, ctx.allocId, ctx.taskNames),
  };
}

/**
 * What each driver sets up for the allocation (the exec driver leases its uid). Best effort: a
 * failure only costs time, start() does it again. Not for a restored allocation.
 */
export function driverPrepareHook(drivers: Iterable<Driver>): AllocHook {
  return {
    name: 'driver-prepare',
    async prestart(ctx) {
      if (ctx.restored) return;
      await Promise.all(
        [...drivers].map((d) =>
          d.prepareAllocation?.(ctx.allocId, ctx.allocsDir).catch((err: unknown) => {
            ctx.logger.warn({ err, driver: d.name }, 'could not prepare the allocation for its driver');
          }),
        ),
      );
    },
  };
}

/** The group's service checks, from when the allocation runs until it stops. */
export function healthHook(
  alloc: Allocation,
  onChange: (snap: HealthSnapshot) => void,
  logger: Logger,
  host?: () => string | undefined,
): AllocHook | undefined {
  const targets = checkTargets(alloc.groupSpec.services, alloc.resources.ports);
  if (targets.length === 0) return undefined;
  const watcher = new HealthWatcher(targets, onChange, logger, host);
  return { name: 'health', poststart: () => watcher.start(), stop: () => watcher.stop() };
}

// --- task hooks --------------------------------------------------------------------------------

/** The task's environment (UNUM_*, PATH, HOME, …, then its env) and its interpolated command and args. */
export function taskEnvHook(alloc: Allocation, allocsDir: string, nodeId: string): TaskHook {
  return {
    name: 'env',
    prestart(ctx) {
      const dirs = {
        alloc: allocDirPaths(allocsDir, alloc.id),
        task: taskDirPaths(allocsDir, alloc.id, ctx.task.name),
      };
      const env = buildTaskEnv(alloc, ctx.task, dirs, nodeId);
      const { command, args } = interpolateCommand(ctx.task, env);
      Object.assign(ctx.config, { env, command, args });
    },
  };
}

/** NVIDIA's control files, needed beside a GPU's own device file by CUDA and nvidia-smi. */
const NVIDIA_CONTROL_FILES = [
  '/dev/nvidiactl',
  '/dev/nvidia-uvm',
  '/dev/nvidia-uvm-tools',
  '/dev/nvidia-modeset',
];

/** The device files of the devices an allocation gives one task. */
export function taskDevicePaths(alloc: Allocation, task: string): string[] {
  const mine = (alloc.resources.devices ?? []).filter((d) => d.task === task);
  const nvidia = mine.filter((d) => d.vendor === 'nvidia' && d.index !== undefined);
  if (nvidia.length === 0) return [];
  return [...nvidia.map((d) => `/dev/nvidia${d.index}`), ...NVIDIA_CONTROL_FILES];
}

/** The device files of the devices the scheduler gave the task (its sandbox binds them). */
export function devicesHook(alloc: Allocation): TaskHook {
  return {
    name: 'devices',
    prestart(ctx) {
      const paths = taskDevicePaths(alloc, ctx.task.name);
      if (paths.length > 0) ctx.config.devicePaths = paths;
    },
  };
}
