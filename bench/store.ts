/**
 * Store benchmark: writes per second on the sqlite backend, as single-key compare-and-swap
 * transactions (`cas`: txn { compare mod = last, put }) and as plain puts (`put`), with 1 and 16
 * concurrent writers, for synchronous=normal and synchronous=full, several runs each; then watch
 * delivery latency (put call → onEvents) p50/p99. Prints the median and the range of the runs of
 * each configuration and writes bench/results/store.json. Stops by itself.
 *
 * The machine this runs on is usually shared and noisy: the runs go round-robin over the
 * configurations (run 1 of each, then run 2 of each, ...) so that a noisy spell does not fall on
 * one configuration only, and every run uses a fresh database file.
 *
 *   node bench/store.ts                      # 5 runs of 3 s per configuration (~2 min)
 *   UNUM_BENCH_SECONDS=1 UNUM_BENCH_RUNS=1 node bench/store.ts
 *   UNUM_BENCH_DIR=/mnt/disk node bench/store.ts   # where the database files go (default: os.tmpdir())
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SqliteStore, type SynchronousLevel } from '../src/store/sqlite/sqlite-store.ts';
import type { Store } from '../src/store/types.ts';

const seconds = Number(process.env['UNUM_BENCH_SECONDS'] ?? 3);
const runs = Number(process.env['UNUM_BENCH_RUNS'] ?? 5);
const baseDir = process.env['UNUM_BENCH_DIR'] ?? tmpdir();
const target = 20_000;
/** About the size of a small unum object (an allocation status, a node heartbeat). */
const value = JSON.stringify({
  id: 'alloc-00000000',
  node: 'node-1',
  status: 'running',
  pad: 'x'.repeat(160),
});

type Operation = 'cas' | 'put';

interface Run {
  operation: Operation;
  synchronous: SynchronousLevel;
  writers: number;
  txns: number;
  seconds: number;
  txnsPerSecond: number;
  /** SQLite transactions: txns / commits is the mean group-commit size. */
  commits: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function withStore<T>(
  synchronous: SynchronousLevel,
  fn: (store: SqliteStore) => Promise<T>,
): Promise<T> {
  const dir = mkdtempSync(join(baseDir, 'unum-bench-store-'));
  const store = new SqliteStore({ path: join(dir, 'bench.db'), synchronous });
  try {
    return await fn(store);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Each writer owns a key and loops, each write awaited before the next: `cas` compares the key's
 * modRevision with the one it last wrote and puts a new value; `put` just puts it.
 */
async function writeRun(operation: Operation, synchronous: SynchronousLevel, writers: number): Promise<Run> {
  return withStore(synchronous, async (store) => {
    const lastRevision: number[] = [];
    for (let w = 0; w < writers; w++) lastRevision.push((await store.put(`bench/w${w}`, value)).revision);
    const commitsBefore = store.stats().commits;
    let txns = 0;
    const started = performance.now();
    const deadline = started + seconds * 1000;
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        const key = `bench/w${w}`;
        while (performance.now() < deadline) {
          if (operation === 'put') {
            const result = await store.put(key, value);
            if (result.revision <= lastRevision[w]!) throw new Error(`bench: revision went back for ${key}`);
            lastRevision[w] = result.revision;
          } else {
            const result = await store.txn({
              compare: [{ key, target: 'mod', op: '=', value: lastRevision[w]! }],
              success: [{ type: 'put', key, value }],
            });
            if (!result.succeeded) throw new Error(`bench: compare failed for ${key}`);
            lastRevision[w] = result.revision;
          }
          txns++;
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    return {
      operation,
      synchronous,
      writers,
      txns,
      seconds: elapsed,
      txnsPerSecond: txns / elapsed,
      commits: store.stats().commits - commitsBefore,
    };
  });
}

interface Latency {
  writers: number;
  events: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Time from calling put to the watch delivering its event. */
async function watchLatency(store: Store, writers: number, total: number): Promise<Latency> {
  const sentAt = new Float64Array(total);
  const latencies: number[] = [];
  const { promise: allSeen, resolve } = Promise.withResolvers<void>();
  const watcher = store.watch(
    { prefix: `lat${writers}/` },
    {
      onEvents(events) {
        const now = performance.now();
        for (const event of events) latencies.push(now - sentAt[Number(event.kv.value)]!);
        if (latencies.length >= total) resolve();
      },
    },
  );
  let next = 0;
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (next < total) {
        const i = next++;
        sentAt[i] = performance.now();
        await store.put(`lat${writers}/${i % 100}`, String(i));
      }
    }),
  );
  await allSeen;
  watcher.cancel();
  latencies.sort((a, b) => a - b);
  return {
    writers,
    events: latencies.length,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies[latencies.length - 1]!,
  };
}

const all: Run[] = [];
const summary: Array<{
  operation: Operation;
  synchronous: SynchronousLevel;
  writers: number;
  medianTxnsPerSecond: number;
  minTxnsPerSecond: number;
  maxTxnsPerSecond: number;
  meanBatch: number;
}> = [];

const configurations: Array<{ operation: Operation; synchronous: SynchronousLevel; writers: number }> = [];
for (const operation of ['cas', 'put'] as const) {
  for (const synchronous of ['normal', 'full'] as const) {
    for (const writers of [1, 16]) configurations.push({ operation, synchronous, writers });
  }
}
process.stdout.write(
  `store bench: sqlite, single-key writes (cas: compare-and-swap txn; put: plain put), ${runs} run(s) x ${seconds} s per configuration, round-robin, files in ${baseDir}\n`,
);
const runsOf = configurations.map((): Run[] => []);
for (let run = 0; run < runs; run++) {
  for (const [i, { operation, synchronous, writers }] of configurations.entries()) {
    const result = await writeRun(operation, synchronous, writers);
    runsOf[i]!.push(result);
    all.push(result);
  }
  process.stdout.write(`  run ${run + 1}/${runs} done\n`);
}
for (const [i, { operation, synchronous, writers }] of configurations.entries()) {
  const these = runsOf[i]!;
  const rates = these.map((r) => r.txnsPerSecond);
  summary.push({
    operation,
    synchronous,
    writers,
    medianTxnsPerSecond: Math.round(median(rates)),
    minTxnsPerSecond: Math.round(Math.min(...rates)),
    maxTxnsPerSecond: Math.round(Math.max(...rates)),
    meanBatch: Number(
      (these.reduce((sum, r) => sum + r.txns, 0) / these.reduce((sum, r) => sum + r.commits, 0)).toFixed(1),
    ),
  });
}

const latency = await withStore('normal', async (store) => [
  await watchLatency(store, 1, 5000),
  await watchLatency(store, 16, 20_000),
]);

const pad = (text: string | number, width: number): string => String(text).padStart(width);
process.stdout.write(
  `\n${pad('op', 3)} ${pad('synchronous', 11)} ${pad('writers', 7)} ${pad('median txn/s', 12)} ${pad('min', 8)} ${pad('max', 8)} ${pad('txn/commit', 10)}  target ${target}/s\n`,
);
for (const row of summary) {
  process.stdout.write(
    `${pad(row.operation, 3)} ${pad(row.synchronous, 11)} ${pad(row.writers, 7)} ${pad(row.medianTxnsPerSecond, 12)} ${pad(row.minTxnsPerSecond, 8)} ${pad(row.maxTxnsPerSecond, 8)} ${pad(row.meanBatch, 10)}  ${row.medianTxnsPerSecond >= target ? 'ok' : 'below'}\n`,
  );
}
process.stdout.write(`\nwatch delivery latency (put call -> onEvents), synchronous=normal\n`);
for (const row of latency) {
  process.stdout.write(
    `  ${pad(row.writers, 2)} writer(s), ${row.events} events: p50 ${row.p50Ms.toFixed(3)} ms, p99 ${row.p99Ms.toFixed(3)} ms, max ${row.maxMs.toFixed(3)} ms\n`,
  );
}

const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'store.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(
  out,
  `${JSON.stringify(
    {
      bench: 'store',
      date: new Date().toISOString(),
      node: process.version,
      platform: `${process.platform}-${process.arch}`,
      cpu: cpus()[0]?.model ?? 'unknown',
      cpus: cpus().length,
      directory: baseDir,
      secondsPerRun: seconds,
      runsPerConfiguration: runs,
      operations: {
        cas: 'txn { compare mod = last, put one key (~230 B value) }',
        put: 'put one key (~230 B value)',
      },
      order: 'round-robin over the configurations, a fresh database file per run',
      targetTxnsPerSecond: target,
      summary,
      watchLatency: latency,
      runs: all,
    },
    null,
    2,
  )}\n`,
);
process.stdout.write(`\nwrote ${out}\n`);
