/**
 * Reading back how a wrapper ended: bwrap's JSON status lines, the shell's exit code, 128+N as
 * signal N. The wrapper writes them to the status file (statusPathFor in launch.ts), also while the
 * agent is down.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { constants } from 'node:os';
import type { ProcessHandleData } from './handle-state.ts';
import type { ExitResult } from './types.ts';

export interface RecordedStatus {
  /** bwrap: the host pid of the sandbox's init. */
  childPid?: number;
  exitCode?: number;
}

export async function readStatus(
  state: Pick<ProcessHandleData, 'wrapper' | 'statusPath'>,
): Promise<RecordedStatus> {
  const text = await readFile(state.statusPath, 'utf8').catch(() => '');
  return state.wrapper === 'bwrap' ? parseBwrapStatus(text) : parseShStatus(text);
}

export function readBwrapStatusSync(path: string): RecordedStatus {
  try {
    return parseBwrapStatus(readFileSync(path, 'utf8'));
  } catch {
    return {};
  }
}

/** bwrap writes one JSON document per line: `{ "child-pid": N, … }` then `{ "exit-code": N }`. */
export function parseBwrapStatus(text: string): RecordedStatus {
  const out: RecordedStatus = {};
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const doc = JSON.parse(line) as Record<string, unknown>;
      if (Number.isInteger(doc['child-pid'])) out.childPid = doc['child-pid'] as number;
      if (Number.isInteger(doc['exit-code'])) out.exitCode = doc['exit-code'] as number;
    } catch {
      // a line being written
    }
  }
  return out;
}

function parseShStatus(text: string): RecordedStatus {
  const t = text.trim();
  return /^\d+$/.test(t) ? { exitCode: Number(t) } : {};
}

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);

/** 128+N → killed by signal N; anything else is an exit code. */
export function fromCode(code: number): ExitResult {
  const signal = code > 128 ? SIGNAL_NAMES.get(code - 128) : undefined;
  return signal !== undefined ? { signal } : { exitCode: code };
}
