/**
 * What every verb gets: its parsed flags and a context holding the global flags, the output streams
 * and the API client. Verbs write through `ctx.stdout`/`ctx.stderr` (never console.*) so that tests
 * can run them in-process.
 */
import type { UnumClient } from '../api/client.ts';
import type { Colors, Out } from './output.ts';

export type FlagValue = string | boolean | (string | boolean)[] | undefined;

/** A flag as `node:util` parseArgs declares it. */
export interface FlagSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
}

export type FlagSpecs = Record<string, FlagSpec>;

export interface Args {
  flags: Record<string, FlagValue>;
  positionals: string[];
  /** Words after a `--` (only for verbs with `rest: true`); undefined when there was no `--`. */
  rest: string[] | undefined;
}

export interface Context {
  readonly stdout: Out;
  readonly stderr: Out;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** `--addr` as given (undefined: use UNUM_ADDR or the default). */
  readonly addr: string | undefined;
  readonly namespace: string;
  /** The user chose the namespace (`-n`): cluster-wide verbs filter by it only then. */
  readonly namespaceExplicit: boolean;
  readonly json: boolean;
  /** Colors for stdout (off when it is not a terminal or NO_COLOR is set). */
  readonly color: Colors;
  /** Colors for stderr (progress and notes). */
  readonly colorErr: Colors;
  /** The API client for `--addr` (made on first use). */
  client(): UnumClient;
  /**
   * From now on Ctrl-C (SIGINT) and SIGTERM abort the returned signal instead of killing the
   * process, so that a verb can finish cleanly; a second Ctrl-C still exits at once.
   */
  interrupted(): AbortSignal;
  now(): number;
}

export interface Command {
  name: string;
  /** One line for `unum help`. */
  summary: string;
  /** The whole `--help` text: synopsis, flags, examples. */
  usage: string;
  /** Flags of this verb (the global ones are added). */
  flags?: FlagSpecs;
  /** Accepts `-- CMD ARGS…`: everything after the first `--` goes to `args.rest` unparsed. */
  rest?: boolean;
  run(args: Args, ctx: Context): Promise<number>;
}

/** A mistake in how the command was called: exit code 2 with a hint to `--help`. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The command failed and already told the user why: exit with `code`, print nothing more. */
export class Reported extends Error {
  readonly exitCode: number;
  constructor(exitCode = 1) {
    super('reported');
    this.name = 'Reported';
    this.exitCode = exitCode;
  }
}

// --- flag accessors: parseArgs gives loosely typed values; these check them once -----------------

export function stringFlag(args: Args, name: string): string | undefined {
  const v = args.flags[name];
  if (Array.isArray(v)) {
    const last = v[v.length - 1];
    return typeof last === 'string' ? last : undefined;
  }
  return typeof v === 'string' ? v : undefined;
}

export function boolFlag(args: Args, name: string): boolean {
  return args.flags[name] === true;
}

/** A whole number flag, at least `min`. */
export function intFlag(args: Args, name: string, min = 0): number | undefined {
  const raw = stringFlag(args, name);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < min)
    throw new UsageError(
      `--${name} expects a whole number${min > 0 ? ` of at least ${min}` : ''}, got "${raw}"`,
    );
  return Number(raw);
}

/** Checks how many positional arguments were given. */
export function positionals(args: Args, min: number, max: number, what: string): string[] {
  if (args.positionals.length < min) throw new UsageError(`missing ${what}`);
  if (args.positionals.length > max) {
    const extra = args.positionals[max];
    throw new UsageError(`unexpected argument "${extra ?? ''}"`);
  }
  return args.positionals;
}
