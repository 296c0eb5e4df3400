/**
 * Fixtures of the CLI's verb tests: a scripted fake of the HTTP API that answers blocking queries
 * from a list of snapshots (one step per query, so tests never wait on time), object factories,
 * and `unum()` that runs the CLI in-process against the fake.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JobDetail, Listed } from '../api/types.ts';
import { parseJobSpec } from '../core/job-spec.ts';
import type { Allocation, ClusterEvent, Job, Node, PlacementFailure, TaskState } from '../core/types.ts';
import { main } from './main.ts';

// --- a fake API ----------------------------------------------------------------------------------

export interface Request {
  method: string;
  path: string;
  query: URLSearchParams;
  body: unknown;
}
export type Reply = unknown | { httpStatus: number; body: unknown } | { chunks: string[] };
export type Handler = (req: Request, params: Record<string, string>) => Reply | Promise<Reply>;

export interface FakeApi {
  addr: string;
  requests: Request[];
  close(): Promise<void>;
}

export async function fakeApi(routes: Record<string, Handler>): Promise<FakeApi> {
  const requests: Request[] = [];
  const table = Object.entries(routes).map(([key, handler]) => {
    const [method, pattern] = key.split(' ') as [string, string];
    const names: string[] = [];
    const re = new RegExp(
      `^${pattern.replace(/:(\w+)/g, (_, n: string) => {
        names.push(n);
        return '([^/]+)';
      })}$`,
    );
    return { method, re, names, handler };
  });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let text = '';
    req.on('data', (c: Buffer) => (text += c.toString()));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const request: Request = {
        method: req.method ?? 'GET',
        path: url.pathname,
        query: url.searchParams,
        body: text ? JSON.parse(text) : undefined,
      };
      requests.push(request);
      const route = table.find((r) => r.method === request.method && r.re.test(request.path));
      if (!route) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ error: { code: 'not_found', message: `no route ${req.method} ${url.pathname}` } }),
        );
        return;
      }
      const m = route.re.exec(request.path)!;
      const params = Object.fromEntries(route.names.map((n, i) => [n, decodeURIComponent(m[i + 1] ?? '')]));
      void Promise.resolve(route.handler(request, params)).then((reply) => {
        if (reply && typeof reply === 'object' && 'chunks' in reply) {
          res.writeHead(200, { 'content-type': 'text/plain' });
          for (const c of (reply as { chunks: string[] }).chunks) res.write(c);
          res.end();
          return;
        }
        const error = reply && typeof reply === 'object' && 'httpStatus' in reply;
        const status = error ? (reply as { httpStatus: number }).httpStatus : 200;
        const body = error ? (reply as unknown as { body: unknown }).body : reply;
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    addr: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

export function notFound(message: string) {
  return { httpStatus: 404, body: { error: { code: 'not_found', message } } };
}

/** Answers a blocking query from a list of snapshots: query index i gets snapshot i (the last repeats). */
export function steps<T>(snapshots: T[][]): Handler {
  return (req) => {
    const i = Number(req.query.get('index') ?? 0);
    const items = snapshots[Math.min(i, snapshots.length - 1)] ?? [];
    return { items, index: i + 1 } satisfies Listed<T>;
  };
}

// --- fixtures ------------------------------------------------------------------------------------

export function mkJob(
  over: { id?: string; type?: 'service' | 'batch'; count?: number; version?: number; tasks?: string[] } = {},
): Job {
  const id = over.id ?? 'web';
  const spec = parseJobSpec({
    job: id,
    type: over.type ?? 'service',
    groups: [
      {
        name: 'web',
        count: over.count ?? 2,
        network: { ports: ['http'] },
        tasks: (over.tasks ?? ['server']).map((name) => ({ name, command: 'python3' })),
      },
    ],
  });
  return {
    id,
    namespace: 'default',
    version: over.version ?? 0,
    stop: false,
    status: 'running',
    submittedAt: NOW - 60_000,
    spec,
  };
}

export const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
export const NODE: Node = {
  id: 'n0de0001-aaaa-4000-8000-000000000000',
  name: 'vm1',
  address: 'http://127.0.0.1:8687',
  status: 'ready',
  eligibility: 'eligible',
  drain: false,
  resources: { cpu: 4000, memory: 8192, disk: 10_000 },
  reserved: { cpu: 0, memory: 0 },
  attributes: {},
  drivers: {},
  portRange: { min: 20000, max: 32000 },
  registeredAt: 0,
  lastHeartbeat: 0,
};

export function mkAlloc(job: Job, index: number, over: Partial<Allocation> = {}): Allocation {
  const group = job.spec.groups[0]!;
  return {
    id: `${String(index).repeat(8)}-0000-4000-8000-${job.id.padEnd(12, '0').slice(0, 12)}`,
    namespace: job.namespace,
    jobId: job.id,
    jobVersion: job.version,
    jobType: job.spec.type,
    name: `${job.id}.${group.name}[${index}]`,
    group: group.name,
    index,
    nodeId: NODE.id,
    groupSpec: group,
    resources: { cpu: 100, memory: 256, disk: 1024, ports: [{ name: 'http', value: 23000 + index }] },
    desiredStatus: 'run',
    clientStatus: 'running',
    taskStates: {},
    evalId: 'eval-1',
    rescheduleEvents: [],
    createdAt: NOW - 30_000,
    modifiedAt: NOW - 30_000,
    ...over,
  };
}

export function task(over: Partial<TaskState> = {}): TaskState {
  return { state: 'running', failed: false, restarts: 0, pid: 4242, events: [], ...over };
}

export function detail(job: Job, placementFailures: Record<string, PlacementFailure> = {}): JobDetail {
  return {
    job,
    summary: { desired: 2, pending: 0, running: 2, complete: 0, failed: 0, lost: 0 },
    placementFailures,
  };
}

export async function unum(api: FakeApi, argv: string[], signal?: AbortSignal) {
  let stdout = '';
  let stderr = '';
  const code = await main(['--addr', api.addr, ...argv], {
    stdout: { write: (t) => void (stdout += t), isTTY: false },
    stderr: { write: (t) => void (stderr += t), isTTY: false },
    env: {},
    now: () => NOW,
    signal: signal ?? new AbortController().signal,
  });
  return { code, stdout, stderr };
}

// --- run -----------------------------------------------------------------------------------------

export function event(index: number, over: Partial<ClusterEvent> = {}): ClusterEvent {
  return {
    index,
    time: NOW - 1000,
    topic: 'allocation',
    type: 'alloc-placed',
    allocId: '3f9a1c2e-0000-4000-8000-000000000000',
    message: `event ${index}`,
    ...over,
  };
}

export function clock(ms: number): string {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}
