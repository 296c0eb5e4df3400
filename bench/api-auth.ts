/**
 * API throughput with authentication off and on: requests per second of a read route
 * (`GET /v1/jobs?namespace=bench`, 5 jobs there) and a write route (`POST /v1/jobs`, a job that
 * changes at each request), with a fixed number of concurrent keep-alive clients. Three modes, each
 * on its own in-process server on `memory:` (so that each gets the same load and the same state):
 *
 *   off         `acl: false`: the baseline, no token asked
 *   management  ACLs on, the bootstrap management token (no policy evaluated)
 *   scoped      ACLs on, a token whose policy grants job:read and job:write in `bench` only (the
 *               realistic path: the token's policies are looked up and evaluated per request)
 *
 * The clients run on a worker thread, so that the server's event loop has its own core (on the
 * server's thread they would take part of its time and hide part of the cost). Runs go round-robin
 * over the modes (their order turning at each run), each on fresh servers, and a run first warms up
 * for half a second. Prints the median of each configuration and its cost against the baseline,
 * and writes bench/results/api-auth.json.
 *
 *   node bench/api-auth.ts                                      # 5 runs of 3 s per configuration (~2 min)
 *   UNUM_BENCH_SECONDS=1 UNUM_BENCH_RUNS=1 node bench/api-auth.ts
 *   UNUM_BENCH_CLIENTS=32 node bench/api-auth.ts                # concurrent clients (default 16)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request, type IncomingMessage } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { UnumClient } from '../src/api/client.ts';
import type { AclPolicy } from '../src/core/acl.ts';
import { aclAuthorizer, makeToken } from '../src/server/acl/tokens.ts';
import { startServer, type RunningServer } from '../src/server/index.ts';
import { withNodeCredentials } from '../src/server/node-credentials.ts';
import { bootstrapped } from '../src/testing/acl.ts';
import { waitFor } from '../src/testing/wait.ts';

type Mode = 'off' | 'management' | 'scoped';
type Route = 'read' | 'write';

interface Load {
  url: string;
  token: string | undefined;
  route: Route;
  clients: number;
  warmupMs: number;
  seconds: number;
  /** Makes the write route's jobs differ from one run to the next. */
  run: number;
}

interface LoadResult {
  requests: number;
  errors: number;
  /** The first unexpected answer, to say what went wrong. */
  firstError?: string;
}

const NAMESPACE = 'bench';
const target = 10; // % of the baseline's throughput that authentication may cost

const job = (id: string, args: string[]) => ({
  job: id,
  namespace: NAMESPACE,
  groups: [
    {
      name: 'g',
      count: 1,
      tasks: [{ name: 't', command: 'sleep', args, resources: { cpu: 10, memory: 16 } }],
    },
  ],
});

// --- the clients (worker thread) ----------------------------------------------------------------

async function load(o: Load): Promise<LoadResult> {
  const { hostname, port } = new URL(o.url);
  const agent = new Agent({ keepAlive: true, maxSockets: o.clients });
  const headers: Record<string, string> = {};
  if (o.token !== undefined) headers['authorization'] = `Bearer ${o.token}`;
  if (o.route === 'write') headers['content-type'] = 'application/json';
  // The namespace is in the query for both: the server authorizes it before it reads a body.
  const path = `/v1/jobs?namespace=${NAMESPACE}`;
  const method = o.route === 'read' ? 'GET' : 'POST';
  const once = (n: number): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const body =
        o.route === 'write' ? JSON.stringify({ job: job(`w-${n % 8}`, [`${o.run}.${n}`]) }) : undefined;
      const req = request({ agent, hostname, port, method, path, headers }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (text.length < 300) text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  const start = performance.now();
  // Tells the server's thread when to start counting its CPU time.
  setTimeout(() => parentPort?.postMessage('measuring'), o.warmupMs);
  const measureFrom = start + o.warmupMs;
  const end = measureFrom + o.seconds * 1000;
  let n = 0;
  const result: LoadResult = { requests: 0, errors: 0 };
  const client = async (): Promise<void> => {
    while (performance.now() < end) {
      const answer = await once(n++).catch((err: unknown) => ({ status: 0, body: String(err) }));
      if (performance.now() < measureFrom) continue;
      if (answer.status === 200) result.requests++;
      else {
        result.errors++;
        result.firstError ??= `${answer.status} ${answer.body}`;
      }
    }
  };
  await Promise.all(Array.from({ length: o.clients }, client));
  agent.destroy();
  return result;
}

if (!isMainThread) {
  parentPort?.postMessage(await load(workerData as Load));
} else {
  await main();
}

// --- the servers and the report (main thread) ----------------------------------------------------

/** The clients' result, and the CPU time this (the server's) thread spent while they measured, in µs. */
function inWorker(o: Load): Promise<LoadResult & { serverCpuUs: number }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(fileURLToPath(import.meta.url), { workerData: o });
    let from = process.threadCpuUsage();
    worker.on('message', (m: LoadResult | 'measuring') => {
      if (m === 'measuring') {
        from = process.threadCpuUsage();
        return;
      }
      const used = process.threadCpuUsage(from);
      resolve({ ...m, serverCpuUs: used.user + used.system });
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (code !== 0) reject(new Error(`the load worker exited with ${code}`));
    });
  });
}

interface Started {
  server: RunningServer;
  token: string | undefined;
  stop(): Promise<void>;
}

/** A fresh server for one mode, with the read route's 5 jobs in place. */
async function serverFor(mode: Mode): Promise<Started> {
  const dataDir = mkdtempSync(join(tmpdir(), 'unum-bench-auth-'));
  const server = await startServer({
    dataDir,
    addr: '127.0.0.1:0',
    store: 'memory:',
    acl: mode !== 'off',
  });
  let admin: UnumClient;
  let token: string | undefined;
  if (mode === 'off') {
    admin = new UnumClient({ addr: server.addr, token: () => undefined });
    await waitFor(async () => (await admin.status()).leader, { description: 'the server to lead' });
  } else {
    const boot = await bootstrapped(server.addr);
    admin = boot.client;
    token = boot.token;
    if (mode === 'scoped') {
      await admin.applyAclPolicy(NAMESPACE, {
        rules: [{ namespace: NAMESPACE, capabilities: ['job:read', 'job:write'] }],
      });
      token = (await admin.createAclToken({ name: 'bench', policies: [NAMESPACE] })).secret;
    }
  }
  for (let i = 0; i < 5; i++) await admin.submitJob(job(`r-${i}`, ['300']));
  return {
    server,
    token,
    async stop() {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The door alone, as the server composes it (node credentials, then ACL tokens), over an in-memory
 * view: µs per authenticate + authorize of a scoped token. Hardly moved by a noisy machine, it says
 * how much of a request's time authentication can take at most.
 */
async function doorMicroseconds(): Promise<number> {
  const { stored, secret } = makeToken({ name: 'bench', policies: [NAMESPACE], management: false }, 0);
  const policy: AclPolicy = {
    name: NAMESPACE,
    rules: [{ namespace: NAMESPACE, capabilities: ['job:read', 'job:write'] }],
    createdAt: 0,
    modifiedAt: 0,
  };
  const door = withNodeCredentials(
    aclAuthorizer(
      {
        aclTokenOfSecret: (hash) => (hash === stored.secretHash ? stored : undefined),
        aclToken: (accessor) => (accessor === stored.accessor ? stored : undefined),
        aclPolicy: (name) => (name === NAMESPACE ? policy : undefined),
      },
      () => 1,
    ),
    () => undefined,
    () => undefined,
  );
  const req = { headers: { authorization: `Bearer ${secret}` } } as IncomingMessage;
  const times: number[] = [];
  for (let round = 0; round < 5; round++) {
    const n = 100_000;
    const t = performance.now();
    for (let i = 0; i < n; i++) await door.authorize(await door.authenticate(req), 'job:read', NAMESPACE);
    times.push(((performance.now() - t) / n) * 1000);
  }
  return median(times);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function main(): Promise<void> {
  const seconds = Number(process.env['UNUM_BENCH_SECONDS'] ?? 3);
  const runs = Number(process.env['UNUM_BENCH_RUNS'] ?? 5);
  const clients = Number(process.env['UNUM_BENCH_CLIENTS'] ?? 16);
  const warmupMs = 500;
  // UNUM_BENCH_MODES=scoped UNUM_BENCH_ROUTES=read: one configuration only (for a profile); 'off' stays, as the baseline.
  const pick = <T extends string>(name: string, all: T[]): T[] => {
    const wanted = process.env[name]?.split(',');
    return wanted ? all.filter((x) => x === 'off' || wanted.includes(x)) : all;
  };
  const modes = pick<Mode>('UNUM_BENCH_MODES', ['off', 'management', 'scoped']);
  const routes = pick<Route>('UNUM_BENCH_ROUTES', ['read', 'write']);
  process.stdout.write(
    `api-auth bench: ${clients} keep-alive clients on a worker thread, ${runs} run(s) x ${seconds} s per configuration, modes round-robin, fresh memory: servers per run\n`,
  );

  const all: {
    run: number;
    mode: Mode;
    route: Route;
    requests: number;
    errors: number;
    perSecond: number;
    /** CPU time of the server's thread per request (the scheduler's work for writes included). */
    serverCpuUsPerRequest: number;
  }[] = [];
  for (let run = 0; run < runs; run++) {
    for (const route of routes) {
      // The order of the modes turns at each run, so that none always follows the same one.
      const order = modes.map((_, i) => modes[(i + run) % modes.length]!);
      for (const mode of order) {
        const s = await serverFor(mode);
        try {
          const r = await inWorker({
            url: s.server.addr,
            token: s.token,
            route,
            clients,
            warmupMs,
            seconds,
            run,
          });
          if (r.errors > 0)
            throw new Error(`${mode} ${route}: ${r.errors} requests failed, the first: ${r.firstError}`);
          all.push({
            run,
            mode,
            route,
            requests: r.requests,
            errors: r.errors,
            perSecond: r.requests / seconds,
            serverCpuUsPerRequest: r.serverCpuUs / r.requests,
          });
        } finally {
          await s.stop();
        }
      }
    }
    process.stdout.write(`  run ${run + 1}/${runs} done\n`);
  }

  const summary = routes.flatMap((route) => {
    const of = (mode: Mode) => all.filter((r) => r.route === route && r.mode === mode);
    const rate = (mode: Mode): number[] => of(mode).map((r) => r.perSecond);
    const cpu = (mode: Mode): number => median(of(mode).map((r) => r.serverCpuUsPerRequest));
    const baseline = rate('off');
    return modes.map((mode) => {
      const rates = rate(mode);
      const med = median(rates);
      // Each run's cost against the baseline of the same run (measured seconds apart): steadier on a
      // shared machine, whose speed drifts over minutes, than the ratio of the medians.
      const paired = rates.map((r, i) => ((baseline[i]! - r) / baseline[i]!) * 100);
      return {
        route,
        mode,
        medianPerSecond: Math.round(med),
        minPerSecond: Math.round(Math.min(...rates)),
        maxPerSecond: Math.round(Math.max(...rates)),
        costPercent: Number((((median(baseline) - med) / median(baseline)) * 100).toFixed(1)),
        pairedCostPercent: Number(median(paired).toFixed(1)),
        serverCpuUsPerRequest: Number(cpu(mode).toFixed(1)),
        cpuCostPercent: Number((((cpu(mode) - cpu('off')) / cpu('off')) * 100).toFixed(1)),
      };
    });
  });

  const door = await doorMicroseconds();
  const pad = (text: string | number, width: number): string => String(text).padStart(width);
  process.stdout.write(
    `\n${pad('route', 5)} ${pad('mode', 10)} ${pad('median req/s', 12)} ${pad('min', 7)} ${pad('max', 7)} ${pad('cost', 7)} ${pad('paired', 7)} ${pad('cpu µs/req', 10)} ${pad('cpu cost', 8)}  target <= ${target}%\n`,
  );
  for (const row of summary) {
    const base = row.mode === 'off';
    const verdict = base ? '' : row.cpuCostPercent <= target ? 'ok' : 'over';
    const pct = (v: number): string => (base ? '' : `${v}%`);
    process.stdout.write(
      `${pad(row.route, 5)} ${pad(row.mode, 10)} ${pad(row.medianPerSecond, 12)} ${pad(row.minPerSecond, 7)} ${pad(row.maxPerSecond, 7)} ${pad(base ? 'base' : pct(row.costPercent), 7)} ${pad(pct(row.pairedCostPercent), 7)} ${pad(row.serverCpuUsPerRequest, 10)} ${pad(base ? 'base' : pct(row.cpuCostPercent), 8)}  ${verdict}\n`,
    );
  }
  const baseRead = summary.find((r) => r.route === 'read' && r.mode === 'off')!.serverCpuUsPerRequest;
  process.stdout.write(
    `\nthe door alone (authenticate + authorize, scoped token): ${door.toFixed(2)} µs per request, ${((door / baseRead) * 100).toFixed(1)}% of a read's server CPU time without authentication\n`,
  );
  process.stdout.write(
    `cost: 1 - median(mode) / median(off) of req/s; paired: the median over the runs of 1 - mode / off of the same run;\n` +
      `cpu cost: the server thread's CPU time per request against off's (steadier than req/s on a shared machine: the verdict)\n`,
  );

  const out = join(dirname(fileURLToPath(import.meta.url)), 'results', 'api-auth.json');
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        bench: 'api-auth',
        date: new Date().toISOString(),
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        cpu: cpus()[0]?.model ?? 'unknown',
        cpus: cpus().length,
        clients,
        secondsPerRun: seconds,
        warmupMs,
        runsPerConfiguration: runs,
        routes: {
          read: `GET /v1/jobs?namespace=${NAMESPACE} (5 jobs)`,
          write: `POST /v1/jobs?namespace=${NAMESPACE} (one of 8 jobs, changed at each request)`,
        },
        modes: {
          off: 'acl: false',
          management: 'ACLs on, the management token',
          scoped: `ACLs on, a token with a policy granting job:read and job:write in "${NAMESPACE}"`,
        },
        order: 'round-robin over the modes, their order turning at each run; fresh memory: servers per run',
        targetCostPercent: target,
        summary,
        doorMicrosecondsPerRequest: Number(door.toFixed(2)),
        runs: all,
      },
      null,
      2,
    )}\n`,
  );
  process.stdout.write(`\nwrote ${out}\n`);
}
