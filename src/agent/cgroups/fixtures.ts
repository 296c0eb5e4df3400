/**
 * Test fixtures for the cgroups tests (not used by the agent): a fake cgroupfs in a temp dir (a
 * unit-test double of the kernel interface, for v2 and for detection), starting processes inside a
 * task cgroup the way the exec driver does, and running code as an unprivileged user.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { requireTool } from '../../testing/tools.ts';
import { NOBODY, reachableCheckout } from '../../testing/unprivileged.ts';
import { removeCgroupDir } from './files.ts';
import type { CgroupManager, TaskCgroup } from './types.ts';

/** A fresh temp dir (mode 0755, so that an unprivileged user can read it) and its removal. */
export async function tempDir(
  prefix = 'unum-cgroups-',
): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(os.tmpdir(), prefix));
  await chmod(path, 0o755);
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** Files a fresh v2 cgroup directory has, with the kernel's defaults (the subset unum reads). */
export const V2_DEFAULT_FILES: Readonly<Record<string, string>> = {
  'cgroup.procs': '',
  'cgroup.controllers': 'cpu memory pids\n',
  'cgroup.subtree_control': '\n',
  'cgroup.events': 'populated 0\nfrozen 0\n',
  'cgroup.freeze': '0\n',
  'cgroup.kill': '',
  'memory.max': 'max\n',
  'memory.swap.max': 'max\n',
  'memory.oom.group': '0\n',
  'memory.current': '0\n',
  'memory.peak': '0\n',
  'memory.stat': 'anon 0\nfile 0\ninactive_file 0\n',
  'memory.events': 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n',
  'cpu.weight': '100\n',
  'cpu.max': 'max 100000\n',
  'cpu.stat': 'usage_usec 0\nuser_usec 0\nsystem_usec 0\n',
  'pids.max': 'max\n',
  'pids.current': '0\n',
};

/**
 * A directory of a fake v2 hierarchy, as the kernel would show it right after mkdir; `files`
 * overrides or adds contents, and a value of `undefined` leaves a file out (an older kernel).
 */
export async function fakeV2Cgroup(
  dir: string,
  files: Record<string, string | undefined> = {},
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const all: Record<string, string | undefined> = { ...V2_DEFAULT_FILES, ...files };
  for (const [name, content] of Object.entries(all))
    if (content !== undefined) await writeFile(join(dir, name), content);
}

/** The root of a fake v2 hierarchy: cgroup.controllers, cgroup.subtree_control, cgroup.procs. */
export async function fakeV2Root(
  root: string,
  options: { controllers?: string; subtreeControl?: string; procs?: string } = {},
): Promise<void> {
  await mkdir(root, { recursive: true });
  await writeFile(
    join(root, 'cgroup.controllers'),
    options.controllers ?? 'cpuset cpu io memory hugetlb pids rdma misc\n',
  );
  await writeFile(join(root, 'cgroup.subtree_control'), options.subtreeControl ?? '\n');
  // The real root holds processes (it is exempt from "no internal processes").
  await writeFile(join(root, 'cgroup.procs'), options.procs ?? '1\n');
}

/** A fake v1 layout: one directory per hierarchy, each with cgroup.procs (like a real mount point). */
export async function fakeV1Root(root: string, hierarchies: readonly string[]): Promise<void> {
  for (const h of hierarchies) {
    await mkdir(join(root, h), { recursive: true });
    await writeFile(join(root, h, 'cgroup.procs'), '');
  }
}

/** The shell the exec driver uses to join: write its pid to every procs file, then exec the task. */
export function joinScript(cgroup: TaskCgroup): string {
  return `${cgroup.procsFiles.map((f) => `echo $$ > '${f}' || exit 125;`).join(' ')} exec "$@"`;
}

/** Starts `command args` inside the cgroup (its own process group, as the driver does). */
export function spawnInCgroup(
  cgroup: TaskCgroup,
  command: string,
  args: readonly string[] = [],
  stdout: 'ignore' | 'pipe' = 'ignore',
): ChildProcess {
  return spawn('/bin/sh', ['-c', joinScript(cgroup), 'sh', command, ...args], {
    stdio: ['ignore', stdout, 'ignore'],
    detached: true,
  });
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Resolves when the child has exited (at once when it already has). */
export function exitOf(child: ChildProcess): Promise<Exit> {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Resolves with the first stdout line of the child that equals `line`. */
export function lineFrom(child: ChildProcess, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.split('\n').includes(line)) resolve();
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`exited (${code ?? signal ?? '?'}) before printing ${JSON.stringify(line)}`)),
    );
  });
}

/** A Python 3 without version-manager shims where possible (a shim forks inside tight limits). */
export function python3(): string {
  // Throws at once, naming the package, where there is none.
  return requireTool('python3', { env: { ...process.env, PATH: `/usr/bin:${process.env['PATH'] ?? ''}` } });
}

/** Whether a process exists and is not a zombie (dead but not yet reaped). */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The session id of a process (field 6 of /proc/<pid>/stat). */
export function sessionOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[3]);
}

/**
 * Runs `detectCgroups(options)` in a child Node process as the unprivileged user `nobody` (uid and
 * gid 65534) and resolves with what it returned (a manager is reported as `{ available: true }`).
 */
export async function detectAsNobody(options: Record<string, unknown>): Promise<unknown> {
  // From a copy nobody can reach: a checkout in a private directory is out of its reach.
  const copy = reachableCheckout();
  const url = pathToFileURL(join(copy.root, 'src', 'agent', 'cgroups', 'index.ts')).href;
  const code = `const { detectCgroups } = await import(${JSON.stringify(url)});
const d = await detectCgroups(${JSON.stringify(options)});
process.stdout.write(JSON.stringify(d.available ? { available: true } : d));`;
  const child = spawn(copy.node, ['--no-warnings', '--input-type=module', '-e', code], {
    uid: NOBODY,
    gid: NOBODY,
    cwd: '/',
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exit = await exitOf(child);
  if (exit.code !== 0) throw new Error(`detection as nobody failed (${exit.code ?? exit.signal}): ${err}`);
  return JSON.parse(out) as unknown;
}

/**
 * Kills and removes every task cgroup under the manager's parent, then the parent itself (tests
 * use a parent of their own).
 */
export async function removeAll(manager: CgroupManager, parentDirs: readonly string[]): Promise<void> {
  for (const name of await manager.list()) {
    const cgroup = await manager.open(name);
    await cgroup?.killAll();
    await cgroup?.destroy();
  }
  for (const dir of parentDirs) await removeCgroupDir(dir);
}
