/**
 * Submit → running latency on `unum up`: from the API call that submits a one-task job to the
 * task's first instruction. The task is `date +%s%N`, which prints the wall clock in nanoseconds as
 * it starts; the latency is that time minus the moment before the submit call.
 *
 *   node bench/latency.ts [--jobs 200] [--burst 50] [--runs 3]
 *
 * `unum up` runs as its own process (as a user runs it); the bench is only a client. Two modes:
 * sequential (`--jobs`, one at a time: the latency a user sees; the target) and burst
 * (`--burst`, all submitted at once: queueing under load). Prints a table and writes bench/results/latency.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { UnumClient } from '../src/api/client.ts';
import { freePort } from '../src/testing/net.ts';
import { upToken } from '../src/testing/acl.ts';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '200' },
    burst: { type: 'string', default: '50' },
    runs: { type: 'string', default: '3' },
  },
});
const JOBS = Number(values.jobs);
/** Jobs submitted at once in burst mode: queueing grows with it, so it is kept apart from JOBS. */
const BURST = Number(values.burst);
const RUNS = Number(values.runs);
const root = resolve(import.meta.dirname, '..');

const nowMs = () => performance.timeOrigin + performance.now();

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function jobDoc(id: string) {
  return {
    job: id,
    type: 'batch',
    groups: [
      {
        name: 'g',
        restart: { attempts: 0 },
        reschedule: { attempts: 0 },
        tasks: [{ name: 't', command: 'date', args: ['+%s%N'], resources: { cpu: 10, memory: 8 } }],
      },
    ],
  };
}

async function startedAt(client: UnumClient, id: string): Promise<number> {
  let index = 0;
  for (;;) {
    const l = await client.jobAllocations(id, { index, waitMs: 30_000 });
    index = l.index;
    const a = l.items[0];
    if (a && (a.clientStatus === 'complete' || a.clientStatus === 'failed')) {
      let text = '';
      for await (const chunk of client.allocLogs(a.id, { task: 't' })) text += chunk;
      const ns = BigInt(text.trim());
      return Number(ns / 1000n) / 1000;
    }
  }
}

async function measure(client: UnumClient, run: number, mode: 'sequential' | 'burst'): Promise<number[]> {
  const ids = Array.from({ length: mode === 'burst' ? BURST : JOBS }, (_, i) => `bench-${mode}-${run}-${i}`);
  const submitted = new Map<string, number>();
  if (mode === 'sequential') {
    const out: number[] = [];
    for (const id of ids) {
      const t0 = nowMs();
      await client.submitJob(jobDoc(id));
      out.push((await startedAt(client, id)) - t0);
      if (process.env['BENCH_TRACE'])
        console.log(id, out[out.length - 1]!.toFixed(1), (nowMs() - t0).toFixed(1));
    }
    return out;
  }
  await Promise.all(
    ids.map(async (id) => {
      submitted.set(id, nowMs());
      await client.submitJob(jobDoc(id));
    }),
  );
  return Promise.all(ids.map(async (id) => (await startedAt(client, id)) - submitted.get(id)!));
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'unum-bench-'));
  const port = await freePort();
  // BENCH_PROFILE=DIR writes a CPU profile of `unum up` there, to see where the time goes.
  const profile = process.env['BENCH_PROFILE']
    ? ['--cpu-prof', '--cpu-prof-dir', process.env['BENCH_PROFILE']]
    : [];
  const up = spawn(
    process.execPath,
    [...profile, join(root, 'bin', 'unum.js'), 'up', '--addr', `127.0.0.1:${port}`, '--data-dir', dir],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, UNUM_LOG_LEVEL: 'error' },
    },
  );
  const client = new UnumClient({ addr: `http://127.0.0.1:${port}`, token: upToken(dir) });
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const nodes = await client.listNodes();
        if (nodes.items.some((n) => n.status === 'ready')) break;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error('unum up did not become ready');
      await new Promise((r) => setTimeout(r, 100));
    }
    const results: Record<string, { p50: number[]; p99: number[]; max: number[] }> = {
      sequential: { p50: [], p99: [], max: [] },
      burst: { p50: [], p99: [], max: [] },
    };
    for (let run = 0; run < RUNS; run++) {
      for (const mode of ['sequential', 'burst'] as const) {
        const lat = (await measure(client, run, mode)).sort((a, b) => a - b);
        const r = results[mode]!;
        r.p50.push(pct(lat, 50));
        r.p99.push(pct(lat, 99));
        r.max.push(lat[lat.length - 1]!);
        console.log(
          `run ${run + 1} ${mode.padEnd(10)} ${lat.length} jobs  p50 ${pct(lat, 50).toFixed(1)} ms  p99 ${pct(lat, 99).toFixed(1)} ms  max ${lat[lat.length - 1]!.toFixed(1)} ms`,
        );
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const summary = Object.fromEntries(
      Object.entries(results).map(([mode, r]) => [
        mode,
        { p50Ms: median(r.p50), p99Ms: median(r.p99), maxMs: median(r.max), runs: r },
      ]),
    );
    console.log('\nsubmit → first instruction, median of runs:');
    for (const [mode, s] of Object.entries(summary))
      console.log(
        `  ${mode.padEnd(10)} p50 ${s.p50Ms.toFixed(1)} ms   p99 ${s.p99Ms.toFixed(1)} ms   (target p99 ≤ 100 ms)`,
      );
    mkdirSync(join(root, 'bench', 'results'), { recursive: true });
    writeFileSync(
      join(root, 'bench', 'results', 'latency.json'),
      JSON.stringify(
        {
          bench: 'submit-to-running',
          jobs: JOBS,
          burst: BURST,
          runs: RUNS,
          node: process.version,
          date: new Date().toISOString(),
          ...summary,
        },
        null,
        2,
      ),
    );
  } finally {
    up.kill('SIGINT');
    await new Promise((r) => up.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
