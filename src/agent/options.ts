/** Defaults and parsing of the agent's options. */
import { readFileSync } from 'node:fs';

export const DEFAULT_AGENT_HTTP_ADDR = '127.0.0.1:8687';
export const DEFAULT_PORT_RANGE = { min: 20000, max: 32000 } as const;

/** `127.0.0.1:8687`, `[::1]:0`, `:8687` (all interfaces). */
export function parseHostPort(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

/** `auto`: enforce what the node allows; `off`: no task isolation (as a non-root agent). */
export type TaskIsolationMode = 'auto' | 'off';

/** Uids handed to allocations (one each) unless configured. */
export const DEFAULT_TASK_UID_RANGE = { min: 200_000, max: 265_535 } as const;
/** pids limit of a task that sets none. */
export const DEFAULT_TASK_PIDS_LIMIT = 4096;

/**
 * The node's pids budget for all tasks together unless the operator sets one: three quarters of the
 * kernel's pid_max (the rest stays for the host and the agent), 24576 of the usual 32768.
 */
export function defaultTasksPidsMax(pidMaxPath = '/proc/sys/kernel/pid_max'): number {
  let pidMax = 32768;
  try {
    const n = Number(readFileSync(pidMaxPath, 'utf8').trim());
    if (Number.isSafeInteger(n) && n > 0) pidMax = n;
  } catch {
    // not Linux: the usual value
  }
  return Math.max(1, Math.floor((pidMax * 3) / 4));
}

/** `200000-265535` → { min, max }; undefined when malformed. */
export function parseUidRange(text: string): { min: number; max: number } | undefined {
  const m = /^\s*(\d{1,10})\s*-\s*(\d{1,10})\s*$/.exec(text);
  if (m === null) return undefined;
  const min = Number(m[1]);
  const max = Number(m[2]);
  return min >= 1 && max >= min && max <= 4_294_967_294 ? { min, max } : undefined;
}

/** Problems with the task isolation options, each naming the option (empty when fine). */
export function isolationOptionProblems(options: {
  taskIsolation?: string;
  allowedTaskUsers?: readonly string[];
  taskUidRange?: { min: number; max: number };
  taskPidsLimit?: number;
  taskOpenFiles?: number;
  tasksPidsMax?: number;
}): { path: string; message: string }[] {
  const out: { path: string; message: string }[] = [];
  if (
    options.taskIsolation !== undefined &&
    options.taskIsolation !== 'auto' &&
    options.taskIsolation !== 'off'
  )
    out.push({
      path: 'taskIsolation',
      message: `expected "auto" or "off", got ${JSON.stringify(options.taskIsolation)}`,
    });
  for (const [i, u] of (options.allowedTaskUsers ?? []).entries())
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(u))
      out.push({
        path: `allowedTaskUsers[${i}]`,
        message: `expected a user name or uid, got ${JSON.stringify(u)}`,
      });
  const r = options.taskUidRange;
  if (r !== undefined && (!Number.isInteger(r.min) || !Number.isInteger(r.max) || r.min < 1 || r.max < r.min))
    out.push({ path: 'taskUidRange', message: `expected 1 <= min <= max, got ${r.min}-${r.max}` });
  for (const key of ['taskPidsLimit', 'taskOpenFiles', 'tasksPidsMax'] as const) {
    const p = options[key];
    if (p !== undefined && (!Number.isSafeInteger(p) || p < 1))
      out.push({ path: key, message: `expected a whole number, 1 or more, got ${p}` });
  }
  return out;
}
