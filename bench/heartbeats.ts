/**
 * Failure detection at scale: a real `unum server` (its own process, sqlite store) loaded with N
 * hollow nodes (src/testing/hollow-nodes.ts) that register over the HTTP API with their own
 * credentials and heartbeat at the interval the server gives, with the agent's jitter. The nodes run
 * in worker threads of this process, which is only a client.
 *
 *   node bench/heartbeats.ts                         # 100, 1000, 5000 and 10 000 nodes, then the replacement run
 *   node bench/heartbeats.ts --nodes 1000 --seconds 20
 *   node bench/heartbeats.ts --baseline a4905c2      # also the server of that commit, same load, same run
 *
 * Per node count, after a warm-up of one grace: a window of `--seconds` during which `--stop`
 * nodes stop beating (spread over the first half) and a 10-instance job is submitted. Measured:
 * false node-downs (node-down events of nodes that beat, and beats answered not_found: must be 0),
 * the server process's CPU time per heartbeat (all its work, over the window), heartbeat latency
 * p50/p99 as the nodes see it, time from a node's stop to its node-down event (p50/p99), the job's
 * submit → all placed time, the Store revisions written per second, and the machine's CPU use.
 *
 * The replacement run: 50 hollow nodes that also act as hollow agents (they watch their
 * allocations and report each running at once), a 20-instance job of one instance per node; 20 of
 * the nodes holding one stop, 0.4 s apart. Measured per stopped node: stop → node-down event, and
 * stop → its replacement reported running (a real task's start adds the agent's submit → running
 * time, bench/latency.ts).
 *
 * Prints a table per server and writes bench/results/heartbeats.json.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { UnumClient } from '../src/api/client.ts';
import type { ClusterEvent } from '../src/core/types.ts';
import { bootstrapped } from '../src/testing/acl.ts';
import { HollowNodes, type HollowNodesOptions, type HollowStats } from '../src/testing/hollow-nodes.ts';
import { freePort } from '../src/testing/net.ts';
import { waitFor } from '../src/testing/wait.ts';

// --- the nodes' side (worker threads) ------------------------------------------------------------

type Command = { cmd: 'register' } | { cmd: 'stop'; id: string } | { cmd: 'take' } | { cmd: 'close' };

/** A worker thread with its share of the nodes; `ask` sends a command and waits for its answer. */
function nodesWorker(o: HollowNodesOptions): {
  ask<T>(c: Command): Promise<T>;
  ids: string[];
  terminate(): Promise<number>;
} {
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: o });
  let queue = Promise.resolve() as Promise<unknown>;
  const ask = <T>(c: Command): Promise<T> => {
    const next = queue.then(
      () =>
        new Promise<T>((res, rej) => {
          const answered = (v: T) => {
            worker.off('error', failed);
            res(v);
          };
          const failed = (err: Error) => {
            worker.off('message', answered);
            rej(err);
          };
          worker.once('message', answered);
          worker.once('error', failed);
          worker.postMessage(c);
        }),
    );
    queue = next.catch(() => undefined);
    return next;
  };
  const first = o.first ?? 0;
  const ids = Array.from({ length: o.count }, (_, i) => `${o.prefix}-${String(first + i).padStart(5, '0')}`);
  return { ask, ids, terminate: () => worker.terminate() };
}

// --- the server ----------------------------------------------------------------------------------

interface Server {
  addr: string;
  pid: number;
  client: UnumClient;
  token: string;
  /** Lines of its stderr that say its event loop stalled. */
  stalls(): number;
  stop(): Promise<void>;
}

async function startServer(root: string, extra: string[]): Promise<Server> {
  const dataDir = mkdtempSync(join(tmpdir(), 'unum-bench-hb-'));
  const port = await freePort();
  const logFile = join(dataDir, 'server.log');
  const child: ChildProcess = spawn(
    process.execPath,
    [
      // This code's `unum server` serves TLS; its simulated nodes register with node secrets on a
      // plain listener, as under `unum up` (bench/plain-server.ts). Older commits served plain.
      ...(existsSync(join(root, 'bench/plain-server.ts'))
        ? [join(root, 'bench/plain-server.ts')]
        : [join(root, 'bin/unum.js'), 'server']),
      ...['--addr', `127.0.0.1:${port}`, '--data-dir', dataDir, '--log-level', 'warn'],
      ...['--max-connections', '30000', '--max-connections-per-source', '30000'],
      ...extra,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.on('data', (c: Buffer) => {
    if (log.length < 5_000_000) log += c.toString();
  });
  const addr = `http://127.0.0.1:${port}`;
  const { client, token } = await bootstrapped(addr).catch((err: unknown) => {
    // A server that never answered is not left behind.
    child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`the server did not answer: ${log.slice(-500)}`, { cause: err });
  });
  return {
    addr,
    pid: child.pid!,
    client,
    token,
    stalls: () => log.split('\n').filter((l) => l.includes('event loop stalled')).length,
    async stop() {
      writeFileSync(logFile, log);
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** CPU time of a process so far, ms (utime + stime, in clock ticks of 10 ms). */
function processCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Busy and total jiffies of the whole machine. */
function machineCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (line[3] ?? 0) + (line[4] ?? 0);
  const total = line.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** The code of commit `rev` in a temp dir (git archive), with this checkout's node_modules. */
function checkout(rev: string): { root: string; remove(): void } {
  const here = resolve(import.meta.dirname, '..');
  const dir = mkdtempSync(join(tmpdir(), 'unum-baseline-'));
  execFileSync('sh', ['-c', `git -C "${here}" archive "${rev}" | tar -x -C "${dir}"`]);
  symlinkSync(join(here, 'node_modules'), join(dir, 'node_modules'));
  return { root: dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

// --- one load ------------------------------------------------------------------------------------

const pct = (values: number[], p: number): number => {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};
const round = (v: number, digits = 1) => Number(v.toFixed(digits));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every event after `index` (paging), and the index to continue from. */
async function eventsAfter(
  client: UnumClient,
  index: number,
): Promise<{ events: ClusterEvent[]; index: number }> {
  const all: ClusterEvent[] = [];
  for (;;) {
    const page = await client.events({ index, limit: 10_000 });
    all.push(...page.events);
    if (page.events.length < 10_000) return { events: all, index: page.index };
    index = page.index;
  }
}

const probeJob = (id: string, count: number, cpu = 100) => ({
  job: id,
  groups: [
    {
      name: 'g',
      count,
      tasks: [{ name: 't', command: 'sleep', args: ['3600'], resources: { cpu, memory: 64 } }],
    },
  ],
});

/** Submit → every instance placed, ms. */
async function placement(client: UnumClient, id: string, count: number, cpu?: number): Promise<number> {
  const t = performance.now();
  await client.submitJob(probeJob(id, count, cpu));
  await waitFor(async () => (await client.jobAllocations(id)).items.length >= count, {
    timeoutMs: 120_000,
    intervalMs: 20,
    description: `${count} instances of ${id} placed`,
  });
  return performance.now() - t;
}

interface LoadResult {
  nodes: number;
  /** What the server told the nodes. */
  intervalMs: number;
  /** The machine's 1-minute load average as the window began (other tenants included). */
  loadAverage: number;
  registerSeconds: number;
  beats: number;
  beatsPerSecond: number;
  falseNodeDowns: number;
  falseDownNodes: string[];
  notFoundAnswers: number;
  errors: number;
  firstError?: string;
  serverCpuPercent: number;
  serverCpuUsPerBeat: number;
  simulatorCpuPercent: number;
  machineCpuPercent: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  stopped: number;
  detected: number;
  detectP50Ms: number;
  detectP99Ms: number;
  placementMs: number;
  placementError?: string;
  /** How late the simulator's beat timers fired (p99): its own lag, not the server's. */
  simulatorTimerLateP99Ms: number;
  /** Times a node's beats were sent further apart than its grace (the simulator's fault, not the server's). */
  simulatorGapsOverGrace: number;
  storeRevisionsPerSecond: number;
  serverStalls: number;
}

async function load(
  server: Server,
  n: number,
  o: { seconds: number; stop: number; warmupMs: number; workers: number },
): Promise<LoadResult> {
  const per = Math.ceil(n / o.workers);
  const workers = Array.from({ length: Math.min(o.workers, n) }, (_, w) =>
    nodesWorker({
      addr: server.addr,
      token: server.token,
      prefix: `hollow${w}`,
      count: Math.min(per, n - w * per),
      sockets: 64,
    }),
  );
  try {
    return await measure(server, workers, n, o);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

async function measure(
  server: Server,
  workers: ReturnType<typeof nodesWorker>[],
  n: number,
  o: { seconds: number; stop: number; warmupMs: number },
): Promise<LoadResult> {
  const t0 = performance.now();
  const registered = await Promise.all(
    workers.map((w) => w.ask<{ ok: boolean; error?: string }>({ cmd: 'register' })),
  );
  const failed = registered.find((r) => !r.ok);
  if (failed) throw new Error(`registration failed: ${failed.error}`);
  const registerSeconds = (performance.now() - t0) / 1000;
  // From the first event on: a node taken down while the others register counts too.
  let index = 0;
  await sleep(o.warmupMs);

  const events: ClusterEvent[] = [];
  const poll = async () => {
    const page = await eventsAfter(server.client, index);
    index = page.index;
    events.push(...page.events);
  };
  await poll();
  const warmupDowns = events.filter((e) => e.type === 'node-down').map((e) => e.nodeId!);
  await Promise.all(workers.map((w) => w.ask({ cmd: 'take' })));
  const loadAverage = loadavg()[0] ?? 0;
  const cpu0 = processCpuMs(server.pid);
  const machine0 = machineCpu();
  const rev0 = (await server.client.status()).revision;
  const start = performance.now();

  // Stops spread over the first half of the window; the probe job a quarter in.
  const stoppedAt = new Map<string, number>();
  let probeError: string | undefined;
  const victims = workers
    .flatMap((w) => w.ids.slice(0, Math.ceil(o.stop / workers.length)).map((id) => ({ w, id })))
    .slice(0, o.stop);
  const stops = (async () => {
    for (const [i, v] of victims.entries()) {
      await sleep(
        start + 2000 + (i * (o.seconds * 500 - 2000)) / Math.max(1, victims.length) - performance.now(),
      );
      stoppedAt.set(v.id, (await v.w.ask<{ at: number }>({ cmd: 'stop', id: v.id })).at);
    }
  })();
  const probe = (async () => {
    await sleep(o.seconds * 250);
    return placement(server.client, `probe-${n}`, 10);
  })().catch((err: unknown) => {
    probeError = String(err);
    return NaN;
  });
  while (performance.now() - start < o.seconds * 1000) {
    await sleep(500);
    await poll();
  }
  const elapsed = (performance.now() - start) / 1000;
  const cpu1 = processCpuMs(server.pid);
  const machine1 = machineCpu();
  const rev1 = (await server.client.status()).revision;
  const taken = await Promise.all(
    workers.map((w) => w.ask<HollowStats & { cpuUs: number; intervalMs: number }>({ cmd: 'take' })),
  );
  await stops;
  const placementMs = await probe;
  // The last stops get their grace (and more) to be noticed.
  const deadline = performance.now() + 30_000;
  while (
    performance.now() < deadline &&
    [...stoppedAt.keys()].some((id) => !events.some((e) => e.type === 'node-down' && e.nodeId === id))
  ) {
    await sleep(250);
    await poll();
  }

  const downs = events.filter((e) => e.type === 'node-down');
  const detections = [...stoppedAt].flatMap(([id, at]) => {
    const e = downs.find((d) => d.nodeId === id && d.time >= at);
    return e ? [e.time - at] : [];
  });
  const falseDownNodes = [
    ...new Set([...warmupDowns, ...downs.map((e) => e.nodeId!).filter((id) => !stoppedAt.has(id))]),
  ];
  const beats = taken.reduce((a, t) => a + t.beats, 0);
  const latencies = taken.flatMap((t) => t.latencies);
  const simulatorCpuMs = taken.reduce((a, t) => a + t.cpuUs, 0) / 1000;
  return {
    nodes: n,
    intervalMs: Math.max(...taken.map((t) => t.intervalMs)),
    loadAverage: round(loadAverage, 2),
    registerSeconds: round(registerSeconds),
    beats,
    beatsPerSecond: Math.round(beats / elapsed),
    falseNodeDowns: falseDownNodes.length,
    falseDownNodes: falseDownNodes.slice(0, 20),
    notFoundAnswers: taken.reduce((a, t) => a + t.falseDowns.length, 0),
    errors: taken.reduce((a, t) => a + t.errors, 0),
    ...(taken.find((t) => t.firstError) ? { firstError: taken.find((t) => t.firstError)!.firstError! } : {}),
    serverCpuPercent: round(((cpu1 - cpu0) / (elapsed * 1000)) * 100),
    serverCpuUsPerBeat: round(((cpu1 - cpu0) * 1000) / Math.max(1, beats)),
    // The workers' CPU time since they started (registration included), over the whole run: a rough share.
    simulatorCpuPercent: round((simulatorCpuMs / ((performance.now() - t0) / 1000) / 1000) * 100),
    machineCpuPercent: round(((machine1.busy - machine0.busy) / (machine1.total - machine0.total)) * 100),
    latencyP50Ms: round(pct(latencies, 50), 2),
    latencyP99Ms: round(pct(latencies, 99), 2),
    stopped: stoppedAt.size,
    detected: detections.length,
    detectP50Ms: Math.round(pct(detections, 50)),
    detectP99Ms: Math.round(pct(detections, 99)),
    placementMs: Math.round(placementMs),
    ...(probeError !== undefined ? { placementError: probeError } : {}),
    simulatorTimerLateP99Ms: round(
      pct(
        taken.flatMap((t) => t.timerLateness),
        99,
      ),
    ),
    simulatorGapsOverGrace: taken.reduce((a, t) => a + t.gapsOverGrace.length, 0),
    storeRevisionsPerSecond: round((rev1 - rev0) / elapsed),
    serverStalls: server.stalls(),
  };
}

// --- node loss → replacement running -------------------------------------------------------------

interface ReplacementResult {
  nodes: number;
  stopped: number;
  detectP50Ms: number;
  detectP99Ms: number;
  runningP50Ms: number;
  runningP99Ms: number;
  replaced: number;
}

async function replacement(server: Server, o: { nodes: number; stop: number }): Promise<ReplacementResult> {
  const nodes = new HollowNodes({
    addr: server.addr,
    token: server.token,
    prefix: 'agent',
    count: o.nodes,
    hollowAgent: true,
    resources: { cpu: 4000, memory: 8192, disk: 100_000 },
  });
  try {
    await nodes.register(8);
    const { index } = await eventsAfter(server.client, 0);
    // One instance per node: each takes 3 of a node's 4 cores.
    await placement(server.client, 'replaced', o.stop, 3000);
    const allocs = await waitFor(async () => {
      const l = (await server.client.jobAllocations('replaced')).items;
      return l.every((a) => nodes.runningAt.has(a.id)) ? l : undefined;
    });
    const stoppedAt = new Map<string, { at: number; allocId: string }>();
    for (const a of allocs) {
      stoppedAt.set(a.nodeId, { at: nodes.stop(a.nodeId), allocId: a.id });
      await sleep(400);
    }
    const done = await waitFor(
      async () => {
        const l = (await server.client.jobAllocations('replaced')).items;
        const replacements = l.filter((a) => a.previousAllocId !== undefined && nodes.runningAt.has(a.id));
        return replacements.length >= allocs.length ? replacements : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 50, description: 'every replacement running' },
    );
    const { events } = await eventsAfter(server.client, index);
    const detect: number[] = [];
    const running: number[] = [];
    for (const [nodeId, s] of stoppedAt) {
      const down = events.find((e) => e.type === 'node-down' && e.nodeId === nodeId);
      if (down) detect.push(down.time - s.at);
      const r = done.find((a) => a.previousAllocId === s.allocId);
      if (r) running.push(nodes.runningAt.get(r.id)! - s.at);
    }
    return {
      nodes: o.nodes,
      stopped: stoppedAt.size,
      detectP50Ms: Math.round(pct(detect, 50)),
      detectP99Ms: Math.round(pct(detect, 99)),
      runningP50Ms: Math.round(pct(running, 50)),
      runningP99Ms: Math.round(pct(running, 99)),
      replaced: running.length,
    };
  } finally {
    nodes.close();
  }
}

// --- the report ----------------------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '100,1000,5000,10000' },
      seconds: { type: 'string', default: '30' },
      stop: { type: 'string', default: '20' },
      workers: { type: 'string', default: '2' },
      baseline: { type: 'string' },
      'server-flags': { type: 'string', default: '' },
    },
  });
  const counts = values.nodes.split(',').map(Number);
  const o = { seconds: Number(values.seconds), stop: Number(values.stop), workers: Number(values.workers) };
  const here = resolve(import.meta.dirname, '..');
  interface Config {
    name: string;
    root: string;
    flags: string[];
    counts: number[];
    replacement: boolean;
    remove?: () => void;
  }
  const flags = values['server-flags'].split(' ').filter(Boolean);
  const servers: Config[] = [{ name: 'in memory (this code)', root: here, flags, counts, replacement: true }];
  // Where the default rate limit stretches the interval: the same load at a 1 s interval too.
  const big = counts.filter((n) => n > 5_000);
  if (big.length > 0 && flags.length === 0)
    servers.push({
      name: 'in memory, --heartbeat-max-rate 0 (1 s / 4 s at any size)',
      root: here,
      flags: ['--heartbeat-max-rate', '0'],
      counts: big,
      replacement: false,
    });
  if (values.baseline) {
    const c = checkout(values.baseline);
    servers.push({
      name: `lease per node (${values.baseline})`,
      root: c.root,
      flags: [],
      counts,
      replacement: true,
      remove: c.remove,
    });
  }
  process.stdout.write(
    `heartbeats bench: ${counts.join(', ')} hollow nodes in ${o.workers} worker threads, window ${o.seconds} s, ${o.stop} nodes stopped per window; server in its own process (sqlite)\n`,
  );

  const results: {
    server: string;
    loads: LoadResult[];
    replacement?: ReplacementResult;
    errors: string[];
  }[] = [];
  for (const s of servers) {
    const entry: (typeof results)[number] = { server: s.name, loads: [], errors: [] };
    results.push(entry);
    /** One measurement on a fresh server; a failure is written down and the next one runs. */
    const attempt = async (what: string, run: (server: Server) => Promise<void>) => {
      try {
        const server = await startServer(s.root, s.flags);
        try {
          await run(server);
        } finally {
          await server.stop();
        }
      } catch (err) {
        entry.errors.push(`${what}: ${String(err)}`);
        process.stdout.write(`  ${s.name}, ${what}: ${String(err)}\n`);
      }
    };
    for (const n of s.counts)
      await attempt(`${n} nodes`, async (server) => {
        // A warm-up of a whole grace (8 s at 10 000 nodes), or of the old 10 s lease.
        const r = await load(server, n, { ...o, warmupMs: 10_000 });
        entry.loads.push(r);
        process.stdout.write(
          `  ${s.name}: ${n} nodes done (false downs ${r.falseNodeDowns}, detect p99 ${r.detectP99Ms} ms)\n`,
        );
      });
    if (s.replacement)
      await attempt('replacement', async (server) => {
        entry.replacement = await replacement(server, { nodes: 50, stop: 20 });
      });
    s.remove?.();
  }

  const pad = (v: string | number, w: number) => String(v).padStart(w);
  for (const r of results) {
    process.stdout.write(`\n${r.server}\n`);
    process.stdout.write(
      `${pad('nodes', 6)} ${pad('every', 6)} ${pad('beats/s', 8)} ${pad('false↓', 6)} ${pad('404s', 5)} ${pad('srv cpu', 7)} ${pad('µs/beat', 8)} ${pad('p50 ms', 7)} ${pad('p99 ms', 7)} ${pad('detect p50', 10)} ${pad('p99', 6)} ${pad('found', 6)} ${pad('place ms', 8)} ${pad('rev/s', 6)} ${pad('machine', 7)} ${pad('load', 5)}\n`,
    );
    for (const l of r.loads)
      process.stdout.write(
        `${pad(l.nodes, 6)} ${pad(`${l.intervalMs / 1000}s`, 6)} ${pad(l.beatsPerSecond, 8)} ${pad(l.falseNodeDowns, 6)} ${pad(l.notFoundAnswers, 5)} ${pad(`${l.serverCpuPercent}%`, 7)} ${pad(l.serverCpuUsPerBeat, 8)} ${pad(l.latencyP50Ms, 7)} ${pad(l.latencyP99Ms, 7)} ${pad(l.detectP50Ms, 10)} ${pad(l.detectP99Ms, 6)} ${pad(`${l.detected}/${l.stopped}`, 6)} ${pad(l.placementMs, 8)} ${pad(l.storeRevisionsPerSecond, 6)} ${pad(`${l.machineCpuPercent}%`, 7)} ${pad(l.loadAverage, 5)}\n`,
      );
    const rep = r.replacement;
    if (rep)
      process.stdout.write(
        `node loss → replacement running (${rep.nodes} hollow agents, ${rep.replaced}/${rep.stopped} replaced): detect p50 ${rep.detectP50Ms} ms p99 ${rep.detectP99Ms} ms; running p50 ${rep.runningP50Ms} ms p99 ${rep.runningP99Ms} ms (target ≤ 5000 ms)\n`,
      );
    for (const e of r.errors) process.stdout.write(`error: ${e}\n`);
  }
  process.stdout.write(
    '\nevery: the interval the server gave; false↓: node-down events of nodes that kept beating; 404s: beats answered not_found;\n' +
      'µs/beat: server CPU time over the window / beats; p50/p99: beat latency as the nodes see it; detect: stop → node-down event;\n' +
      'place: submit → 10 instances placed; rev/s: Store revisions written per second; machine: all CPUs busy; load: 1-min load average (other tenants too)\n',
  );

  const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'heartbeats.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        bench: 'heartbeats',
        date: new Date().toISOString(),
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        cpu: cpus()[0]?.model ?? 'unknown',
        cpus: cpus().length,
        windowSeconds: o.seconds,
        stoppedPerWindow: o.stop,
        workers: o.workers,
        results,
      },
      null,
      2,
    )}\n`,
  );
  process.stdout.write(`wrote ${out}\n`);
  // This code must hold: an error or a false node-down fails the run (the baseline may do either).
  const mine = results[0];
  if (
    mine &&
    (mine.errors.length > 0 || mine.loads.some((l) => l.falseNodeDowns > 0 || l.notFoundAnswers > 0))
  )
    process.exitCode = 1;
}

if (!isMainThread) {
  const nodes = new HollowNodes(workerData as HollowNodesOptions);
  parentPort!.on('message', (m: Command) => {
    const reply = (value: unknown) => parentPort!.postMessage(value);
    if (m.cmd === 'register')
      nodes.register(16).then(
        () => reply({ ok: true }),
        (err: unknown) => reply({ ok: false, error: String(err) }),
      );
    else if (m.cmd === 'stop') reply({ at: nodes.stop(m.id) });
    else if (m.cmd === 'take') {
      const cpu = process.threadCpuUsage();
      reply({ ...nodes.take(), cpuUs: cpu.user + cpu.system, intervalMs: nodes.nodes[0]?.intervalMs ?? 0 });
    } else {
      nodes.close();
      reply({ ok: true });
      parentPort!.close();
    }
  });
} else await main();
