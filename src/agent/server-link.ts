/**
 * The agent's link to the servers: a client per server (with the node certificate when the node
 * joined a TLS server), the call that fails over to the next server, registration and the
 * heartbeat loop.
 *
 *  - register: the node's fingerprint; the answer gives the heartbeat interval (and, on a plain
 *    server, the node's credential the first time);
 *  - heartbeat: at the interval the server gives, jittered (heartbeat-schedule.ts); NotFoundError
 *    (the server forgot the node, or marked it down) → register again; UnavailableError → retry with
 *    backoff no longer than the interval, tasks keep running meanwhile.
 *
 * The agent learns of each registration (`onRegistered`) to watch again and re-send its allocations'
 * status; `lastContact` is when a server last answered (for --max-disconnect).
 */
import { UnumClient } from '../api/client.ts';
import type { HeartbeatAnswer, NodeRegistration } from '../api/types.ts';
import { InternalError, NotFoundError, UnavailableError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { AgentCredential } from './credential.ts';
import { FALLBACK_INTERVAL_MS, heartbeatInterval, nextBeatIn } from './heartbeat-schedule.ts';
import type { NodeTls } from './join.ts';
import { Sleeper } from './sleeper.ts';

export interface ServerLinkOptions {
  nodeId: string;
  servers: readonly string[];
  credential: AgentCredential;
  tls?: NodeTls | undefined;
  logger: Logger;
  retryMinMs?: number | undefined;
  retryMaxMs?: number | undefined;
  /** Whether the agent is stopping: the loop ends, waiters are let go. */
  isStopping(): boolean;
  /** After each registration; `again` for every one after the first of this process. */
  onRegistered(again: boolean): void;
  /** Calls moved to another server (the current one could not be reached, or did not answer). */
  onServerChanged?(): void;
}

/**
 * How long a beat waits for its answer: a server that takes longer (paused, overloaded, cut off
 * without a word) is left for the next one before the node's grace runs out.
 */
export function beatTimeoutMs(intervalMs: number): number {
  return Math.min(Math.max(1_000, intervalMs * 1.5), 5_000);
}

export class ServerLink {
  /** When a server last answered. */
  lastContact = Date.now();
  private readonly o: ServerLinkOptions;
  private readonly clients: UnumClient[];
  private clientIndex = 0;
  private readonly sleeper = new Sleeper();
  private registration: NodeRegistration | undefined;
  private registered = false;
  private everRegistered = false;
  private waiters: (() => void)[] = [];
  private intervalMs = FALLBACK_INTERVAL_MS;

  constructor(o: ServerLinkOptions) {
    this.o = o;
    this.clients = this.serverClients();
  }

  /** The node as it registers (its fingerprint): set before the first registration. */
  setRegistration(r: NodeRegistration): void {
    this.registration = r;
  }

  private serverClients(): UnumClient[] {
    const tls = this.o.tls;
    const certs = tls !== undefined ? { ca: tls.ca, cert: tls.cert, key: tls.key } : {};
    return this.o.servers.map(
      (addr) => new UnumClient({ addr, token: () => this.o.credential.bearer, ...certs }),
    );
  }

  /** Takes a renewed node certificate: new connections to the servers use it. */
  useCertificate(tls: NodeTls): void {
    this.o.tls = tls;
    for (const c of this.clients.splice(0, this.clients.length, ...this.serverClients())) c.close();
  }

  /** Calls the current server; when it can not be reached, the next call goes to the next one. */
  async call<T>(fn: (client: UnumClient) => Promise<T>): Promise<T> {
    const index = this.clientIndex;
    const client = this.clients[index % this.clients.length];
    if (client === undefined) throw new UnavailableError('no servers configured');
    try {
      const result = await fn(client);
      this.lastContact = Date.now();
      return result;
    } catch (err) {
      if (err instanceof UnavailableError && this.clients.length > 1 && this.clientIndex === index) {
        this.clientIndex = (index + 1) % this.clients.length;
        this.o.logger.warn(
          { err, next: this.o.servers[this.clientIndex] },
          'a server could not be reached or did not answer: calls go to the next one',
        );
        this.o.onServerChanged?.();
      }
      throw err;
    }
  }

  async register(): Promise<void> {
    const registration = this.registration;
    if (registration === undefined) throw new InternalError('register before fingerprint');
    const res = await this.call((c) => c.registerNode(registration));
    if (res.credential !== undefined) await this.o.credential.save(this.o.nodeId, res.credential);
    this.intervalMs = heartbeatInterval({
      intervalMs: res.heartbeatIntervalMs,
      ttlSeconds: res.heartbeatTtlSeconds,
    });
    const again = this.everRegistered;
    this.everRegistered = true;
    this.registered = true;
    this.o.logger.info(
      { heartbeatIntervalMs: this.intervalMs, heartbeatGraceMs: res.heartbeatGraceMs },
      'node registered',
    );
    this.release();
    this.o.onRegistered(again);
  }

  /** The server does not know the node (any more): the heartbeat loop registers it again. */
  forgetRegistration(): void {
    if (!this.registered) return;
    this.o.logger.warn('the server does not know this node (any more): registering again');
    this.registered = false;
    this.sleeper.wake();
  }

  /** Resolves once the node is registered (at once if it is), or the agent stops. */
  whenRegistered(): Promise<void> {
    if (this.registered || this.o.isStopping()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private release(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** The wait before retry number `failures` (doubling from retryMinMs up to retryMaxMs). */
  backoff(failures: number): number {
    const min = this.o.retryMinMs ?? 250;
    const max = this.o.retryMaxMs ?? 10_000;
    return Math.min(min * 2 ** Math.max(0, failures - 1), max);
  }

  async heartbeatLoop(): Promise<void> {
    let failures = 0;
    let lastStart = -Infinity;
    while (!this.o.isStopping()) {
      // A heartbeat's retry never waits past the interval: the grace is a few intervals, and a
      // server that answers again must hear from this node before it runs out.
      const wait =
        failures > 0
          ? this.registered
            ? Math.min(this.backoff(failures), this.intervalMs)
            : this.backoff(failures)
          : this.registered
            ? nextBeatIn(this.intervalMs, performance.now() - lastStart)
            : 0;
      if (wait > 0) await this.sleeper.sleep(wait);
      if (this.o.isStopping()) break;
      lastStart = performance.now();
      try {
        if (!this.registered) await this.register();
        else {
          const res = await this.call((c) => this.beat(c));
          this.intervalMs = heartbeatInterval(res);
        }
        failures = 0;
      } catch (err) {
        if (this.o.isStopping()) break;
        if (err instanceof NotFoundError && this.registered) {
          this.forgetRegistration();
          failures = 0;
          continue;
        }
        failures += 1;
        const level = err instanceof UnavailableError ? 'warn' : 'error';
        this.o.logger[level](
          { err, failures, registered: this.registered },
          this.registered ? 'heartbeat failed; tasks keep running' : 'registration failed',
        );
      }
    }
  }

  /** One beat, given up (UnavailableError) when the server does not answer in time. */
  private async beat(c: UnumClient): Promise<HeartbeatAnswer> {
    const timeoutMs = beatTimeoutMs(this.intervalMs);
    try {
      return await c.heartbeat(this.o.nodeId, AbortSignal.timeout(timeoutMs));
    } catch (err) {
      if ((err as Error).name === 'TimeoutError')
        throw new UnavailableError(
          `the server at ${c.addr} did not answer a heartbeat within ${timeoutMs} ms`,
          {
            cause: err,
          },
        );
      throw err;
    }
  }

  /** Ends the loop's wait and lets waiters go (the agent is stopping). */
  stopping(): void {
    this.sleeper.close();
    this.release();
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}
