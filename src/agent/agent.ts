/**
 * The agent's control loops:
 *
 *  - register: the node (id kept in the data dir) with its fingerprint;
 *  - heartbeat: every ttl/3; NotFoundError (the server forgot the node) → register again;
 *    UnavailableError → retry with backoff, tasks keep running meanwhile;
 *  - watch: a blocking query on the node's allocations; each answer is diffed against the local
 *    runners (start what should run, stop what should not, never start an allocation twice);
 *  - report: status changes go back through the coalescing StatusReporter.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { UnumClient } from '../api/client.ts';
import type { AllocStatusUpdate, NodeRegistration } from '../api/types.ts';
import { NotFoundError, UnavailableError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Allocation, DriverInfo } from '../core/types.ts';
import { AllocRunner, isTerminal } from './alloc-runner.ts';
import { allocsRoot } from './alloc-dir.ts';
import { drivers as driverFactories } from './drivers/index.ts';
import type { Driver, DriverName } from './drivers/types.ts';
import { fingerprint } from './fingerprint.ts';
import { createAgentHttpServer } from './http.ts';
import { StatusReporter } from './reporter.ts';

export interface AgentConfig {
  dataDir: string;
  servers: string[];
  nodeId: string;
  name: string;
  http: { host: string; port: number };
  logger: Logger;
  enableRawExec: boolean;
  reserved: { cpu: number; memory: number };
  portRange: { min: number; max: number };
  /** How long a blocking query waits on the server. */
  watchWaitMs?: number;
  /** First and largest delay between retries when the servers can not be reached. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Poll period of followed logs. */
  logPollMs?: number;
}

/** A sleep that `wake()` ends early (and that ends at once after `close()`). */
class Sleeper {
  private timer: NodeJS.Timeout | undefined;
  private resolve: (() => void) | undefined;
  private closed = false;

  sleep(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.resolve = resolve;
      this.timer = setTimeout(() => this.wake(), ms);
    });
  }
  wake(): void {
    clearTimeout(this.timer);
    const r = this.resolve;
    this.resolve = undefined;
    r?.();
  }
  close(): void {
    this.closed = true;
    this.wake();
  }
}

export class Agent {
  readonly nodeId: string;
  private readonly cfg: AgentConfig;
  private readonly logger: Logger;
  private readonly clients: UnumClient[];
  private clientIndex = 0;
  private readonly drivers: Driver[];
  private driverInfo: Record<string, DriverInfo> = {};
  private readonly runners = new Map<string, AllocRunner>();
  /** Allocations this agent process ran to the end and forgot: never to be started again. */
  private readonly forgotten = new Set<string>();
  /** Allocation ids in the server's latest answer. */
  private serverKnown = new Set<string>();
  private readonly reporter: StatusReporter;
  private readonly abort = new AbortController();
  private readonly heartbeatSleeper = new Sleeper();
  private readonly watchSleeper = new Sleeper();
  private registration: NodeRegistration | undefined;
  private registered = false;
  private everRegistered = false;
  private onRegistered: (() => void) | undefined;
  private ttlMs = 15_000;
  private server: Server | undefined;
  private addressUrl = '';
  private loops: Promise<void>[] = [];
  private stopping: Promise<void> | undefined;

  constructor(cfg: AgentConfig) {
    this.cfg = cfg;
    this.nodeId = cfg.nodeId;
    this.logger = cfg.logger.child({ nodeId: cfg.nodeId });
    this.clients = cfg.servers.map((addr) => new UnumClient({ addr }));
    this.drivers = (Object.keys(driverFactories) as DriverName[]).map((name) =>
      driverFactories[name]({
        logger: this.logger,
        enabled: name === 'raw_exec' ? cfg.enableRawExec : true,
      }),
    );
    const reporterOpts: ConstructorParameters<typeof StatusReporter>[0] = {
      send: (updates) => this.call((c) => c.updateAllocations(this.nodeId, updates)),
      logger: this.logger,
      onNotFound: () => this.forgetRegistration(),
      isWanted: (id) => this.serverKnown.has(id) || this.runners.has(id),
    };
    if (cfg.retryMinMs !== undefined) reporterOpts.retryMinMs = cfg.retryMinMs;
    if (cfg.retryMaxMs !== undefined) reporterOpts.retryMaxMs = cfg.retryMaxMs;
    this.reporter = new StatusReporter(reporterOpts);
  }

  /** The agent's HTTP base URL, as registered (`http://127.0.0.1:8687`). */
  get address(): string {
    return this.addressUrl;
  }

  /**
   * Serves the agent endpoint, fingerprints, registers and starts the loops. A server that can not
   * be reached is not an error (registration is retried in the background); anything else is.
   */
  async start(): Promise<void> {
    await this.listen();
    try {
      await this.init();
    } catch (err) {
      await this.closeHttp();
      throw err;
    }
    this.loops = [this.heartbeatLoop(), this.watchLoop()];
  }

  private async init(): Promise<void> {
    const fp = await fingerprint(this.cfg.dataDir, this.drivers);
    this.driverInfo = fp.drivers;
    this.registration = {
      id: this.nodeId,
      name: this.cfg.name,
      address: this.addressUrl,
      resources: fp.resources,
      reserved: this.cfg.reserved,
      attributes: fp.attributes,
      drivers: fp.drivers,
      portRange: this.cfg.portRange,
    };
    this.logger.info(
      { address: this.addressUrl, resources: fp.resources, drivers: Object.keys(fp.drivers) },
      'agent starting',
    );
    try {
      await this.register();
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      this.logger.warn({ err }, 'no server reachable yet; will keep trying to register');
    }
  }

  /** Stops the loops, stops every task (graceful: killSignal, then SIGKILL) and the endpoint. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.logger.info({ allocations: this.runners.size }, 'agent stopping');
    this.abort.abort();
    this.heartbeatSleeper.close();
    this.watchSleeper.close();
    this.onRegistered?.();
    await Promise.all([...this.runners.values()].map((r) => r.shutdown()));
    // Whatever happened before the shutdown still goes out, briefly.
    await this.reporter.flush(2_000);
    this.reporter.close();
    await Promise.all(this.loops);
    await this.closeHttp();
    this.logger.info('agent stopped');
  }

  private get isStopping(): boolean {
    return this.abort.signal.aborted;
  }

  // --- HTTP endpoint ---------------------------------------------------------------------------

  private async listen(): Promise<void> {
    const ctx: Parameters<typeof createAgentHttpServer>[0] = {
      nodeId: this.nodeId,
      allocsDir: allocsRoot(this.cfg.dataDir),
      runner: (id) => this.runners.get(id),
      counts: () => ({
        allocations: this.runners.size,
        running: [...this.runners.values()].filter((r) => !r.finished).length,
      }),
      logger: this.logger,
    };
    if (this.cfg.logPollMs !== undefined) ctx.logPollMs = this.cfg.logPollMs;
    const server = createAgentHttpServer(ctx);
    const { host, port: wanted } = this.cfg.http;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void =>
        reject(
          err.code === 'EADDRINUSE'
            ? new Error(
                `the agent's HTTP address ${host}:${wanted} is already in use: choose another httpAddr (port 0 picks a free one)`,
                { cause: err },
              )
            : err,
        );
      server.once('error', onError);
      server.listen(wanted, host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (err) => this.logger.error({ err }, 'agent http server error'));
    this.server = server;
    const { port } = server.address() as AddressInfo;
    this.addressUrl = `http://${advertisedHost(this.cfg.http.host)}:${port}`;
  }

  private async closeHttp(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  // --- servers ---------------------------------------------------------------------------------

  /** Calls the current server; when it can not be reached, the next call goes to the next one. */
  private async call<T>(fn: (client: UnumClient) => Promise<T>): Promise<T> {
    const index = this.clientIndex;
    const client = this.clients[index % this.clients.length];
    if (client === undefined) throw new UnavailableError('no servers configured');
    try {
      return await fn(client);
    } catch (err) {
      if (err instanceof UnavailableError && this.clients.length > 1 && this.clientIndex === index)
        this.clientIndex = (index + 1) % this.clients.length;
      throw err;
    }
  }

  private async register(): Promise<void> {
    const registration = this.registration;
    if (registration === undefined) throw new Error('register before fingerprint');
    const res = await this.call((c) => c.registerNode(registration));
    this.ttlMs = Math.max(1_000, res.heartbeatTtlSeconds * 1000);
    const again = this.everRegistered;
    this.everRegistered = true;
    this.registered = true;
    this.logger.info({ ttlSeconds: res.heartbeatTtlSeconds }, 'node registered');
    const waiter = this.onRegistered;
    this.onRegistered = undefined;
    waiter?.();
    // After the server forgot the node it may have missed reports: send the current state of each.
    if (again) for (const r of this.runners.values()) this.reporter.enqueue(r.status());
  }

  private forgetRegistration(): void {
    if (!this.registered) return;
    this.logger.warn('the server does not know this node (any more): registering again');
    this.registered = false;
    this.heartbeatSleeper.wake();
  }

  private whenRegistered(): Promise<void> {
    if (this.registered || this.isStopping) return Promise.resolve();
    return new Promise((resolve) => {
      const prev = this.onRegistered;
      this.onRegistered = () => {
        prev?.();
        resolve();
      };
    });
  }

  private backoff(failures: number): number {
    const min = this.cfg.retryMinMs ?? 250;
    const max = this.cfg.retryMaxMs ?? 10_000;
    return Math.min(min * 2 ** Math.max(0, failures - 1), max);
  }

  private async heartbeatLoop(): Promise<void> {
    let failures = 0;
    while (!this.isStopping) {
      const wait = failures > 0 ? this.backoff(failures) : this.registered ? this.ttlMs / 3 : 0;
      if (wait > 0) await this.heartbeatSleeper.sleep(wait);
      if (this.isStopping) break;
      try {
        if (!this.registered) await this.register();
        else {
          const res = await this.call((c) => c.heartbeat(this.nodeId));
          this.ttlMs = Math.max(1_000, res.ttlSeconds * 1000);
        }
        failures = 0;
      } catch (err) {
        if (this.isStopping) break;
        if (err instanceof NotFoundError && this.registered) {
          this.forgetRegistration();
          failures = 0;
          continue;
        }
        failures += 1;
        const level = err instanceof UnavailableError ? 'warn' : 'error';
        this.logger[level](
          { err, failures, registered: this.registered },
          this.registered ? 'heartbeat failed; tasks keep running' : 'registration failed',
        );
      }
    }
  }

  private async watchLoop(): Promise<void> {
    let index = 0;
    let failures = 0;
    while (!this.isStopping) {
      await this.whenRegistered();
      if (this.isStopping) break;
      try {
        const res = await this.call((c) =>
          c.nodeAllocations(
            this.nodeId,
            { index, waitMs: this.cfg.watchWaitMs ?? 30_000 },
            this.abort.signal,
          ),
        );
        failures = 0;
        const unchanged = res.index === index;
        // An index that goes backwards (a server with fresh state) is taken as it comes.
        index = res.index;
        this.reconcile(res.items);
        // A server that answers at once without a new index would make this loop spin.
        if (unchanged) await this.watchSleeper.sleep(100);
      } catch (err) {
        if (this.isStopping) break;
        failures += 1;
        if (err instanceof NotFoundError) this.forgetRegistration();
        const level = err instanceof UnavailableError || err instanceof NotFoundError ? 'warn' : 'error';
        this.logger[level]({ err, failures }, 'watching allocations failed; retrying');
        await this.watchSleeper.sleep(this.backoff(failures));
      }
    }
  }

  // --- allocations -----------------------------------------------------------------------------

  /** Converges local runners on the server's list of this node's allocations. */
  reconcile(allocs: readonly Allocation[]): void {
    if (this.isStopping) return;
    const listed = new Set<string>();
    for (const alloc of allocs) {
      if (alloc.nodeId !== this.nodeId) continue;
      listed.add(alloc.id);
      const runner = this.runners.get(alloc.id);
      if (runner !== undefined) {
        runner.update(alloc);
        continue;
      }
      if (alloc.desiredStatus !== 'run' || isTerminal(alloc.clientStatus) || this.forgotten.has(alloc.id))
        continue;
      this.startRunner(alloc);
    }
    this.serverKnown = listed;
    for (const [id, runner] of this.runners) {
      if (listed.has(id)) continue;
      if (runner.finished) {
        // Done here and gone there: keep only the id (logs stay on disk).
        this.runners.delete(id);
        this.forgotten.add(id);
      } else void runner.stop('allocation removed from the server');
    }
  }

  private startRunner(alloc: Allocation): void {
    const runner = new AllocRunner({
      alloc,
      allocsDir: allocsRoot(this.cfg.dataDir),
      nodeId: this.nodeId,
      driverFor: (name) => this.driverFor(name),
      logger: this.logger,
      onUpdate: (update: AllocStatusUpdate) => this.reporter.enqueue(update),
    });
    this.runners.set(alloc.id, runner);
    runner
      .run()
      .catch((err: unknown) => this.logger.error({ err, allocId: alloc.id }, 'allocation runner crashed'));
  }

  private driverFor(name: string): Driver | { unavailable: string } {
    const driver = this.drivers.find((d) => d.name === name);
    const info = this.driverInfo[name];
    if (driver === undefined || info === undefined)
      return { unavailable: `driver "${name}" does not exist on this node` };
    if (!info.healthy)
      return {
        unavailable: `driver "${name}" is not available on this node${info.description ? `: ${info.description}` : ''}`,
      };
    return driver;
  }
}

/** The host others should use to reach an endpoint bound to `host`. */
function advertisedHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}
