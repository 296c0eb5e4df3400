/**
 * Start-up cost of isolation: from the driver's `start()` call to the task's first instruction, for
 * the isolating exec driver (cgroup + bwrap sandbox + setpriv, whatever this node supports) against a
 * raw spawn of the same program. The task is `date +%s%N`, which prints the wall clock in
 * nanoseconds as it starts; the latency is that time minus the moment before `start()`.
 *
 *   node bench/isolation.ts [--starts 200]
 *
 * Each start gets a new allocation, set up before the clock starts as the alloc runner does: its
 * directories built and the driver's prepareAllocation() done (the exec driver leases its uid). Modes, one after the other:
 *   spawn        child_process.spawn, stdout to the log file: the floor
 *   bwrap+drop   the same spawn of a bare `bwrap --ro-bind / / --proc --dev --unshare-pid,ipc,uts --
 *                unshare -S 65534 -G 65534 -- date`: what the sandbox tools cost on this machine
 *   raw_exec     the raw_exec driver (the recording shell)
 *   exec-off     the exec driver with isolation turned off (what a non-root agent does)
 *   exec-nocg    the sandbox and the uid, without a cgroup             } where the time goes
 *   exec-nons    the cgroup and the uid (setpriv), without the sandbox }
 *   exec-nosc    everything but the seccomp filter                     }
 *   exec         the exec driver, isolated as far as this node allows (the target: ≤ 8 ms over spawn at p50)
 * Prints a table and writes bench/results/isolation.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { chmod, open, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { silentLogger } from '../src/core/log.ts';
import { newId } from '../src/core/ids.ts';
import { allocsRoot, buildAllocDir, taskDirPaths } from '../src/agent/runner/alloc-dir.ts';
import { tempDir } from '../src/agent/fixtures.ts';
import { detectIsolation, type IsolationCapability } from '../src/agent/drivers/exec/isolation.ts';
import { drivers } from '../src/agent/drivers/index.ts';
import type { Driver, TaskConfig } from '../src/agent/drivers/types.ts';

const { values } = parseArgs({ options: { starts: { type: 'string', default: '200' } } });
const STARTS = Number(values.starts);
const root = resolve(import.meta.dirname, '..');
const PATH = '/usr/local/bin:/usr/bin:/bin';

const nowMs = () => performance.timeOrigin + performance.now();

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

async function firstInstructionMs(stdoutPath: string): Promise<number> {
  const ns = BigInt((await readFile(stdoutPath, 'utf8')).trim());
  return Number(ns / 1000n) / 1000;
}

async function newTask(allocs: string, driver?: Driver): Promise<TaskConfig> {
  const allocId = newId();
  await buildAllocDir(allocs, allocId, ['t']);
  await driver?.prepareAllocation?.(allocId, allocs);
  const t = taskDirPaths(allocs, allocId, 't');
  return {
    allocId,
    task: 't',
    command: 'date',
    args: ['+%s%N'],
    env: { PATH },
    cwd: t.dir,
    stdoutPath: t.stdout,
    stderrPath: t.stderr,
    resources: { cpu: 100, memory: 64 },
  };
}

/** One raw spawn: what the drivers are measured against. */
async function rawSpawn(cfg: TaskConfig, argv: readonly string[] = ['date', '+%s%N']) {
  const [program, ...args] = argv;
  const t0 = nowMs();
  const out = await open(cfg.stdoutPath, 'a');
  const child = spawn(program!, args, {
    cwd: cfg.cwd,
    env: cfg.env,
    stdio: ['ignore', out.fd, 'ignore'],
    detached: true,
  });
  const exited = new Promise((r) => child.once('exit', r));
  const startReturned = nowMs() - t0;
  await out.close();
  await exited;
  return { latency: (await firstInstructionMs(cfg.stdoutPath)) - t0, startReturned };
}

async function viaDriver(
  driver: Driver,
  cfg: TaskConfig,
): Promise<{ latency: number; startReturned: number }> {
  const t0 = nowMs();
  const h = await driver.start(cfg);
  const startReturned = nowMs() - t0;
  const result = await h.wait();
  if (result.exitCode !== 0) throw new Error(`task failed: ${JSON.stringify(result)}`);
  return { latency: (await firstInstructionMs(cfg.stdoutPath)) - t0, startReturned };
}

interface ModeResult {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  startReturnedP50Ms: number;
}

async function main(): Promise<void> {
  const data = await tempDir('unum-bench-isolation-');
  // Outside a sandbox (exec-nons) a task reaches its directory by path, as under a real data dir.
  await chmod(data.path, 0o711);
  const allocs = allocsRoot(data.path);
  const cap = await detectIsolation();
  const off = await detectIsolation({ mode: 'off' });
  const make = (name: 'exec' | 'raw_exec', isolation: IsolationCapability) =>
    drivers[name]({ logger: silentLogger(), enabled: true, dataDir: data.path, isolation });
  // One driver per mode, made once (as the agent does): its uid leases, detection and caches carry over.
  const rawExec = make('raw_exec', off);
  const execOff = make('exec', off);
  const execNoCgroup = make('exec', { ...cap, cgroups: undefined });
  const execNoSandbox = make('exec', { ...cap, namespaces: false });
  const { seccomp, ...withoutSeccomp } = cap;
  const execNoSeccomp = make('exec', withoutSeccomp);
  const exec = make('exec', cap);
  type Run = (cfg: TaskConfig) => Promise<{ latency: number; startReturned: number }>;
  const via = (d: Driver): [Run, Driver] => [(cfg) => viaDriver(d, cfg), d];
  // What bubblewrap and dropping to an unprivileged uid cost on this machine, with no agent work
  // around them: the least a sandbox started this way can cost.
  const floorArgv =
    cap.namespaces && cap.bwrapPath !== undefined && cap.unsharePath !== undefined
      ? [
          cap.bwrapPath,
          ...['--ro-bind', '/', '/', '--proc', '/proc', '--dev', '/dev'],
          ...['--unshare-pid', '--unshare-ipc', '--unshare-uts', '--'],
          ...[cap.unsharePath, '-S', '65534', '-G', '65534', '--', 'date', '+%s%N'],
        ]
      : undefined;
  const modes: [string, Run, Driver?][] = [
    ['spawn', (cfg) => rawSpawn(cfg)],
    ...(floorArgv !== undefined
      ? ([['bwrap+drop', (cfg) => rawSpawn(cfg, floorArgv)]] as [string, Run][])
      : []),
    ['raw_exec', ...via(rawExec)],
    ['exec-off', ...via(execOff)],
    ...(cap.cgroups !== undefined && cap.namespaces
      ? ([
          ['exec-nocg', ...via(execNoCgroup)],
          ['exec-nons', ...via(execNoSandbox)],
        ] as [string, Run, Driver][])
      : []),
    ...(seccomp !== undefined ? ([['exec-nosc', ...via(execNoSeccomp)]] as [string, Run, Driver][]) : []),
    ['exec', ...via(exec)],
  ];
  const isolation = [
    cap.cgroups !== undefined ? `cgroups ${cap.cgroups.version}` : 'no cgroups',
    cap.namespaces ? `bwrap namespaces${seccomp !== undefined ? ' + seccomp' : ''}` : 'no namespaces',
    cap.unprivilegedUser ? 'own uid' : 'agent uid',
  ].join(', ');
  console.log(`isolation on this node: ${isolation}`);
  for (const w of cap.warnings) console.log(`  warning: ${w}`);

  const results: Record<string, ModeResult> = {};
  try {
    // Warm-up: the first starts pay for loading code and creating parent cgroups.
    for (const [, run, driver] of modes) for (let i = 0; i < 5; i++) await run(await newTask(allocs, driver));
    // Interleaved, so that a slow phase of the machine hits every mode alike.
    const lat: Record<string, number[]> = {};
    const ret: Record<string, number[]> = {};
    for (let i = 0; i < STARTS; i++) {
      for (const [name, run, driver] of modes) {
        const r = await run(await newTask(allocs, driver));
        (lat[name] ??= []).push(r.latency);
        (ret[name] ??= []).push(r.startReturned);
      }
    }
    for (const [name] of modes) {
      const l = lat[name]!.sort((a, b) => a - b);
      const s = ret[name]!.sort((a, b) => a - b);
      results[name] = {
        p50Ms: pct(l, 50),
        p99Ms: pct(l, 99),
        maxMs: l[l.length - 1]!,
        startReturnedP50Ms: pct(s, 50),
      };
    }
  } finally {
    await rm(data.path, { recursive: true, force: true });
  }

  const base = results['spawn']!;
  console.log(`\nstart() → first instruction, ${STARTS} starts each:`);
  console.log(
    `  ${'mode'.padEnd(10)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'max'.padStart(8)} ${'+p50'.padStart(8)}  start() returns (p50)`,
  );
  for (const [name, r] of Object.entries(results))
    console.log(
      `  ${name.padEnd(10)} ${r.p50Ms.toFixed(2).padStart(8)} ${r.p99Ms.toFixed(2).padStart(8)} ${r.maxMs.toFixed(2).padStart(8)} ${(r.p50Ms - base.p50Ms).toFixed(2).padStart(8)}  ${r.startReturnedP50Ms.toFixed(2)} ms`,
    );
  const added = results['exec']!.p50Ms - base.p50Ms;
  console.log(`\nisolated exec adds ${added.toFixed(2)} ms at p50 over a raw spawn (target ≤ 8 ms)`);
  const floor = results['bwrap+drop'];
  const floorAdded = floor === undefined ? undefined : floor.p50Ms - base.p50Ms;
  if (floorAdded !== undefined)
    console.log(
      `bare bwrap + unshare -S/-G adds ${floorAdded.toFixed(2)} ms on this machine: the agent's own work adds ${(added - floorAdded).toFixed(2)} ms to it`,
    );

  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(
    join(root, 'bench', 'results', 'isolation.json'),
    `${JSON.stringify(
      {
        bench: 'isolation-start',
        starts: STARTS,
        isolation,
        node: process.version,
        date: new Date().toISOString(),
        addedP50Ms: added,
        ...(floorAdded !== undefined ? { bareSandboxAddedP50Ms: floorAdded } : {}),
        targetAddedP50Ms: 8,
        modes: results,
      },
      null,
      2,
    )}\n`,
  );
  await data.cleanup();
}

await main();
