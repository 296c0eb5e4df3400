/** What /proc says of a process: alive, the same one (start time), its children and namespaces. */
import { readFileSync, readdirSync } from 'node:fs';

export interface ProcStat {
  state: string;
  ppid: number;
  pgrp: number;
  /** Field 22: clock ticks after boot. */
  startTime: number;
}

/** /proc/<pid>/stat, or undefined when there is no such process (or no /proc). */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: f[0] ?? '?', ppid: Number(f[1]), pgrp: Number(f[2]), startTime: Number(f[19]) };
}

/**
 * After an agent restart, whether the task's process group number now belongs to someone else: its
 * leader (the wrapper, pid = pgid) is gone and the number was handed to a new process. Killing the
 * group then would kill a stranger's processes. (While any member of our group lives, the kernel
 * does not reuse the number.)
 */
export function groupTakenOver(state: { pid: number; pgid: number; pidStartTime: number }): boolean {
  const leader = procStat(state.pgid);
  if (leader === undefined) return false;
  return state.pgid !== state.pid || leader.startTime !== state.pidStartTime;
}

/** Alive (not a zombie) and, where /proc tells, the same process (same start time). */
export function isSameProcess(pid: number, startTime: number): boolean {
  const st = procStat(pid);
  if (st === undefined) return process.platform !== 'linux' && isAlive(pid);
  return st.state !== 'Z' && st.state !== 'X' && (startTime === 0 || st.startTime === startTime);
}

export function isAlive(pid: number): boolean {
  const st = procStat(pid);
  if (st !== undefined) return st.state !== 'Z' && st.state !== 'X';
  try {
    process.kill(pid, 0);
    return process.platform !== 'linux';
  } catch {
    return false;
  }
}

/** Children of a process (/proc/<pid>/task/<pid>/children, else a scan of /proc). */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter((x) => x !== '')
      .map(Number);
  } catch {
    // Kernels without CONFIG_PROC_CHILDREN.
  }
  const out: number[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) if (/^\d+$/.test(e) && procStat(Number(e))?.ppid === pid) out.push(Number(e));
  return out;
}

/** The pid of a process in each pid namespace it is in, outermost first (`NSpid:`). */
export function nsPids(pid: number): number[] {
  try {
    const m = /^NSpid:\s+(.+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] === undefined ? [] : m[1].trim().split(/\s+/).map(Number);
  } catch {
    return [];
  }
}

export function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
