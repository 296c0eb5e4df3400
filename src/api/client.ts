/**
 * The HTTP client of the unum API, used by the CLI, the agent and the SDK. Errors come back as the
 * same classes the server threw (src/core/errors.ts); a server that cannot be reached is an
 * UnavailableError whose message says what to do.
 */
import type { AclPolicy, AclToken, PolicyRule } from '../core/acl.ts';
import { isCertificateError, sharedTlsFetcher, type TlsFetcher } from './https.ts';
import { randomUUID } from 'node:crypto';
import { UnavailableError, errorFromWire, type ErrorDetails } from '../core/errors.ts';
import type { Allocation, ClusterEvent, Evaluation, Node } from '../core/types.ts';
import type {
  AllocStatusUpdate,
  JoinResponse,
  JoinToken,
  MadeJoinToken,
  BlockingOptions,
  EventsPage,
  HeartbeatAnswer,
  JobDetail,
  JobListItem,
  Listed,
  NodeRegistration,
  NodeStats,
  PlanJobResponse,
  RegisterNodeResponse,
  ServerStatus,
  ServersStatus,
  SubmitJobResponse,
} from './types.ts';

/** A token just made: its secret is shown this once. */
export interface AclMadeToken {
  token: AclToken;
  secret: string;
}

function namespaceOf(job: unknown): { namespace?: string } {
  const ns =
    job !== null && typeof job === 'object' ? (job as Record<string, unknown>)['namespace'] : undefined;
  return typeof ns === 'string' ? { namespace: ns } : {};
}

export const DEFAULT_ADDR = 'http://127.0.0.1:8686';

export interface ClientOptions {
  /**
   * Server address, or several separated by commas (the servers of one cluster: a call that can not
   * reach one goes to the next); default `UNUM_ADDR` or http://127.0.0.1:8686.
   */
  addr?: string;
  /** The bearer credential: a token, or a function giving the current one (an agent's changes once it registers). */
  token?: string | (() => string | undefined);
  /** Per-request timeout for non-streaming calls (blocking queries add their wait). Default 30 s. */
  timeoutMs?: number;
  /**
   * PEM: the cluster CA an https:// server's certificate must chain to (the CLI reads it from
   * UNUM_CACERT). Without it an https:// server is checked against the system's CAs.
   */
  ca?: string;
  /** PEM: a client certificate and its key (an agent's node certificate). Needs `ca`. */
  cert?: string;
  key?: string;
  /** Sent with every request (a server handing a call on to the leader marks it so). */
  headers?: Record<string, string>;
}

type Query = Record<string, string | number | boolean | undefined>;

interface RequestOptions {
  body?: unknown;
  query?: Query | object;
  /** A blocking query's wait (added to the timeout). */
  wait?: number | undefined;
  signal?: AbortSignal | undefined;
  headers?: Record<string, string>;
}

export function resolveAddr(addr?: string): string {
  const raw = addr ?? process.env['UNUM_ADDR'] ?? DEFAULT_ADDR;
  const withScheme = /^https?:\/\//.test(raw) ? raw : `http://${raw}`;
  return withScheme.replace(/\/+$/, '');
}

/**
 * Node's codes for a connection that never carried the request: another server may take it.
 * Anything else (a reset, a timeout) may have reached the server after all.
 */
const NOT_SENT = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EADDRNOTAVAIL',
]);

/** Marks an UnavailableError whose request surely did not reach a server. */
const notSent = new WeakSet<Error>();

export class UnumClient {
  /** Every server address this client knows, in the order given. */
  readonly addrs: readonly string[];
  private current = 0;
  private readonly token: string | (() => string | undefined) | undefined;
  private readonly timeoutMs: number;
  /** Requests to an https:// server with the cluster's CA go through it; others through fetch. */
  private readonly tls: TlsFetcher | undefined;
  private readonly releaseTls: () => void = () => undefined;
  private readonly extraHeaders: Record<string, string>;

  constructor(options: ClientOptions = {}) {
    this.addrs = (options.addr ?? process.env['UNUM_ADDR'] ?? DEFAULT_ADDR)
      .split(',')
      .map((a) => a.trim())
      .filter((a) => a !== '')
      .map((a) => resolveAddr(a));
    if (this.addrs.length === 0) this.addrs = [resolveAddr(DEFAULT_ADDR)];
    this.token = options.token ?? process.env['UNUM_TOKEN'];
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.extraHeaders = options.headers ?? {};
    if (options.ca !== undefined && this.addr.startsWith('https:')) {
      const pool = sharedTlsFetcher({
        ca: options.ca,
        ...(options.cert !== undefined ? { cert: options.cert } : {}),
        ...(options.key !== undefined ? { key: options.key } : {}),
      });
      this.tls = pool.fetcher;
      this.releaseTls = pool.release;
    }
  }

  /** The server address calls go to now (the next one after a server could not be reached). */
  get addr(): string {
    return this.addrs[this.current % this.addrs.length]!;
  }

  /**
   * Lets go of the kept-alive TLS connections (shared with other clients of the same certificates,
   * closed with the last of them; plain ones are fetch's to keep).
   */
  close(): void {
    this.releaseTls();
  }

  // --- joining (agents) and join tokens -------------------------------------------------------

  /**
   * A new node asks for its certificate: `csr` (PEM) names its id; the join token is its only
   * credential. UnauthenticatedError for a wrong, expired or revoked token.
   */
  join(token: string, csr: string): Promise<JoinResponse> {
    return this.request('POST', '/v1/join', { body: { token, csr } });
  }
  /** A joined node renews its certificate before it expires (its current certificate authenticates it). */
  renewNodeCertificate(nodeId: string, csr: string): Promise<JoinResponse> {
    return this.request('POST', `/v1/nodes/${enc(nodeId)}/certificate`, { body: { csr } });
  }
  createJoinToken(body: { ttl?: string; description?: string } = {}): Promise<MadeJoinToken> {
    return this.request('POST', '/v1/join-tokens', { body });
  }
  joinTokens(): Promise<{ items: JoinToken[] }> {
    return this.request('GET', '/v1/join-tokens');
  }
  revokeJoinToken(id: string): Promise<unknown> {
    return this.request('DELETE', `/v1/join-tokens/${enc(id)}`);
  }

  // --- workload identity ------------------------------------------------------------------------

  /** A node fetches the workload tokens of its allocation's tasks (its own credential). */
  allocIdentity(
    nodeId: string,
    allocId: string,
  ): Promise<{ tokens: Record<string, string>; expiresAt: number }> {
    return this.request('POST', `/v1/nodes/${enc(nodeId)}/allocations/${enc(allocId)}/identity`, {
      body: {},
    });
  }
  identitySelf(): Promise<Record<string, string>> {
    return this.request('GET', '/v1/identity/self');
  }
  jwks(): Promise<{ keys: Record<string, unknown>[] }> {
    return this.request('GET', '/.well-known/jwks.json');
  }

  // --- ACL --------------------------------------------------------------------------------------

  aclBootstrap(): Promise<AclMadeToken> {
    return this.request('POST', '/v1/acl/bootstrap', { body: {} });
  }
  aclPolicies(): Promise<{ items: AclPolicy[] }> {
    return this.request('GET', '/v1/acl/policies');
  }
  applyAclPolicy(name: string, body: { description?: string; rules: PolicyRule[] }): Promise<AclPolicy> {
    return this.request('PUT', `/v1/acl/policies/${enc(name)}`, { body });
  }
  deleteAclPolicy(name: string): Promise<unknown> {
    return this.request('DELETE', `/v1/acl/policies/${enc(name)}`);
  }
  aclTokens(): Promise<{ items: AclToken[] }> {
    return this.request('GET', '/v1/acl/tokens');
  }
  createAclToken(body: {
    name: string;
    policies?: string[];
    management?: boolean;
    ttl?: string;
  }): Promise<AclMadeToken> {
    return this.request('POST', '/v1/acl/tokens', { body });
  }
  revokeAclToken(accessor: string): Promise<unknown> {
    return this.request('DELETE', `/v1/acl/tokens/${enc(accessor)}`);
  }
  aclSelf(): Promise<AclToken> {
    return this.request('GET', '/v1/acl/tokens/self');
  }

  // --- jobs -------------------------------------------------------------------------------------

  /** The job's namespace goes in the query too: the server authorizes it before it reads the body. */
  /**
   * Each call carries an idempotency key of its own: if the answer is lost (a server dies, a
   * timeout), the call is sent again, to the same server or another, and is done once.
   */
  submitJob(job: unknown, idempotencyKey: string = randomUUID()): Promise<SubmitJobResponse> {
    return this.request('POST', '/v1/jobs', {
      body: { job },
      query: namespaceOf(job),
      headers: { 'idempotency-key': idempotencyKey },
    });
  }
  planJob(job: unknown): Promise<PlanJobResponse> {
    return this.request('POST', '/v1/jobs/plan', { body: { job }, query: namespaceOf(job) });
  }
  listJobs(q: { namespace?: string } = {}): Promise<Listed<JobListItem>> {
    return this.request('GET', '/v1/jobs', { query: q });
  }
  getJob(id: string, q: { namespace?: string } = {}): Promise<JobDetail> {
    return this.request('GET', `/v1/jobs/${enc(id)}`, { query: q });
  }
  stopJob(id: string, q: { namespace?: string; purge?: boolean } = {}): Promise<{ evalId: string }> {
    return this.request('DELETE', `/v1/jobs/${enc(id)}`, { query: q });
  }
  /** `signal` cancels a blocking query early (the call then rejects with the signal's reason). */
  jobAllocations(
    id: string,
    q: { namespace?: string } & BlockingOptions = {},
    signal?: AbortSignal,
  ): Promise<Listed<Allocation>> {
    return this.request('GET', `/v1/jobs/${enc(id)}/allocations`, { query: q, wait: q.waitMs, signal });
  }
  jobEvaluations(id: string, q: { namespace?: string } = {}): Promise<Listed<Evaluation>> {
    return this.request('GET', `/v1/jobs/${enc(id)}/evaluations`, { query: q });
  }

  // --- allocations ------------------------------------------------------------------------------

  listAllocations(
    q: { namespace?: string; job?: string; node?: string; all?: boolean } & BlockingOptions = {},
    signal?: AbortSignal,
  ): Promise<Listed<Allocation>> {
    return this.request('GET', '/v1/allocations', { query: q, wait: q.waitMs, signal });
  }
  /** By full id or a unique prefix (as shown in tables). */
  getAllocation(id: string): Promise<Allocation> {
    return this.request('GET', `/v1/allocations/${enc(id)}`);
  }
  /**
   * Streams a task's log as text chunks. With `follow` the stream stays open for new output until
   * `signal` aborts or the task's allocation stops for good.
   */
  allocLogs(
    allocId: string,
    q: { task: string; stream?: 'stdout' | 'stderr'; follow?: boolean; offset?: number; tail?: number },
    signal?: AbortSignal,
  ): AsyncIterable<string> {
    return this.textStream(`/v1/allocations/${enc(allocId)}/logs`, q, signal);
  }

  // --- nodes (and the agent's calls) -----------------------------------------------------------

  listNodes(q: BlockingOptions = {}, signal?: AbortSignal): Promise<Listed<Node>> {
    return this.request('GET', '/v1/nodes', { query: q, wait: q.waitMs, signal });
  }
  getNode(id: string): Promise<Node> {
    return this.request('GET', `/v1/nodes/${enc(id)}`);
  }
  /**
   * Usage (CPU, memory, processes) of the running tasks on a node, asked of its agent through the
   * server. UnavailableError when the node is not heartbeating or its agent does not answer.
   */
  nodeStats(nodeId: string): Promise<NodeStats> {
    return this.request('GET', `/v1/nodes/${enc(nodeId)}/stats`);
  }
  /**
   * Drains a node (by id, id prefix or name): `deadline` (e.g. `"1h"`, the default) is how long its
   * allocations have to move; `cancel` ends the drain under way. Answers the node.
   */
  drainNode(id: string, body: { deadline?: string; cancel?: boolean }): Promise<Node> {
    return this.request('POST', `/v1/nodes/${enc(id)}/drain`, { body });
  }
  /** Whether new work may be placed on a node; `true` also ends a drain. Answers the node. */
  setNodeEligibility(id: string, eligible: boolean): Promise<Node> {
    return this.request('POST', `/v1/nodes/${enc(id)}/eligibility`, { body: { eligible } });
  }
  registerNode(node: NodeRegistration): Promise<RegisterNodeResponse> {
    return this.request('POST', '/v1/nodes/register', { body: node });
  }
  /** NotFoundError when the server does not know the node (any more), or marked it down: register again. */
  /** `signal` bounds the wait (an agent gives up on a server that does not answer within about an interval). */
  heartbeat(nodeId: string, signal?: AbortSignal): Promise<HeartbeatAnswer> {
    return this.request('POST', `/v1/nodes/${enc(nodeId)}/heartbeat`, { body: {}, signal });
  }
  /** `signal` cancels the blocking query early, e.g. when the agent shuts down. */
  nodeAllocations(
    nodeId: string,
    q: BlockingOptions = {},
    signal?: AbortSignal,
  ): Promise<Listed<Allocation>> {
    return this.request('GET', `/v1/nodes/${enc(nodeId)}/allocations`, { query: q, wait: q.waitMs, signal });
  }
  updateAllocations(nodeId: string, updates: AllocStatusUpdate[]): Promise<{ index: number }> {
    return this.request('POST', `/v1/nodes/${enc(nodeId)}/allocations/status`, { body: { updates } });
  }

  // --- evaluations, events, status -------------------------------------------------------------

  listEvaluations(q: { namespace?: string; job?: string } = {}): Promise<Listed<Evaluation>> {
    return this.request('GET', '/v1/evaluations', { query: q });
  }
  getEvaluation(id: string): Promise<Evaluation> {
    return this.request('GET', `/v1/evaluations/${enc(id)}`);
  }
  /** Events after `index` (oldest first), at most `limit`. */
  events(q: { index?: number; limit?: number; namespace?: string; job?: string } = {}): Promise<EventsPage> {
    return this.request('GET', '/v1/events', { query: q });
  }
  /** Follows events after `index` as they happen (Server-Sent Events). */
  async *streamEvents(
    q: { index?: number; namespace?: string; job?: string } = {},
    signal?: AbortSignal,
  ): AsyncIterable<ClusterEvent> {
    let buffer = '';
    // Where the search for the end of a frame resumes: a long frame is not scanned again per chunk.
    let scanned = 0;
    for await (const chunk of this.textStream('/v1/events/stream', q, signal)) {
      buffer += chunk;
      let end: number;
      while ((end = buffer.indexOf('\n\n', scanned)) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        scanned = 0;
        const data = frame
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trimStart())
          .join('\n');
        const kind = /^event:\s*(.*)$/m.exec(frame)?.[1];
        if (kind === 'error') {
          const body = JSON.parse(data) as {
            error: { code: string; message: string; details?: ErrorDetails };
          };
          throw errorFromWire(body.error.code, body.error.message, body.error.details);
        }
        if (data !== '') yield JSON.parse(data) as ClusterEvent;
      }
      scanned = Math.max(0, buffer.length - 1);
    }
  }
  status(): Promise<ServerStatus> {
    return this.request('GET', '/v1/status');
  }
  /** The cluster's state as snapshot lines (JSON lines), chunk by chunk as the server sends them. */
  snapshot(signal?: AbortSignal): AsyncIterable<string> {
    return this.textStream('/v1/operator/snapshot', {}, signal);
  }
  /** The servers that answer now, the leader and the Store's state. */
  servers(): Promise<ServersStatus> {
    return this.request('GET', '/v1/operator/servers');
  }

  // --- plumbing --------------------------------------------------------------------------------

  private url(path: string, query?: Query): string {
    const u = new URL(this.addr + path);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v === undefined || k === 'waitMs') continue;
      u.searchParams.set(k, String(v));
    }
    if (query?.['waitMs'] !== undefined) u.searchParams.set('wait', `${query['waitMs']}ms`);
    return u.toString();
  }

  private headers(json: boolean): Record<string, string> {
    const h: Record<string, string> = { ...this.extraHeaders, accept: 'application/json' };
    if (json) h['content-type'] = 'application/json';
    const token = typeof this.token === 'function' ? this.token() : this.token;
    if (token) h['authorization'] = `Bearer ${token}`;
    return h;
  }

  /**
   * One call, to the current server; with several, a server that can not be reached or says it is
   * unavailable gives way to the next one — when that is safe: the request never reached it, or the
   * server refused it, or repeating it can do no harm (a read, a PUT or DELETE, a call with an
   * `idempotency-key`). A write that may have landed is not sent again; its UnavailableError says so.
   */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const repeatable =
      method === 'GET' ||
      method === 'PUT' ||
      method === 'DELETE' ||
      opts.headers?.['idempotency-key'] !== undefined;
    for (let tried = 1; ; tried++) {
      try {
        return await this.requestOnce<T>(method, path, opts);
      } catch (err) {
        const another =
          this.addrs.length > 1 &&
          tried < this.addrs.length &&
          err instanceof UnavailableError &&
          !opts.signal?.aborted &&
          (repeatable || notSent.has(err));
        if (!another) {
          if (err instanceof UnavailableError && this.addrs.length > 1 && !repeatable && !notSent.has(err))
            throw new UnavailableError(
              `${err.message} — the ${method} may or may not have been done: look before you repeat it`,
              { cause: err },
            );
          throw err;
        }
        this.current = (this.current + 1) % this.addrs.length;
      }
    }
  }

  private async requestOnce<T>(method: string, path: string, opts: RequestOptions): Promise<T> {
    const url = this.url(path, opts.query as Query | undefined);
    const timeout = AbortSignal.timeout(this.timeoutMs + (opts.wait ?? 0));
    let res: Response;
    try {
      const init: RequestInit = {
        method,
        headers: { ...this.headers(opts.body !== undefined), ...opts.headers },
        signal: opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout,
      };
      if (opts.body !== undefined) init.body = JSON.stringify(opts.body);
      res = await this.fetch(url, init);
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      throw this.unreachable(err);
    }
    const text = await res.text();
    if (!res.ok) {
      const err = this.wireError(res.status, text);
      // The server answered that it could not do it: nothing was done, another server may.
      if (err instanceof UnavailableError) notSent.add(err);
      throw err;
    }
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  private async *textStream(path: string, query: object, signal?: AbortSignal): AsyncIterable<string> {
    let res: Response;
    try {
      const init: RequestInit = { headers: this.headers(false) };
      if (signal) init.signal = signal;
      res = await this.fetch(this.url(path, query as Query), init);
    } catch (err) {
      if (signal?.aborted) return;
      throw this.unreachable(err);
    }
    if (!res.ok) throw this.wireError(res.status, await res.text());
    if (!res.body) return;
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body) yield decoder.decode(chunk as Uint8Array, { stream: true });
    } catch (err) {
      if (signal?.aborted) return;
      throw this.unreachable(err);
    }
  }

  private fetch(url: string, init: RequestInit): Promise<Response> {
    if (this.tls === undefined) return fetch(url, init);
    return this.tls.fetch(url, {
      ...(init.method !== undefined ? { method: init.method } : {}),
      headers: init.headers as Record<string, string>,
      ...(typeof init.body === 'string' ? { body: init.body } : {}),
      ...(init.signal ? { signal: init.signal } : {}),
    });
  }

  private unreachable(err: unknown): Error {
    const cause = err as {
      name?: string;
      code?: string;
      cause?: { name?: string; code?: string; message?: string };
    };
    if (cause.name === 'TimeoutError' || cause.cause?.name === 'TimeoutError')
      return new UnavailableError(`the unum server at ${this.addr} did not answer in time`, { cause: err });
    if (isCertificateError(err))
      return new UnavailableError(
        `the unum server at ${this.addr} presented a certificate this client does not trust (${cause.cause?.code ?? cause.code}): point UNUM_CACERT at the cluster's CA file (ca.pem in the server's data dir, named in its banner)`,
        { cause: err },
      );
    const why = cause.cause?.code ?? cause.code ?? cause.cause?.message ?? String(err);
    const e = new UnavailableError(
      `cannot reach the unum server at ${this.addr} (${why}). Is it running? Start one with "unum up", or point UNUM_ADDR or --addr at it.`,
      { cause: err },
    );
    if (NOT_SENT.has(cause.cause?.code ?? cause.code ?? '')) notSent.add(e);
    return e;
  }

  private wireError(status: number, text: string): Error {
    try {
      const body = JSON.parse(text) as {
        error?: { code?: string; message?: string; details?: ErrorDetails };
      };
      if (body.error?.code && body.error.message)
        return errorFromWire(body.error.code, body.error.message, body.error.details);
    } catch {
      // not JSON: fall through
    }
    return errorFromWire(status >= 500 ? 'internal' : 'invalid', `HTTP ${status}: ${text.slice(0, 200)}`);
  }
}

function enc(s: string): string {
  return encodeURIComponent(s);
}
