/**
 * The Store on etcd against the raw etcd client, same run, same members: single-key `put` and `get`
 * throughput (ops/s) and latency p50/p99 with 1 and 64 concurrent clients, for
 *
 * - raw: etcd's KV.Put / KV.Range called straight through @grpc/grpc-js, with the service
 *   definitions the backend loads (src/store/etcd/proto.ts) and the very request messages the Store
 *   sends (a put asks for `prev_kv`, as the Store's put returns the previous value), on one channel
 *   shared by the clients, as the Store has; no deadline, no metadata, no validation;
 * - store: `createStore('etcd://…')`, `store.put(key, value)` / `store.get(key)`, one store shared by
 *   the clients;
 * - raw, a channel per client (one TCP connection each), where there is more than one client: does
 *   one shared HTTP/2 connection hold the raw client back?
 *
 * The target is unum's overhead, 1 − store/raw, at most 20 % of the raw throughput. Each client
 * awaits its call before the next and cycles over keys of its own (1 000 keys in all, 100-byte
 * values). Each case warms every variant up (2 s), then runs them interleaved (raw, store, raw,
 * store: `--rounds 2`) so that machine noise falls on both; a case's figures pool its rounds.
 *
 * etcd runs through src/testing/etcd.ts, with its data on the normal disk (UNUM_BENCH_DIR, default
 * the temp dir), not in /dev/shm as the tests have it: a put costs etcd an fsync, as in production.
 * The helper always starts members in /dev/shm; the bench stops them, moves their data to the disk
 * (a symlink in place of each data directory) and starts them again.
 *
 *   node bench/etcd-store.ts                                  # 1 member, 1 and 64 clients, 10 s per run (~4 min)
 *   node bench/etcd-store.ts --members 1,3                    # also on a 3-member cluster (~8 min)
 *   node bench/etcd-store.ts --seconds 2 --warmup 1           # a quick look
 *   node bench/etcd-store.ts --clients 1,16,64 --rounds 3
 *
 * Prints a table and writes bench/results/etcd-store.json. Without etcd (`apt-get install
 * etcd-server`) it prints `skipped: …` and exits 0.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { etcdServices } from '../src/store/etcd/proto.ts';
import { createStore, type Store } from '../src/store/index.ts';
import { type EtcdCluster, startEtcd } from '../src/testing/etcd.ts';
import { findTool } from '../src/testing/tools.ts';

const { values: args } = parseArgs({
  options: {
    members: { type: 'string', default: '1' },
    clients: { type: 'string', default: '1,64' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '2' },
    keys: { type: 'string', default: '1000' },
    'value-bytes': { type: 'string', default: '100' },
  },
});
const list = (s: string): number[] => s.split(',').map((x) => Number(x.trim()));
const MEMBERS = list(args.members);
const CLIENTS = list(args.clients);
const SECONDS = Number(args.seconds);
const WARMUP = Number(args.warmup);
const ROUNDS = Number(args.rounds);
const KEYS = Number(args.keys);
const VALUE_BYTES = Number(args['value-bytes']);
const TARGET_OVERHEAD = 20;
const baseDir = process.env['UNUM_BENCH_DIR'] ?? tmpdir();
const root = resolve(import.meta.dirname, '..');

/** Measured earlier on the same kind of VM, the `etcd3` npm client against one Debian etcd member. */
const ETCD3_REFERENCE = {
  client: 'etcd3 (npm)',
  members: 1,
  put: { clients1: 1700, clients64: 6800 },
  get: { clients1: 2700, clients64: 7000 },
};

type Operation = 'put' | 'get';
type Variant = 'raw' | 'store' | 'rawChannelPerClient';

/** One call on key number `i`; resolves when the answer is back (and checked). */
type Call = (i: number) => Promise<void>;

interface Run {
  variant: Variant;
  round: number;
  ops: number;
  seconds: number;
  opsPerSecond: number;
  cpuUsPerOp: number;
}

interface Figures {
  ops: number;
  seconds: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** This process's CPU time (user + system) per call: the client's cost, whatever etcd does. */
  cpuUsPerOp: number;
}

interface CaseResult {
  members: number;
  /** Whether the member both clients talk to (the first) was the raft leader. */
  toLeader: boolean;
  operation: Operation;
  clients: number;
  raw: Figures;
  store: Figures;
  rawChannelPerClient?: Figures;
  overheadPercent: number;
  /** The machine's load average as the case ended (1, 5, 15 minutes): other work shows here. */
  loadAverage: number[];
  runs: Run[];
}

const pct = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;

const keyName = (i: number): string => `bench/key-${String(i).padStart(5, '0')}`;
const value = 'v'.repeat(VALUE_BYTES);

// ---- the raw client ------------------------------------------------------------------------------

type Unary = (
  request: unknown,
  callback: (err: grpc.ServiceError | null, response?: unknown) => void,
) => grpc.ClientUnaryCall;
type KvClient = grpc.Client & { Put: Unary; Range: Unary };

/**
 * A KV client on a channel of its own: a local subchannel pool, so that it has its own TCP
 * connection (grpc-js otherwise shares one between channels with the same target and options).
 */
function rawKv(endpoint: string): KvClient {
  const channel = new grpc.Channel(endpoint, grpc.credentials.createInsecure(), {
    'grpc.use_local_subchannel_pool': 1,
  });
  const { KV } = etcdServices();
  return new KV(endpoint, grpc.credentials.createInsecure(), {
    channelOverride: channel,
  }) as unknown as KvClient;
}

function unary(method: Unary, client: KvClient, request: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    method.call(client, request, (err, response) => (err === null ? resolve(response) : reject(err)));
  });
}

const keyBytes = Array.from({ length: KEYS }, (_, i) => Buffer.from(keyName(i)));
const valueBytes = Buffer.from(value);

/** The messages the Store sends for put(key, value) and get(key) (etcd-store.ts), prebuilt bytes. */
function rawCall(kv: KvClient, operation: Operation): Call {
  if (operation === 'put') {
    return async (i) => {
      await unary(kv.Put, kv, { key: keyBytes[i], value: valueBytes, lease: '0', prev_kv: true });
    };
  }
  return async (i) => {
    const response = (await unary(kv.Range, kv, {
      key: keyBytes[i],
      limit: '0',
      count_only: false,
      revision: '0',
    })) as { kvs: unknown[] };
    if (response.kvs.length !== 1) throw new Error(`raw get ${keyName(i)}: ${response.kvs.length} keys`);
  };
}

function storeCall(store: Store, operation: Operation): Call {
  const keys = Array.from({ length: KEYS }, (_, i) => keyName(i));
  if (operation === 'put') {
    return async (i) => {
      await store.put(keys[i]!, value);
    };
  }
  return async (i) => {
    if ((await store.get(keys[i]!)) === undefined) throw new Error(`store get ${keys[i]!}: not found`);
  };
}

// ---- a run -------------------------------------------------------------------------------------

/**
 * `calls.length` clients for `ms` milliseconds, client c on keys c, c + clients, c + 2 × clients, …
 * and round again; each call awaited before the next. Latencies in ms.
 */
interface Measured {
  ops: number;
  seconds: number;
  cpuUs: number;
  latencies: number[];
}

async function drive(calls: Call[], ms: number): Promise<Measured> {
  const latencies: number[] = [];
  const cpu = process.cpuUsage();
  const clients = calls.length;
  const started = performance.now();
  const deadline = started + ms;
  await Promise.all(
    calls.map(async (call, c) => {
      let i = c;
      while (performance.now() < deadline) {
        const t0 = performance.now();
        await call(i);
        latencies.push(performance.now() - t0);
        i += clients;
        if (i >= KEYS) i = c;
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  return {
    ops: latencies.length,
    seconds: (performance.now() - started) / 1000,
    cpuUs: used.user + used.system,
    latencies,
  };
}

function figures(runs: Measured[]): Figures {
  const ops = runs.reduce((s, r) => s + r.ops, 0);
  const seconds = runs.reduce((s, r) => s + r.seconds, 0);
  const sorted = runs.flatMap((r) => r.latencies).sort((a, b) => a - b);
  return {
    ops,
    seconds: Number(seconds.toFixed(3)),
    opsPerSecond: Math.round(ops / seconds),
    p50Ms: Number(pct(sorted, 50).toFixed(3)),
    p99Ms: Number(pct(sorted, 99).toFixed(3)),
    cpuUsPerOp: Number((runs.reduce((s, r) => s + r.cpuUs, 0) / ops).toFixed(1)),
  };
}

// ---- etcd on the disk --------------------------------------------------------------------------

const diskDirs = new Set<string>();
process.on('exit', () => {
  for (const dir of diskDirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * A cluster whose members keep their data on the disk under `baseDir`: started by the helper (data
 * in /dev/shm), stopped, each data directory moved to the disk and replaced by a symlink, started
 * again on it. Returns the disk directories (removed by `dispose`).
 */
async function startOnDisk(members: number): Promise<{ cluster: EtcdCluster; dispose(): Promise<void> }> {
  const cluster = await startEtcd({ members });
  const dirs: string[] = [];
  try {
    await Promise.all(cluster.members.map((m) => m.kill()));
    for (const member of cluster.members) {
      const dir = mkdtempSync(join(baseDir, `unum-bench-etcd-${member.name}-`));
      diskDirs.add(dir);
      dirs.push(dir);
      cpSync(member.dataDir, dir, { recursive: true });
      rmSync(member.dataDir, { recursive: true, force: true });
      symlinkSync(dir, member.dataDir);
    }
    await Promise.all(cluster.members.map((m) => m.start()));
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return {
    cluster,
    async dispose() {
      await cluster.stop();
      for (const dir of dirs) {
        rmSync(dir, { recursive: true, force: true });
        diskDirs.delete(dir);
      }
    },
  };
}

/** Whether the member the clients talk to (the first) is the raft leader. */
async function isLeader(endpoint: string): Promise<boolean> {
  const response = await fetch(`http://${endpoint}/v3/maintenance/status`, { method: 'POST', body: '{}' });
  const status = (await response.json()) as { header?: { member_id?: string }; leader?: string };
  return status.leader !== undefined && status.leader === status.header?.member_id;
}

// ---- the cases ---------------------------------------------------------------------------------

async function benchCluster(members: number): Promise<CaseResult[]> {
  const { cluster, dispose } = await startOnDisk(members);
  const endpoint = cluster.endpoints[0]!;
  const leader = await isLeader(endpoint);
  process.stdout.write(
    `\n${members} member(s), clients talk to ${endpoint} (${leader ? 'the leader' : 'a follower'}), data under ${baseDir}\n`,
  );
  // The Store's URL names every member; its calls go to the first one, like the raw client's.
  const store = await createStore(cluster.url);
  const shared = rawKv(endpoint);
  const perClient: KvClient[] = [];
  const results: CaseResult[] = [];
  try {
    // Every key exists before the first get (the put cases write them too, but maybe not all).
    const load = rawCall(shared, 'put');
    for (let i = 0; i < KEYS; i++) await load(i);
    for (const operation of ['put', 'get'] as const) {
      for (const clients of CLIENTS) {
        while (perClient.length < clients) perClient.push(rawKv(endpoint));
        const variants: Array<{ variant: Variant; calls: Call[] }> = [
          { variant: 'raw', calls: Array.from({ length: clients }, () => rawCall(shared, operation)) },
          { variant: 'store', calls: Array.from({ length: clients }, () => storeCall(store, operation)) },
        ];
        if (clients > 1) {
          variants.push({
            variant: 'rawChannelPerClient',
            calls: perClient.slice(0, clients).map((kv) => rawCall(kv, operation)),
          });
        }
        for (const { calls } of variants) await drive(calls, WARMUP * 1000);
        const measured = new Map<Variant, Measured[]>();
        const runs: Run[] = [];
        for (let round = 1; round <= ROUNDS; round++) {
          for (const { variant, calls } of variants) {
            const run = await drive(calls, SECONDS * 1000);
            measured.set(variant, [...(measured.get(variant) ?? []), run]);
            runs.push({
              variant,
              round,
              ops: run.ops,
              seconds: Number(run.seconds.toFixed(3)),
              opsPerSecond: Math.round(run.ops / run.seconds),
              cpuUsPerOp: Number((run.cpuUs / run.ops).toFixed(1)),
            });
          }
        }
        const raw = figures(measured.get('raw')!);
        const storeFigures = figures(measured.get('store')!);
        const channels = measured.get('rawChannelPerClient');
        const result: CaseResult = {
          members,
          toLeader: leader,
          operation,
          clients,
          raw,
          store: storeFigures,
          ...(channels === undefined ? {} : { rawChannelPerClient: figures(channels) }),
          overheadPercent: Number((100 * (1 - storeFigures.opsPerSecond / raw.opsPerSecond)).toFixed(1)),
          loadAverage: loadavg().map((x) => Number(x.toFixed(2))),
          runs,
        };
        results.push(result);
        process.stdout.write(
          `  ${operation} x${clients}: raw ${raw.opsPerSecond}/s, store ${storeFigures.opsPerSecond}/s, overhead ${result.overheadPercent} %, load ${result.loadAverage[0]}` +
            ` (runs: ${runs.map((r) => `${r.variant} ${r.opsPerSecond}`).join(', ')})\n`,
        );
      }
    }
  } finally {
    await store.close();
    shared.close();
    for (const kv of perClient) kv.close();
    await dispose();
  }
  return results;
}

async function main(): Promise<void> {
  const etcd = findTool('etcd');
  if (etcd === undefined) {
    console.log('skipped: etcd (etcd-server) is not installed: apt-get install etcd-server');
    return;
  }
  const etcdVersion = /etcd Version: (\S+)/.exec(
    execFileSync(etcd, ['--version'], { encoding: 'utf8' }),
  )?.[1];
  const loadBefore = loadavg().map((x) => Number(x.toFixed(2)));
  process.stdout.write(
    `etcd-store bench: the Store on etcd ${etcdVersion ?? '?'} vs raw gRPC calls, put and get, ${CLIENTS.join(' and ')} client(s), ` +
      `${ROUNDS} round(s) of ${SECONDS} s per variant after ${WARMUP} s of warm-up, ${KEYS} keys, ${VALUE_BYTES}-byte values; ` +
      `load average ${loadBefore.join(' ')}\n`,
  );
  const results: CaseResult[] = [];
  for (const members of MEMBERS) results.push(...(await benchCluster(members)));
  const loadAfter = loadavg().map((x) => Number(x.toFixed(2)));

  const pad = (text: string | number, width: number): string => String(text).padStart(width);
  const ms = (f: Figures): string => `${f.p50Ms.toFixed(2)}/${f.p99Ms.toFixed(2)}`;
  process.stdout.write(
    `\n${'case'.padEnd(22)} ${pad('raw ops/s', 9)} ${pad('store ops/s', 11)} ${pad('overhead', 8)} ${pad('raw p50/p99 ms', 15)} ${pad('store p50/p99 ms', 16)} ${pad('client µs/op raw/store', 22)}  target ≤ ${TARGET_OVERHEAD} %\n`,
  );
  for (const r of results) {
    const name = `${r.operation}, ${r.clients} client${r.clients === 1 ? '' : 's'}, ${r.members}m`;
    process.stdout.write(
      `${name.padEnd(22)} ${pad(r.raw.opsPerSecond, 9)} ${pad(r.store.opsPerSecond, 11)} ${pad(`${r.overheadPercent} %`, 8)} ${pad(ms(r.raw), 15)} ${pad(ms(r.store), 16)} ${pad(`${r.raw.cpuUsPerOp.toFixed(0)}/${r.store.cpuUsPerOp.toFixed(0)}`, 22)}  ${r.overheadPercent <= TARGET_OVERHEAD ? 'ok' : 'over'}\n`,
    );
  }
  const withChannels = results.filter((r) => r.rawChannelPerClient !== undefined);
  if (withChannels.length > 0) {
    process.stdout.write(`\nraw, one shared channel vs a channel (TCP connection) per client:\n`);
    for (const r of withChannels) {
      const c = r.rawChannelPerClient!;
      process.stdout.write(
        `  ${r.operation}, ${r.clients} clients, ${r.members}m: shared ${r.raw.opsPerSecond}/s (${ms(r.raw)} ms, ${r.raw.cpuUsPerOp.toFixed(0)} µs/op), per client ${c.opsPerSecond}/s (${ms(c)} ms, ${c.cpuUsPerOp.toFixed(0)} µs/op)\n`,
      );
    }
  }
  process.stdout.write(
    `\nreference (another client, measured earlier on this kind of VM, 1 member): etcd3 npm put ${ETCD3_REFERENCE.put.clients1}/s x1, ${ETCD3_REFERENCE.put.clients64}/s x64; get ${ETCD3_REFERENCE.get.clients1}/s x1, ${ETCD3_REFERENCE.get.clients64}/s x64\n`,
  );
  process.stdout.write(`load average before ${loadBefore.join(' ')}, after ${loadAfter.join(' ')}\n`);

  const out = join(root, 'bench', 'results', 'etcd-store.json');
  mkdirSync(join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        bench: 'etcd-store',
        date: new Date().toISOString(),
        node: process.version,
        platform: `${process.platform}-${process.arch}`,
        cpu: cpus()[0]?.model ?? 'unknown',
        cpus: cpus().length,
        etcd: etcdVersion ?? 'unknown',
        members: MEMBERS,
        dataDirectory: baseDir,
        loadAverageBefore: loadBefore,
        loadAverageAfter: loadAfter,
        secondsPerRun: SECONDS,
        warmupSeconds: WARMUP,
        rounds: ROUNDS,
        keys: KEYS,
        valueBytes: VALUE_BYTES,
        operations: {
          put: 'KV.Put { key, value, prev_kv: true } / store.put(key, value)',
          get: 'KV.Range { key } / store.get(key)',
        },
        order:
          'per case: warm-up of each variant, then rounds of raw, store (, raw with a channel per client)',
        targetOverheadPercent: TARGET_OVERHEAD,
        reference: ETCD3_REFERENCE,
        cases: results,
      },
      null,
      2,
    )}\n`,
  );
  process.stdout.write(`wrote ${out}\n`);
}

await main();
