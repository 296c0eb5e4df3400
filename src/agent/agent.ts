/**
 * The agent's control loops:
 *
 *  - register and heartbeat: the link to the servers (server-link.ts);
 *  - watch: a blocking query on the node's allocations; each answer is diffed against the local
 *    runners (start what should run, stop what should not, never start an allocation twice);
 *  - report: status changes go back through the coalescing StatusReporter;
 *  - persist: every change of an allocation is written to its state file (state.ts), and a starting
 *    agent first re-attaches to the tasks an earlier agent process left running, then watches;
 *  - housekeeping: garbage collection of old allocation dirs, usage samples (log files are rotated
 *    by each task's log shipper).
 */
import { listen, type Listener } from '../transport/index.ts';
import type { AllocStatusUpdate, NodeRegistration, NodeStats } from '../api/types.ts';
import { holdsResources } from '../core/alloc.ts';
import { NotFoundError, UnavailableError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Allocation, DriverInfo } from '../core/types.ts';
import { AllocRunner } from './runner/alloc-runner.ts';
import { AgentNetwork } from './network/index.ts';
import { watchDisconnect } from './disconnect.ts';
import { killUnrecorded } from './unrecorded.ts';

export type { AgentConfig, StopOptions } from './config.ts';
import { allocDirPaths, allocsRoot } from './runner/alloc-dir.ts';
import { drivers as driverFactories } from './drivers/index.ts';
import type { Driver, DriverName } from './drivers/types.ts';
import { fingerprint } from './fingerprint.ts';
import { detectIsolation, detectIsolationOnce, type IsolationCapability } from './drivers/exec/isolation.ts';
import { detectCgroups } from './cgroups/index.ts';
import { agentRouter, type AgentHttpContext } from './http.ts';
import { gcAllocDirs, markAllocDirEnded } from './logs.ts';
import { defaultTasksPidsMax } from './options.ts';
import { StatusReporter } from './reporter.ts';
import { Sleeper } from './sleeper.ts';
import { ServerLink } from './server-link.ts';
import { UsageSampler } from './usage-sampler.ts';
import type { AgentConfig, StopOptions } from './config.ts';
import type { NodeTls } from './join.ts';
import type { Server as TlsServer } from 'node:tls';
import { AgentStateStore, stateDir, type PersistedAlloc } from './state.ts';

export class Agent {
  readonly nodeId: string;
  private readonly cfg: AgentConfig;
  private readonly logger: Logger;
  private readonly link: ServerLink;
  private readonly drivers: Driver[];
  private driverInfo: Record<string, DriverInfo> = {};
  private readonly runners = new Map<string, AllocRunner>();
  /** Allocations this agent process ran to the end and forgot: never to be started again. */
  private readonly forgotten = new Set<string>();
  /** Allocation ids in the server's latest answer. */
  private serverKnown = new Set<string>();
  private readonly reporter: StatusReporter;
  private readonly abort = new AbortController();
  private readonly watchSleeper = new Sleeper();
  private listener: Listener | undefined;
  private addressUrl = '';
  private loops: Promise<void>[] = [];
  private stopping: Promise<void> | undefined;
  private readonly state: AgentStateStore;
  private readonly isolation: Promise<IsolationCapability>;
  private readonly housekeepingSleeper = new Sleeper();
  private readonly statsSleeper = new Sleeper();
  private readonly usage: UsageSampler;
  private readonly network: AgentNetwork;
  /** Aborts the watch under way when the node registers again. */
  private rewatch: AbortController | undefined;

  constructor(cfg: AgentConfig) {
    this.cfg = cfg;
    this.nodeId = cfg.nodeId;
    this.logger = cfg.logger.child({ nodeId: cfg.nodeId });
    this.link = new ServerLink({
      nodeId: cfg.nodeId,
      servers: cfg.servers,
      credential: cfg.credential,
      tls: cfg.tls,
      logger: this.logger,
      retryMinMs: cfg.retryMinMs,
      retryMaxMs: cfg.retryMaxMs,
      isStopping: () => this.isStopping,
      onRegistered: (again) => this.registered(again),
      // The watch under way may hang on the server left behind: it starts over on the next one.
      onServerChanged: () => this.rewatch?.abort(),
    });
    // Detected once per process and shared by the drivers and the fingerprint.
    this.isolation =
      cfg.taskIsolation === 'off' ||
      cfg.taskUidRange !== undefined ||
      cfg.favorDynmods === false ||
      cfg.cgroupParent !== undefined
        ? detectIsolation({
            ...(cfg.taskIsolation ? { mode: cfg.taskIsolation } : {}),
            ...(cfg.taskUidRange ? { taskUidRange: cfg.taskUidRange } : {}),
            ...(cfg.favorDynmods === false ? { favorDynmods: false } : {}),
            ...(cfg.cgroupParent !== undefined
              ? {
                  detectCgroups: () =>
                    detectCgroups({ parent: cfg.cgroupParent as string, logger: cfg.logger }),
                }
              : {}),
          })
        : detectIsolationOnce();
    this.drivers = (Object.keys(driverFactories) as DriverName[]).map((name) =>
      driverFactories[name]({
        logger: this.logger,
        enabled: name === 'raw_exec' ? cfg.enableRawExec : true,
        dataDir: cfg.dataDir,
        isolation: this.isolation,
        ...(cfg.allowedTaskUsers ? { allowedTaskUsers: cfg.allowedTaskUsers } : {}),
        ...(cfg.taskUidRange ? { taskUidRange: cfg.taskUidRange } : {}),
        ...(cfg.taskPidsLimit !== undefined ? { taskPidsLimit: cfg.taskPidsLimit } : {}),
        ...(cfg.cpuHardCap !== undefined ? { cpuHardCap: cfg.cpuHardCap } : {}),
        ...(cfg.taskOpenFiles !== undefined ? { taskOpenFiles: cfg.taskOpenFiles } : {}),
      }),
    );
    this.state = new AgentStateStore(stateDir(cfg.dataDir), this.logger);
    const reporterOpts: ConstructorParameters<typeof StatusReporter>[0] = {
      send: (updates) => this.link.call((c) => c.updateAllocations(this.nodeId, updates)),
      logger: this.logger,
      onNotFound: () => this.link.forgetRegistration(),
      isWanted: (id) => this.serverKnown.has(id) || this.runners.has(id),
    };
    if (cfg.retryMinMs !== undefined) reporterOpts.retryMinMs = cfg.retryMinMs;
    if (cfg.retryMaxMs !== undefined) reporterOpts.retryMaxMs = cfg.retryMaxMs;
    this.reporter = new StatusReporter(reporterOpts);
    this.usage = new UsageSampler(cfg.nodeId);
    this.network = new AgentNetwork(cfg.network ?? {});
  }

  /** What this node cannot enforce, one line each for the operator (empty when everything is). */
  async isolationWarnings(): Promise<string[]> {
    return [...(await this.isolation).warnings, ...this.network.warnings];
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
    this.loops = [this.link.heartbeatLoop(), this.watchLoop(), this.housekeepingLoop(), this.statsLoop()];
    const maxMs = this.cfg.maxDisconnectMs;
    if (maxMs !== undefined) {
      const onExceeded = (reason: string): void => {
        this.logger.warn({ maxMs }, reason);
        for (const r of this.runners.values()) if (!r.finished) void r.stop(reason);
      };
      this.loops.push(
        watchDisconnect({ maxMs, lastContact: () => this.link.lastContact, onExceeded }, this.abort.signal),
      );
    }
  }

  private async init(): Promise<void> {
    const isolation = await this.isolation;
    for (const warning of isolation.warnings) this.logger.warn({ isolation: true }, warning);
    if (isolation.cgroups !== undefined) {
      const budget = this.cfg.tasksPidsMax ?? defaultTasksPidsMax();
      await isolation.cgroups.setTotalPids(budget).catch((err: unknown) => {
        this.logger.warn({ err, budget }, 'could not set the pids budget of all tasks');
      });
    }
    const moves = isolation.cgroupMoves;
    if (moves?.state === 'mounted')
      this.logger.info(
        { mountPoint: moves.mountPoint },
        'moves into cgroups made quick: a cgroup hierarchy with favordynmods is mounted (umount it, or start the agent with --no-favordynmods, to leave the kernel as it was)',
      );
    else if (moves?.state === 'unavailable')
      this.logger.info(
        { problem: moves.problem },
        'this kernel can not make moves into cgroups quick (favordynmods, Linux 6.0 and later): each task start may wait for an RCU grace period',
      );
    await this.network.start({
      root: isolation.root,
      isolated: isolation.namespaces,
      dataDir: this.cfg.dataDir,
      logger: this.logger,
    });
    for (const warning of this.network.warnings) this.logger.warn({ network: true }, warning);
    const fp = await fingerprint(this.cfg.dataDir, this.drivers, { isolation });
    Object.assign(fp.attributes, this.network.attributes());
    this.driverInfo = fp.drivers;
    const registration: NodeRegistration = {
      id: this.nodeId,
      name: this.cfg.name,
      address: this.addressUrl,
      resources: fp.resources,
      reserved: this.cfg.reserved,
      attributes: fp.attributes,
      drivers: fp.drivers,
      portRange: this.cfg.portRange,
    };
    if (fp.devices.length > 0) registration.devices = fp.devices;
    this.link.setRegistration(registration);
    this.logger.info(
      {
        address: this.addressUrl,
        resources: fp.resources,
        drivers: Object.keys(fp.drivers),
        devices: fp.devices.length,
      },
      'agent starting',
    );
    // Before the first look at the server: what runs here is taken over, never started twice.
    await this.restore();
    try {
      await this.link.register();
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      this.logger.warn({ err }, 'no server reachable yet; will keep trying to register');
    }
  }

  /**
   * Stops the loops and the endpoint. Tasks keep running (the state files describe them, and the
   * next agent process re-attaches to them) unless `killTasks`: then every task is stopped
   * (killSignal, then SIGKILL) first. Idempotent: a second call joins the first.
   */
  stop(options: StopOptions = {}): Promise<void> {
    this.stopping ??= this.shutdown(options.killTasks ?? false);
    return this.stopping;
  }

  private async shutdown(killTasks: boolean): Promise<void> {
    this.logger.info({ allocations: this.runners.size, killTasks }, 'agent stopping');
    this.abort.abort();
    this.link.stopping();
    this.watchSleeper.close();
    this.housekeepingSleeper.close();
    this.statsSleeper.close();
    const runners = [...this.runners.values()];
    if (killTasks) {
      const live = runners.filter((r) => !r.finished);
      await Promise.all(live.map((r) => r.shutdown()));
      // Nothing of theirs was reported: the next agent process starts what the server still wants.
      await Promise.all(live.map((r) => this.state.remove(r.id)));
    } else await Promise.all(runners.map((r) => r.detach()));
    // Whatever happened before the shutdown still goes out, briefly.
    await this.reporter.flush(2_000);
    this.reporter.close();
    await Promise.all(this.loops);
    await this.closeHttp();
    this.link.close();
    await this.network.close(killTasks);
    await this.state.flush();
    this.logger.info({ tasksLeftRunning: !killTasks }, 'agent stopped');
  }

  private get isStopping(): boolean {
    return this.abort.signal.aborted;
  }

  // --- HTTP endpoint ---------------------------------------------------------------------------

  private async listen(): Promise<void> {
    const ctx: AgentHttpContext = {
      nodeId: this.nodeId,
      allocsDir: allocsRoot(this.cfg.dataDir),
      runner: (id) => this.runners.get(id),
      stats: () => this.sampleUsage(),
      shutdown: this.abort.signal,
      counts: () => ({
        allocations: this.runners.size,
        running: [...this.runners.values()].filter((r) => !r.finished).length,
      }),
      logger: this.logger,
      authorizer: this.cfg.credential.authorizer(),
    };
    if (this.cfg.logPollMs !== undefined) ctx.logPollMs = this.cfg.logPollMs;
    const { host, port } = this.cfg.http;
    const tls = this.cfg.tls;
    this.listener = await listen(agentRouter(ctx).handle, {
      host,
      port,
      // Its node certificate; callers must present a server certificate of that CA.
      ...(tls !== undefined ? { tls: listenerTls(tls) } : {}),
      inUse: () =>
        `the agent's HTTP address ${host}:${port} is already in use: choose another httpAddr (port 0 picks a free one)`,
    });
    this.listener.server.on('error', (err) => this.logger.error({ err }, 'agent http server error'));
    this.addressUrl = this.listener.url;
  }

  private async closeHttp(): Promise<void> {
    const listener = this.listener;
    this.listener = undefined;
    await listener?.close();
  }

  // --- servers ---------------------------------------------------------------------------------

  /** Takes a renewed node certificate: new connections, to the servers and to this agent, use it. */
  useCertificate(tls: NodeTls): void {
    this.cfg.tls = tls;
    this.link.useCertificate(tls);
    (this.listener?.server as unknown as TlsServer | undefined)?.setSecureContext(listenerTls(tls));
  }

  /** The node registered (`again`: not for the first time in this process). */
  private registered(again: boolean): void {
    // A watch begun before (it may hang on a connection that a network split cut without a word)
    // starts over at once: the server may have replaced allocations meanwhile.
    if (again) this.rewatch?.abort();
    // After the server forgot the node it may have missed reports, and after an agent restart the
    // previous process may have died before sending some: send the current state of each.
    for (const r of this.runners.values())
      void this.state.durable(r.id).then(() => this.reporter.enqueue(r.status()));
    if (again) this.logger.info({ allocations: this.runners.size }, 're-sent the status of every allocation');
  }

  private async watchLoop(): Promise<void> {
    let index = 0;
    let failures = 0;
    while (!this.isStopping) {
      await this.link.whenRegistered();
      if (this.isStopping) break;
      const rewatch = new AbortController();
      this.rewatch = rewatch;
      try {
        const res = await this.link.call((c) =>
          c.nodeAllocations(
            this.nodeId,
            { index, waitMs: this.cfg.watchWaitMs ?? 30_000 },
            AbortSignal.any([this.abort.signal, rewatch.signal]),
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
        if (rewatch.signal.aborted) {
          // Registered again: from the start, without waiting.
          index = 0;
          failures = 0;
          continue;
        }
        failures += 1;
        if (err instanceof NotFoundError) this.link.forgetRegistration();
        const level = err instanceof UnavailableError || err instanceof NotFoundError ? 'warn' : 'error';
        this.logger[level]({ err, failures }, 'watching allocations failed; retrying');
        await this.watchSleeper.sleep(this.link.backoff(failures));
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
      if (!holdsResources(alloc) || this.forgotten.has(alloc.id)) continue;
      this.startRunner(alloc);
    }
    this.serverKnown = listed;
    for (const [id, runner] of this.runners) {
      if (listed.has(id)) continue;
      if (runner.finished) {
        // Done here and gone there: keep only the id (logs stay on disk until the retention passes).
        this.runners.delete(id);
        this.forgotten.add(id);
        this.forget(runner);
      } else void runner.stop('allocation removed from the server');
    }
  }

  private startRunner(alloc: Allocation): void {
    const runner = this.newRunner(alloc, undefined);
    this.runners.set(alloc.id, runner);
    this.run(runner);
  }

  private newRunner(alloc: Allocation, restored: PersistedAlloc | undefined): AllocRunner {
    const opts: ConstructorParameters<typeof AllocRunner>[0] = {
      alloc,
      allocsDir: allocsRoot(this.cfg.dataDir),
      nodeId: this.nodeId,
      logLimits: this.cfg.logLimits,
      disk: this.cfg.disk,
      driverFor: (name) => this.driverFor(name),
      fetchIdentity: (allocId) => this.link.call((c) => c.allocIdentity(this.nodeId, allocId)),
      recoverDriverFor: (name) => this.drivers.find((d) => d.name === name),
      logger: this.logger,
      // The runner persists before it reports: a status goes out once its state file is written.
      onPersist: (state) => this.state.save(state),
      onUpdate: (update: AllocStatusUpdate) =>
        void this.state.durable(update.allocId).then(() => this.reporter.enqueue(update)),
    };
    opts.taskApiServers = () => this.cfg.servers;
    if (this.cfg.tls !== undefined) {
      const ca = this.cfg.tls.ca;
      opts.taskApiCa = () => ca;
    }
    const networks = this.network.forAllocs;
    if (networks !== undefined) opts.networks = networks;
    if (restored !== undefined) opts.restored = restored;
    return new AllocRunner(opts);
  }

  private run(runner: AllocRunner): void {
    runner
      .run()
      .catch((err: unknown) => this.logger.error({ err, allocId: runner.id }, 'allocation runner crashed'));
  }

  /** The runner is done and the server no longer lists it: its state file goes, its logs stay a while. */
  private forget(runner: AllocRunner): void {
    const root = allocDirPaths(allocsRoot(this.cfg.dataDir), runner.id).root;
    void markAllocDirEnded(root, runner.finishedAt ?? Date.now());
    this.state
      .remove(runner.id)
      .catch((err: unknown) =>
        this.logger.warn({ err, allocId: runner.id }, 'could not remove the allocation state file'),
      );
  }

  /**
   * Loads the state files and takes over what an earlier agent process left: running tasks are
   * re-attached (not restarted), tasks that exited meanwhile are reported with their exit, tasks that
   * can not be found are failed exits; finished allocations are reported again. Resolves once every
   * task's fate is known.
   */
  private async restore(): Promise<void> {
    let saved: PersistedAlloc[];
    try {
      saved = await this.state.load();
    } catch (err) {
      this.logger.error({ err }, 'could not read the agent state: allocations start afresh');
      return;
    }
    const cgroups = (await this.isolation).cgroups;
    if (cgroups !== undefined)
      await killUnrecorded(cgroups, saved, allocsRoot(this.cfg.dataDir), this.logger);
    const restored: AllocRunner[] = [];
    for (const p of saved) {
      if (p.alloc.nodeId !== this.nodeId) {
        this.logger.warn(
          { allocId: p.alloc.id, nodeId: p.alloc.nodeId },
          'ignoring the state file of an allocation of another node',
        );
        continue;
      }
      const runner = this.newRunner(p.alloc, p);
      this.runners.set(runner.id, runner);
      restored.push(runner);
    }
    for (const r of restored) this.run(r);
    await Promise.all(restored.map((r) => r.recovered()));
    // Networks whose allocations ended while no agent ran (or were never recorded) are given back.
    await this.network.reconcile(new Set(restored.filter((r) => !r.finished).map((r) => r.id)));
    if (restored.length > 0)
      this.logger.info(
        {
          allocations: restored.length,
          running: restored.filter((r) => !r.finished).length,
        },
        'took over the allocations of the previous agent process',
      );
  }

  // --- housekeeping ----------------------------------------------------------------------------

  /** Now and then removes the dirs of allocations past retention (their shippers rotate the logs). */
  private async housekeepingLoop(): Promise<void> {
    const gcEvery = this.cfg.gcIntervalMs ?? Math.min(this.cfg.logRetentionMs / 4, 10 * 60_000);
    while (!this.isStopping) {
      try {
        await this.collectGarbage();
      } catch (err) {
        this.logger.warn({ err }, 'log housekeeping failed; will try again');
      }
      await this.housekeepingSleeper.sleep(gcEvery);
    }
  }

  /** Removes the directories of allocations that ended longer than the retention ago. */
  async collectGarbage(now = Date.now()): Promise<string[]> {
    const removed = await gcAllocDirs(allocsRoot(this.cfg.dataDir), {
      retentionMs: this.cfg.logRetentionMs,
      now,
      keep: (id) => this.runners.has(id),
    });
    if (removed.length > 0)
      this.logger.info({ allocations: removed }, 'removed the directories of allocations past retention');
    return removed;
  }

  private async statsLoop(): Promise<void> {
    const every = this.cfg.statsIntervalMs ?? 5_000;
    while (!this.isStopping) {
      await this.statsSleeper.sleep(every);
      if (this.isStopping) break;
      try {
        if ([...this.runners.values()].some((r) => !r.finished)) await this.sampleUsage();
      } catch (err) {
        this.logger.warn({ err }, 'could not sample task usage');
      }
    }
  }

  /** Usage of every running task now (see usage-sampler.ts). */
  sampleUsage(): Promise<NodeStats> {
    return this.usage.sample([...this.runners.values()]);
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

/** What the agent's listener serves: its node certificate, then the CA's. */
function listenerTls(tls: NodeTls): { cert: string; key: string; ca: string } {
  return { cert: `${tls.cert.trim()}\n${tls.ca.trim()}\n`, key: tls.key, ca: tls.ca };
}
