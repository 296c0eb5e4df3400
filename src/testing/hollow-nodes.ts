/**
 * Hollow nodes: many fake nodes in one process, each doing over the real HTTP API what an agent does
 * to stay in the cluster — register (and keep the credential it is given), heartbeat at the
 * interval the server answers with the agent's own jitter (src/agent/heartbeat-schedule.ts), and
 * register again when told `not_found`. Optionally each also plays a hollow agent: it watches its
 * allocations with the blocking query and reports every new one running at once (no process).
 * Used by bench/heartbeats.ts to load a server with thousands of nodes from a few worker threads.
 *
 * The nodes share a pool of keep-alive connections (`sockets`), each request with its own node's
 * credential: the server does the same work per beat as for one connection per agent, without the
 * simulator holding 10 000 sockets. Beats go through a minimal HTTP/1.1 client (a prepared request
 * per node, the answer read by its Content-Length): node:http's client costs about as much CPU per
 * request as the server's work on a beat, and on a 2-core machine the simulator must leave the
 * server its core.
 */
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { heartbeatInterval, nextBeatIn } from '../agent/heartbeat-schedule.ts';
import type { HeartbeatAnswer, NodeRegistration, RegisterNodeResponse } from '../api/types.ts';
import type { Allocation } from '../core/types.ts';

export interface HollowNodesOptions {
  /** The server's base URL. */
  addr: string;
  /** A token that may register nodes (their first registration). */
  token: string;
  /** Node ids are `<prefix>-<n>`, n from `first`. */
  prefix: string;
  first?: number;
  count: number;
  /** Keep-alive sockets shared by the nodes (default 64). */
  sockets?: number;
  /** Each node also watches its allocations and reports them running (default false). */
  hollowAgent?: boolean;
  /** What each node offers (default 4000 millicores, 8192 MiB). */
  resources?: { cpu: number; memory: number; disk: number };
}

/** What happened since the last `take()`. */
export interface HollowStats {
  beats: number;
  /** Client-side latency of each beat, ms. */
  latencies: number[];
  /** Beats answered anything but 200 or 404, or not answered. */
  errors: number;
  firstError?: string;
  /** Nodes told `not_found` (marked down) that were not stopped on purpose: false node-downs. */
  falseDowns: string[];
  registrations: number;
  /** How late each beat's timer fired, ms: the simulator's own lag. */
  timerLateness: number[];
  /** Nodes whose beats were sent further apart than their grace (by the simulator's lag). */
  gapsOverGrace: string[];
}

interface HollowNode {
  id: string;
  secret?: string;
  /** The whole heartbeat request, prepared once the node has its credential. */
  beatRequest?: Buffer;
  intervalMs: number;
  graceMs: number;
  timer?: NodeJS.Timeout;
  lastStart: number;
  dueAt: number;
  stopped: boolean;
  registering: boolean;
  allocIndex: number;
  reported: Set<string>;
}

interface Reply {
  status: number;
  body: string;
}

export class HollowNodes {
  readonly nodes: HollowNode[];
  /** allocation id → when its hollow agent's "running" report was acknowledged (Date.now()). */
  readonly runningAt = new Map<string, number>();
  private readonly o: HollowNodesOptions;
  private readonly agent: Agent;
  /** The watches' own sockets: a blocking query holds one for up to 30 s. */
  private readonly watchAgent = new Agent({ keepAlive: true });
  private readonly pool: ConnectionPool;
  private readonly host: string;
  private readonly port: number;
  private running = false;
  private stats: HollowStats = HollowNodes.empty();

  constructor(o: HollowNodesOptions) {
    this.o = o;
    const url = new URL(o.addr);
    this.host = url.hostname;
    this.port = Number(url.port);
    this.agent = new Agent({ keepAlive: true, maxSockets: o.sockets ?? 64 });
    this.pool = new ConnectionPool(this.host, this.port, o.sockets ?? 64);
    const first = o.first ?? 0;
    this.nodes = Array.from({ length: o.count }, (_, i) => ({
      id: `${o.prefix}-${String(first + i).padStart(5, '0')}`,
      intervalMs: 1000,
      graceMs: Infinity,
      lastStart: 0,
      dueAt: 0,
      stopped: false,
      registering: false,
      allocIndex: 0,
      reported: new Set(),
    }));
  }

  /**
   * Registers every node, `concurrency` at a time; each starts beating (and watching, as a hollow
   * agent) as soon as it is registered, as an agent does. Throws on the first refusal.
   */
  async register(concurrency = 32): Promise<void> {
    this.running = true;
    let next = 0;
    const worker = async () => {
      while (next < this.nodes.length) await this.registerNode(this.nodes[next++]!);
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }

  /** Node `id` stops beating (its machine died); returns when, as Date.now(). */
  stop(id: string): number {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no hollow node ${id}`);
    n.stopped = true;
    if (n.timer) clearTimeout(n.timer);
    return Date.now();
  }

  /** The figures since the last take, and a fresh start. */
  take(): HollowStats {
    const s = this.stats;
    this.stats = HollowNodes.empty();
    return s;
  }

  close(): void {
    this.running = false;
    for (const n of this.nodes) if (n.timer) clearTimeout(n.timer);
    this.agent.destroy();
    this.watchAgent.destroy();
    this.pool.close();
  }

  private static empty(): HollowStats {
    return {
      beats: 0,
      latencies: [],
      errors: 0,
      falseDowns: [],
      registrations: 0,
      timerLateness: [],
      gapsOverGrace: [],
    };
  }

  private registration(id: string): NodeRegistration {
    return {
      id,
      name: id,
      address: 'http://127.0.0.1:9',
      resources: this.o.resources ?? { cpu: 4000, memory: 8192, disk: 100_000 },
      reserved: { cpu: 0, memory: 0 },
      attributes: { os: 'linux', arch: 'x64', hostname: id, 'unum.hollow': 'true' },
      drivers: { exec: { detected: true, healthy: true } },
      portRange: { min: 20000, max: 32000 },
    };
  }

  private async registerNode(n: HollowNode): Promise<void> {
    n.registering = true;
    try {
      const reply = await this.call(
        'POST',
        '/v1/nodes/register',
        n.secret ?? this.o.token,
        this.registration(n.id),
      );
      if (reply.status !== 200)
        throw new Error(`registering ${n.id}: ${reply.status} ${reply.body.slice(0, 300)}`);
      const res = JSON.parse(reply.body) as RegisterNodeResponse;
      if (res.credential) n.secret = res.credential.secret;
      n.beatRequest = Buffer.from(
        `POST /v1/nodes/${n.id}/heartbeat HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\n` +
          `Authorization: Bearer ${n.secret ?? ''}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
      );
      n.intervalMs = heartbeatInterval({
        intervalMs: res.heartbeatIntervalMs,
        ttlSeconds: res.heartbeatTtlSeconds,
      });
      this.stats.registrations++;
      if (n.lastStart === 0 && n.timer === undefined) {
        // The first beat one interval after registering, jittered as the agent's.
        this.schedule(n, nextBeatIn(n.intervalMs, 0));
        if (this.o.hollowAgent) void this.watch(n);
      }
    } finally {
      n.registering = false;
    }
  }

  private schedule(n: HollowNode, ms: number): void {
    if (!this.running || n.stopped) return;
    n.dueAt = performance.now() + ms;
    n.timer = setTimeout(() => void this.beat(n), ms);
  }

  private async beat(n: HollowNode): Promise<void> {
    if (!this.running || n.stopped) return;
    const now = performance.now();
    this.stats.timerLateness.push(now - n.dueAt);
    if (n.lastStart > 0 && now - n.lastStart > n.graceMs) this.stats.gapsOverGrace.push(n.id);
    n.lastStart = now;
    let reply: Reply;
    try {
      reply = await this.pool.send(n.beatRequest!);
    } catch (err) {
      reply = { status: 0, body: String(err) };
    }
    if (n.stopped || !this.running) return;
    if (reply.status === 200) {
      this.stats.beats++;
      this.stats.latencies.push(performance.now() - n.lastStart);
      const answer = JSON.parse(reply.body) as HeartbeatAnswer;
      n.intervalMs = heartbeatInterval(answer);
      n.graceMs = answer.graceMs ?? answer.ttlSeconds * 1000;
    } else if (reply.status === 404) {
      // Marked down while it was beating: the server took a live node for dead.
      this.stats.falseDowns.push(n.id);
      await this.registerNode(n).catch((err: unknown) => this.error(String(err)));
    } else this.error(`${reply.status} ${reply.body.slice(0, 300)}`);
    this.schedule(n, nextBeatIn(n.intervalMs, performance.now() - n.lastStart));
  }

  /** The hollow agent: the allocations watch, and an immediate "running" for each new one. */
  private async watch(n: HollowNode): Promise<void> {
    while (this.running && !n.stopped) {
      let reply: Reply;
      try {
        reply = await this.call(
          'GET',
          `/v1/nodes/${n.id}/allocations?index=${n.allocIndex}&wait=30s`,
          n.secret ?? '',
          undefined,
          this.watchAgent,
        );
      } catch {
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      if (n.stopped || !this.running) return;
      if (reply.status !== 200) {
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      const { items, index } = JSON.parse(reply.body) as { items: Allocation[]; index: number };
      n.allocIndex = index;
      const fresh = items.filter(
        (a) => a.desiredStatus === 'run' && a.clientStatus === 'pending' && !n.reported.has(a.id),
      );
      if (fresh.length === 0) continue;
      const now = Date.now();
      const updates = fresh.map((a) => ({
        allocId: a.id,
        clientStatus: 'running' as const,
        taskStates: Object.fromEntries(
          a.groupSpec.tasks.map((t) => [
            t.name,
            { state: 'running', failed: false, restarts: 0, startedAt: now, events: [] },
          ]),
        ),
      }));
      const res = await this.call('POST', `/v1/nodes/${n.id}/allocations/status`, n.secret ?? '', {
        updates,
      }).catch((err: unknown) => ({ status: 0, body: String(err) }));
      if (res.status === 200) {
        const at = Date.now();
        for (const a of fresh) {
          n.reported.add(a.id);
          this.runningAt.set(a.id, at);
        }
      }
    }
  }

  private error(what: string): void {
    this.stats.errors++;
    this.stats.firstError ??= what;
  }

  private call(
    method: 'GET' | 'POST',
    path: string,
    bearer: string,
    body?: unknown,
    agent = this.agent,
  ): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const headers: Record<string, string> = { authorization: `Bearer ${bearer}` };
      if (payload !== undefined) headers['content-type'] = 'application/json';
      const req = request({ agent, host: this.host, port: this.port, method, path, headers }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(payload);
    });
  }
}

/** Keep-alive HTTP/1.1 connections, one request at a time each, for prepared requests. */
class ConnectionPool {
  private readonly idle: Connection[] = [];
  private readonly all = new Set<Connection>();
  private readonly waiting: { request: Buffer; resolve: (r: Reply) => void; reject: (e: Error) => void }[] =
    [];
  private closed = false;
  private readonly host: string;
  private readonly port: number;
  private readonly size: number;

  constructor(host: string, port: number, size: number) {
    this.host = host;
    this.port = port;
    this.size = size;
  }

  send(request: Buffer): Promise<Reply> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ request, resolve, reject });
      this.dispatch();
    });
  }

  close(): void {
    this.closed = true;
    for (const c of this.all) c.socket.destroy();
    for (const w of this.waiting.splice(0)) w.reject(new Error('closed'));
  }

  private dispatch(): void {
    while (this.waiting.length > 0 && !this.closed) {
      let c = this.idle.pop();
      if (!c) {
        if (this.all.size >= this.size) return;
        c = new Connection(this.host, this.port, (conn) => this.all.delete(conn));
        this.all.add(c);
      }
      const w = this.waiting.shift()!;
      const conn = c;
      conn.send(w.request).then(
        (r) => {
          this.idle.push(conn);
          w.resolve(r);
          this.dispatch();
        },
        (err: Error) => {
          w.reject(err);
          this.dispatch();
        },
      );
    }
  }
}

class Connection {
  readonly socket: Socket;
  private buf: Buffer = Buffer.alloc(0);
  private current: { resolve: (r: Reply) => void; reject: (e: Error) => void } | undefined;

  constructor(host: string, port: number, onGone: (c: Connection) => void) {
    this.socket = connect({ host, port, noDelay: true });
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    const gone = (err?: Error) => {
      onGone(this);
      this.current?.reject(err ?? new Error('connection closed'));
      this.current = undefined;
    };
    this.socket.on('error', gone);
    this.socket.on('close', () => gone());
  }

  send(request: Buffer): Promise<Reply> {
    return new Promise((resolve, reject) => {
      this.current = { resolve, reject };
      this.socket.write(request);
    });
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.buf.toString('latin1', 0, end);
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    if (this.buf.length < end + 4 + length) return;
    const reply = {
      status: Number(head.slice(9, 12)),
      body: this.buf.toString('utf8', end + 4, end + 4 + length),
    };
    this.buf = this.buf.subarray(end + 4 + length);
    const current = this.current;
    this.current = undefined;
    current?.resolve(reply);
  }
}
