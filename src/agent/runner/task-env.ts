/**
 * The environment a task runs with, and `${VAR}` interpolation in its command, args and env values.
 *
 * Interpolation rule (documented in README.md): `${NAME}` is replaced when NAME is defined in the
 * task's environment; an unknown `${NAME}` is left as written, so that a shell script passed in `args`
 * (`sh -c 'x=1; echo ${x}'`) keeps its own variables. `$${NAME}` gives a literal `${NAME}`. Only the
 * braced form is interpolated: `$NAME` is never touched.
 */
import { join } from 'node:path';
import { portEnvName, type TaskSpec } from '../../core/job-spec.ts';
import type { Allocation } from '../../core/types.ts';
import type { AllocDir, TaskDir } from './alloc-dir.ts';

/** The task's end of the task API (../task-api.ts): a socket in its secrets directory. */
export function taskApiSocketPath(dir: Pick<TaskDir, 'secrets'>): string {
  return join(dir.secrets, 'api.sock');
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The variables unum sets for every task (before the task's own `env`). */
export function unumEnv(
  alloc: Allocation,
  task: TaskSpec,
  dirs: { alloc: AllocDir; task: TaskDir },
  nodeId: string,
): Record<string, string> {
  const env: Record<string, string> = {
    UNUM_ALLOC_ID: alloc.id,
    UNUM_ALLOC_NAME: alloc.name,
    UNUM_ALLOC_INDEX: String(alloc.index),
    UNUM_JOB: alloc.jobId,
    UNUM_GROUP: alloc.group,
    UNUM_TASK: task.name,
    UNUM_NAMESPACE: alloc.namespace,
    UNUM_NODE_ID: nodeId,
    UNUM_ALLOC_DIR: dirs.alloc.shared,
    UNUM_TASK_DIR: dirs.task.dir,
    UNUM_SECRETS_DIR: dirs.task.secrets,
    // The task's workload identity (a JWT), rewritten before it expires (identity.ts).
    UNUM_IDENTITY_FILE: join(dirs.task.secrets, 'identity.jwt'),
    UNUM_API_SOCKET: taskApiSocketPath(dirs.task),
    UNUM_CPU_LIMIT: String(task.resources.cpu),
    UNUM_MEMORY_LIMIT: String(task.resources.memory),
  };
  for (const port of alloc.resources.ports) env[portEnvName(port.name)] = String(port.value);
  const devices = (alloc.resources.devices ?? []).filter((d) => d.task === task.name);
  if (devices.length > 0) {
    env['UNUM_DEVICES'] = devices.map((d) => d.id).join(',');
    const nvidia = devices.filter((d) => d.vendor === 'nvidia').map((d) => d.id);
    // The names CUDA and the NVIDIA container tools read to pick the visible GPUs.
    if (nvidia.length > 0) env['NVIDIA_VISIBLE_DEVICES'] = env['CUDA_VISIBLE_DEVICES'] = nvidia.join(',');
  }
  return env;
}

/**
 * The full environment of a task: PATH and HOME defaults (PATH is the agent's own, or the standard
 * system one; HOME and TMPDIR are inside the task dir), then unum's variables, then the task's `env`
 * with its values interpolated from everything before it. A task may override any of them.
 */
export function buildTaskEnv(
  alloc: Allocation,
  task: TaskSpec,
  dirs: { alloc: AllocDir; task: TaskDir },
  nodeId: string,
  agentPath: string | undefined = process.env['PATH'],
): Record<string, string> {
  const base: Record<string, string> = {
    PATH: agentPath !== undefined && agentPath !== '' ? agentPath : DEFAULT_PATH,
    HOME: dirs.task.dir,
    TMPDIR: dirs.task.tmp,
    ...unumEnv(alloc, task, dirs, nodeId),
  };
  const env = { ...base };
  for (const [name, value] of Object.entries(task.env)) env[name] = interpolate(value, base);
  return env;
}

/** Replaces `${NAME}` with `vars[NAME]`; unknown names stay as written; `$${NAME}` is a literal `${NAME}`. */
export function interpolate(text: string, vars: Readonly<Record<string, string>>): string {
  return text.replace(
    /\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}/g,
    (whole: string, escape: string, name: string) => {
      if (escape === '$') return whole.slice(1);
      const value = vars[name];
      return value === undefined ? whole : value;
    },
  );
}

/** The command and args of a task with `${VAR}` replaced from its environment. */
export function interpolateCommand(
  task: Pick<TaskSpec, 'command' | 'args'>,
  env: Readonly<Record<string, string>>,
): { command: string; args: string[] } {
  return { command: interpolate(task.command, env), args: task.args.map((a) => interpolate(a, env)) };
}
