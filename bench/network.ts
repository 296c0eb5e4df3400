/**
 * Start-up cost of an allocation's own network: from the moment an allocation asks for its network
 * (the agent's network hook) to its task's first instruction, against the isolated exec start
 * without a network, in the same run. The task is `date +%s%N` (bench/isolation.ts explains how the
 * first instruction is timed).
 *
 *   node bench/network.ts [--starts 100]      (as root, with iproute2, nftables and util-linux)
 *
 * Modes, interleaved:
 *   exec            the isolated exec driver, no network of its own: the baseline
 *   net             + a namespace taken from the pool (made ahead of time) and joined by the task
 *   net+port        + one port published (one nft run)
 *   net-cold        + a namespace made on the spot (pool empty), and one port
 * Each allocation's network is released after its task ran (not timed); the pool is refilled
 * between starts, as it is between allocations on a node that is not saturated.
 * Prints a table and writes bench/results/network.json. Target: net+port ≤ 5 ms over exec at p50.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { chmod, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { silentLogger } from '../src/core/log.ts';
import { newId } from '../src/core/ids.ts';
import { allocsRoot, buildAllocDir, taskDirPaths } from '../src/agent/runner/alloc-dir.ts';
import { tempDir } from '../src/agent/fixtures.ts';
import { detectIsolation, findProgram } from '../src/agent/drivers/exec/isolation.ts';
import { drivers } from '../src/agent/drivers/index.ts';
import type { Driver, TaskConfig } from '../src/agent/drivers/types.ts';
import { BridgeNetwork } from '../src/agent/network/bridge-network.ts';
import { removeTestNetwork, testNetwork } from '../src/testing/network.ts';

const { values } = parseArgs({ options: { starts: { type: 'string', default: '100' } } });
const STARTS = Number(values.starts);
const root = resolve(import.meta.dirname, '..');
const PATH = '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin';

const nowMs = () => performance.timeOrigin + performance.now();
const pct = (s: number[], p: number) => s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;

async function newTask(allocs: string, driver: Driver): Promise<TaskConfig> {
  const allocId = newId();
  await buildAllocDir(allocs, allocId, ['t']);
  await driver.prepareAllocation?.(allocId, allocs);
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

async function main(): Promise<void> {
  const ip = findProgram('ip', PATH);
  const nft = findProgram('nft', PATH);
  const nsenter = findProgram('nsenter', PATH);
  if (process.getuid?.() !== 0 || ip === undefined || nft === undefined || nsenter === undefined) {
    console.log('skipped: needs root, ip (iproute2), nft (nftables) and nsenter (util-linux)');
    return;
  }
  const data = await tempDir('unum-bench-network-');
  await chmod(data.path, 0o711);
  const allocs = allocsRoot(data.path);
  const cap = await detectIsolation();
  const exec = drivers.exec({ logger: silentLogger(), enabled: true, dataDir: data.path, isolation: cap });
  const n = testNetwork();
  const nets = {
    pool: new BridgeNetwork({
      bridge: n.bridge,
      subnet: n.subnet,
      dir: join(data.path, 'net'),
      tools: { ip, nft },
      poolSize: 2,
      logger: silentLogger(),
    }),
  };
  const results: Record<
    string,
    { p50Ms: number; p99Ms: number; maxMs: number; portsPublishedP50Ms?: number }
  > = {};
  let port = 40000;
  /** When the ports were published, from the same t0 (they are published while the task starts). */
  const ready: Record<string, number[]> = {};
  try {
    await nets.pool.init();
    const settle = async () => {
      // Until the pool is full again (its background refill), as between allocations.
      for (let i = 0; i < 200 && (nets.pool as unknown as { pool: number[] }).pool.length < 2; i++)
        await new Promise((r) => setTimeout(r, 5));
    };
    const start = async (mode: string): Promise<number> => {
      const cfg = await newTask(allocs, exec);
      if (mode === 'net-cold') (nets.pool as unknown as { pool: number[] }).pool.length = 0;
      else await settle();
      const t0 = nowMs();
      let publish: (() => Promise<number>) | undefined;
      if (mode !== 'exec') {
        const ports = mode === 'net' ? [] : [port++];
        const net = await nets.pool.claim(cfg.allocId, ports);
        publish = () => net.publish().then(() => nowMs() - t0);
        cfg.network = { netnsPath: net.netnsPath, nsenter };
      }
      const h = await exec.start(cfg);
      // As the agent does once the allocation's tasks are on their way.
      const published = publish?.();
      const result = await h.wait();
      if (published !== undefined && mode !== 'net') (ready[mode] ??= []).push(await published);
      if (result.exitCode !== 0) throw new Error(`task failed in mode ${mode}: ${JSON.stringify(result)}`);
      const ns = BigInt((await readFile(cfg.stdoutPath, 'utf8')).trim());
      const latency = Number(ns / 1000n) / 1000 - t0;
      if (mode !== 'exec') await nets.pool.release(cfg.allocId);
      return latency;
    };
    const modes = ['exec', 'net', 'net+port', 'net-cold'];
    for (const m of modes) for (let i = 0; i < 5; i++) await start(m);
    const lat: Record<string, number[]> = {};
    for (const k of Object.keys(ready)) delete ready[k];
    for (let i = 0; i < STARTS; i++) for (const m of modes) (lat[m] ??= []).push(await start(m));
    for (const m of modes) {
      const l = lat[m]!.sort((a, b) => a - b);
      const r = ready[m]?.sort((a, b) => a - b);
      results[m] = {
        p50Ms: pct(l, 50),
        p99Ms: pct(l, 99),
        maxMs: l[l.length - 1]!,
        ...(r !== undefined ? { portsPublishedP50Ms: pct(r, 50) } : {}),
      };
    }
  } finally {
    await nets.pool.close();
    removeTestNetwork(n);
    await rm(data.path, { recursive: true, force: true });
  }

  const base = results['exec']!;
  console.log(`\nallocation network → task's first instruction, ${STARTS} starts each:`);
  console.log(
    `  ${'mode'.padEnd(10)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'max'.padStart(8)} ${'+p50'.padStart(8)}  ports published (p50)`,
  );
  for (const [name, r] of Object.entries(results))
    console.log(
      `  ${name.padEnd(10)} ${r.p50Ms.toFixed(2).padStart(8)} ${r.p99Ms.toFixed(2).padStart(8)} ${r.maxMs.toFixed(2).padStart(8)} ${(r.p50Ms - base.p50Ms).toFixed(2).padStart(8)}  ${r.portsPublishedP50Ms === undefined ? '' : `${r.portsPublishedP50Ms.toFixed(2)} ms`}`,
    );
  const added = results['net+port']!.p50Ms - base.p50Ms;
  console.log(
    `\nits own network with a published port adds ${added.toFixed(2)} ms at p50 over an isolated start (target ≤ 5 ms)`,
  );
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(
    join(root, 'bench', 'results', 'network.json'),
    `${JSON.stringify(
      {
        bench: 'network-start',
        starts: STARTS,
        node: process.version,
        date: new Date().toISOString(),
        addedP50Ms: added,
        targetAddedP50Ms: 5,
        modes: results,
      },
      null,
      2,
    )}\n`,
  );
  await data.cleanup();
}

await main();
