/**
 * Human output: aligned tables, colors (only on a terminal, never with NO_COLOR), short ids, ages,
 * sizes. Everything here is pure so that it can be tested without a terminal.
 */
import { isActive } from '../core/alloc.ts';
import type { Allocation } from '../core/types.ts';
import { formatAge, formatDuration } from '../core/duration.ts';
import { shortId } from '../core/ids.ts';

export { formatAge, formatDuration, shortId };

/** Where a command writes: process.stdout / process.stderr, or a buffer in tests. */
export interface Out {
  write(text: string): void;
  /** True when a person is looking at it (a terminal): progress lines rewrite in place. */
  readonly isTTY: boolean;
}

/** Colors are for terminals only, and `NO_COLOR` (https://no-color.org) or `TERM=dumb` turn them off. */
export function colorEnabled(out: Out, env: Readonly<Record<string, string | undefined>>): boolean {
  if (!out.isTTY) return false;
  if (env['NO_COLOR'] !== undefined && env['NO_COLOR'] !== '') return false;
  return env['TERM'] !== 'dumb';
}

export interface Colors {
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
  /** One of a few distinct colors chosen by `n`, to tell log sources apart. */
  cycle(n: number, s: string): string;
}

const sgr = (open: number, close: number) => (s: string) => `\x1b[${open}m${s}\x1b[${close}m`;
const identity = (s: string) => s;
const CYCLE = [36, 33, 35, 32, 34, 96, 93, 95, 92, 94];

export function colors(enabled: boolean): Colors {
  if (!enabled)
    return {
      bold: identity,
      dim: identity,
      red: identity,
      green: identity,
      yellow: identity,
      cyan: identity,
      cycle: (_n, s) => s,
    };
  return {
    bold: sgr(1, 22),
    dim: sgr(2, 22),
    red: sgr(31, 39),
    green: sgr(32, 39),
    yellow: sgr(33, 39),
    cyan: sgr(36, 39),
    cycle: (n, s) => sgr(CYCLE[Math.abs(n) % CYCLE.length] ?? 36, 39)(s),
  };
}

// eslint-disable-next-line no-control-regex -- matching ANSI escape sequences is the point
const ANSI = /\x1b\[[0-9;]*m/g;

/** Width of a string on screen: escape sequences take none, each code point one column. */
export function visibleWidth(s: string): number {
  return [...s.replace(ANSI, '')].length;
}

/**
 * Control characters a terminal would act on, from task output or stored messages: C0 but tab and
 * newline, DEL, C1, and the bidirectional overrides that reorder what is shown.
 */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;

/**
 * The text with its control characters shown as visible escapes (`\x1b`, `\u202e`), so that output
 * from a task or a message it caused cannot move the cursor, retitle the window, or hide text.
 */
export function printable(text: string): string {
  return text.replace(CONTROL, (ch) => {
    const code = ch.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`;
  });
}

/** A copy of `value` with every string in it made printable (for records shown in tables). */
export function printableDeep<T>(value: T): T {
  if (typeof value === 'string') return printable(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => printableDeep(v)) as T;
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [printable(k), printableDeep(v as unknown)]),
    ) as T;
  return value;
}

export interface TableOptions {
  /** Per column; default left. Numbers read better right-aligned. */
  align?: readonly ('left' | 'right')[];
  /** Style for the header row (e.g. bold on a terminal). */
  header?: (s: string) => string;
}

/**
 * Formats rows under headers, columns separated by two spaces, each column as wide as its widest
 * cell. The last column is not padded (no trailing blanks); cells may contain color codes.
 */
export function table(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  opts: TableOptions = {},
): string {
  const all = [headers, ...rows];
  const columns = Math.max(...all.map((r) => r.length));
  const widths = Array.from({ length: columns }, (_, c) =>
    Math.max(...all.map((r) => visibleWidth(r[c] ?? ''))),
  );
  const line = (cells: readonly string[], style: (s: string) => string) =>
    widths
      .map((w, c) => {
        const cell = cells[c] ?? '';
        const pad = ' '.repeat(w - visibleWidth(cell));
        if (opts.align?.[c] === 'right') return pad + style(cell);
        return c === columns - 1 ? style(cell) : style(cell) + pad;
      })
      .join('  ')
      .trimEnd();
  return [line(headers, opts.header ?? identity), ...rows.map((r) => line(r, identity))].join('\n') + '\n';
}

/** `key  value` lines with the keys aligned, for detail headers. */
export function keyValues(pairs: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...pairs.map(([k]) => visibleWidth(k)));
  return (
    pairs.map(([k, v]) => `${k}${' '.repeat(width - visibleWidth(k))}  ${v}`.trimEnd()).join('\n') + '\n'
  );
}

/** `3m ago`, or `just now`. */
export function formatAgo(sinceMs: number, nowMs: number): string {
  const age = formatAge(sinceMs, nowMs);
  return age === 'now' ? 'just now' : `${age} ago`;
}

/** MiB for people: 512 → "512MiB", 2048 → "2GiB", 1536 → "1.5GiB". */
export function formatMemory(mib: number): string {
  if (Math.abs(mib) < 1024) return `${Math.round(mib)}MiB`;
  const gib = mib / 1024;
  return `${Number.isInteger(gib) ? gib : gib.toFixed(1)}GiB`;
}

/** Millicores for people: 1500 → "1.5", 250 → "0.25" (cores). */
export function formatCores(millicores: number): string {
  return String(Math.round(millicores / 10) / 100);
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** Wall-clock time in the local zone: `14:03:27` today, `05-31 14:03` on another day. */
export function formatClock(ms: number, nowMs: number): string {
  const d = new Date(ms);
  const now = new Date(nowMs);
  const sameDay =
    d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate();
  if (sameDay) return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  return `${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** A value from a job spec or diff, shortened to fit a line. */
export function formatValue(v: unknown, max = 60): string {
  if (v === undefined) return '(none)';
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

/** `http=10.0.0.5:23456,admin=10.0.0.5:23457` (without a host: `http=23456`), or `-`. */
export function formatPorts(alloc: Pick<Allocation, 'resources'>, host?: string): string {
  const at = host === undefined ? '' : `${host.includes(':') ? `[${host}]` : host}:`;
  const ports = alloc.resources.ports.map((p) => `${p.name}=${at}${p.value}`);
  return ports.length ? ports.join(',') : '-';
}

/** Restarts of every task of the allocation. */
export function allocRestarts(alloc: Pick<Allocation, 'taskStates'>): number {
  return Object.values(alloc.taskStates).reduce((n, t) => n + t.restarts, 0);
}

/** The status column of an allocation: what it is doing, including being stopped. */
export function allocStatus(alloc: Pick<Allocation, 'clientStatus' | 'desiredStatus' | 'healthy'>): string {
  const live = isActive(alloc);
  if (alloc.desiredStatus === 'stop' && live) return 'stopping';
  if (alloc.clientStatus === 'running' && alloc.healthy === false) return 'unhealthy';
  return alloc.clientStatus;
}

export function statusColor(c: Colors, status: string): string {
  switch (status) {
    case 'running':
    case 'ready':
    case 'complete':
      return c.green(status);
    case 'pending':
    case 'stopping':
    case 'initializing':
    case 'draining':
      return c.yellow(status);
    case 'failed':
    case 'lost':
    case 'down':
    case 'dead':
    case 'unhealthy':
      return c.red(status);
    default:
      return status;
  }
}

/** One JSON document, indented, for `--json`. */
export function json(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

/** "1 instance", "3 instances". */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
