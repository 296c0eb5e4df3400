/**
 * What a test needs from the machine: a program from a Debian package, root, cgroups.
 *
 * A test that needs something missing must not wait for it until its timeout: it fails at once with
 * what to install (`requireTool`), or, where what it tests is optional, is skipped with that reason
 * (`missingTool` as the test's `skip` option).
 *
 * `UNUM_TEST_MISSING=bwrap,python3` makes these helpers treat the named programs as missing, to see
 * how the tests behave on a machine without them (without uninstalling anything).
 */
import { existsSync } from 'node:fs';
import { delimiter } from 'node:path';
import { findProgram } from '../agent/drivers/exec/isolation.ts';

/** The Debian package of each program the tests run, directly or through the agent. */
export const DEBIAN_PACKAGE = {
  bwrap: 'bubblewrap',
  setpriv: 'util-linux',
  unshare: 'util-linux',
  findmnt: 'util-linux',
  nsenter: 'util-linux',
  ip: 'iproute2',
  nft: 'nftables',
  mount: 'mount',
  umount: 'mount',
  python3: 'python3',
  ps: 'procps',
  pkill: 'procps',
  npm: 'npm',
} as const;

export type Program = keyof typeof DEBIAN_PACKAGE;

/** Where programs are looked for: PATH, then the system directories (as the agent looks for them). */
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The programs UNUM_TEST_MISSING names. */
function hidden(env: NodeJS.ProcessEnv): Set<string> {
  return new Set(
    (env['UNUM_TEST_MISSING'] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  );
}

export interface LookupOptions {
  /** Default process.env: its PATH and UNUM_TEST_MISSING. */
  env?: NodeJS.ProcessEnv;
  /** Look only in the env's PATH, not in the system directories too. */
  pathOnly?: boolean;
}

/** The absolute path of `program`, or undefined when it is not installed (or UNUM_TEST_MISSING names it). */
export function findTool(program: string, options: LookupOptions = {}): string | undefined {
  const env = options.env ?? process.env;
  if (hidden(env).has(program)) return undefined;
  const path = `${env['PATH'] ?? ''}${options.pathOnly === true ? '' : `${delimiter}${SYSTEM_PATH}`}`;
  return findProgram(program, path);
}

/**
 * Why `program` can not be used here — `bwrap (bubblewrap) is not installed: apt-get install
 * bubblewrap` — or undefined when it is installed. As a test's `skip` option for optional features.
 */
export function missingTool(program: Program, options: LookupOptions = {}): string | undefined {
  if (findTool(program, options) !== undefined) return undefined;
  const pkg = DEBIAN_PACKAGE[program];
  return `${program === pkg ? pkg : `${program} (${pkg})`} is not installed: apt-get install ${pkg}`;
}

/** The first reason among several programs, or undefined when all are installed. */
export function missingTools(programs: readonly Program[], options: LookupOptions = {}): string | undefined {
  for (const program of programs) {
    const why = missingTool(program, options);
    if (why !== undefined) return why;
  }
  return undefined;
}

/** The absolute path of `program`; throws at once, naming the package to install, when it is missing. */
export function requireTool(program: Program, options: LookupOptions = {}): string {
  const path = findTool(program, options);
  if (path === undefined) throw new Error(missingTool(program, options));
  return path;
}

/** Why a test that needs root can not run (a skip reason), or undefined as root. */
export function missingRoot(what: string): string | undefined {
  return process.getuid?.() === 0 ? undefined : `${what} needs root: run the tests as root`;
}

/** Why cgroups can not be used by these tests (a skip reason), or undefined when /sys/fs/cgroup is there. */
export function missingCgroups(): string | undefined {
  if (process.platform !== 'linux') return `cgroups need Linux (this is ${process.platform})`;
  return existsSync('/sys/fs/cgroup') ? undefined : 'cgroups are not mounted at /sys/fs/cgroup';
}

/**
 * For tests that run tasks through the exec driver. As root the driver runs a task only as an
 * unprivileged uid, which takes setpriv: without it the node's exec driver is unhealthy and every
 * task is refused, so such a test would wait for a start that never comes. Throws at once, naming
 * the package; needs nothing when the tests do not run as root. As a `before` hook.
 */
export function requireExecDriverTools(): void {
  if (process.getuid?.() === 0) requireTool('setpriv');
}
