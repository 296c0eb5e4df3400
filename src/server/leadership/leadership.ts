/**
 * Leadership: what only the leader runs, for as long as it leads. The election gives this server a
 * term; the term is handed to the scheduler workers, the plan applier and the controllers, and ends
 * when the lease is lost or the server stops — after which every write of that term is refused.
 *
 *   Election.campaign ─► Term ─┬─► broker enabled ◄── pending evaluations from the cache
 *                              ├─► workers: broker ─► schedule ─► PlanApplier.apply(plan, term)
 *                              ├─► Heartbeats.lead: every node's silence counted from now at the earliest
 *                              ├─► ControllerManager: node-down, blocked evaluations, drain, collector
 *                              └─► renew the lease every ttl/3; lost ─► term.end()
 */
import { systemClock, type Clock } from '../../core/clock.ts';
import { NotLeaderError } from '../../core/errors.ts';
import { newId } from '../../core/ids.ts';
import type { Logger } from '../../core/log.ts';
import type { Store } from '../../store/types.ts';
import { EvalBroker } from '../broker.ts';
import type { CacheChange, StateCache } from '../cache.ts';
import { blockedEvalsController } from '../controllers/blocked-evals.ts';
import {
  DEFAULT_RETENTION,
  collectGarbage,
  collectorController,
  type Collected,
  type Retention,
} from '../controllers/collector.ts';
import { ControllerManager } from '../controllers/controller.ts';
import { drainController } from '../controllers/drain.ts';
import { nodeDownController } from '../controllers/node-down.ts';
import type { Heartbeats } from '../heartbeats.ts';
import { keys } from '../keys.ts';
import { PlanApplier } from '../plan-applier.ts';
import { Election, type Elected } from './election.ts';
import { Term } from './term.ts';
import { runWorker } from './workers.ts';

/**
 * The leader's lease: a leader that dies (or stalls) this long hands over to the next server in
 * line, so leadership moves within about this time plus one Store round trip. Renewed every third of
 * it. Short enough for a quick failover, and at least etcd's minimum lease TTL (1.5 s by default).
 */
export const LEADER_TTL_SECONDS = 2;

export interface LeaderOptions {
  store: Store;
  cache: StateCache;
  log: Logger;
  serverId: string;
  workers?: number;
  retention?: Partial<Retention>;
  clock?: Clock;
  /** Seconds the leader lease lives without renewal (default 10). */
  ttlSeconds?: number;
  /** The failure detector the node-down controller asks (without one no node-down controller runs). */
  heartbeats?: Pick<Heartbeats, 'lead' | 'overdueIn' | 'silenceOf'>;
}

export class Leadership {
  readonly broker: EvalBroker;
  readonly applier: PlanApplier;
  readonly election: Election;
  private readonly store: Store;
  private readonly cache: StateCache;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly serverId: string;
  private readonly workerCount: number;
  private readonly retention: Retention;
  private readonly controllers: ControllerManager;
  private readonly heartbeats: LeaderOptions['heartbeats'];
  private readonly abort = new AbortController();
  private current: Term | undefined;
  private running: Promise<void> | undefined;

  constructor(o: LeaderOptions) {
    this.store = o.store;
    this.cache = o.cache;
    this.log = o.log;
    this.clock = o.clock ?? systemClock;
    this.serverId = o.serverId;
    this.workerCount = o.workers ?? 1;
    this.heartbeats = o.heartbeats;
    this.retention = { ...DEFAULT_RETENTION, ...o.retention };
    this.broker = new EvalBroker(this.clock);
    this.applier = new PlanApplier(o.cache, o.log, this.clock);
    this.election = new Election({
      store: o.store,
      prefix: keys.leaders,
      candidate: o.serverId,
      ttlSeconds: o.ttlSeconds ?? LEADER_TTL_SECONDS,
      log: o.log,
    });
    this.controllers = new ControllerManager({
      changes: o.cache,
      clock: this.clock,
      log: o.log,
      controllers: [
        ...(o.heartbeats
          ? [nodeDownController({ cache: o.cache, clock: this.clock, log: o.log, heartbeats: o.heartbeats })]
          : []),
        blockedEvalsController({ broker: this.broker }),
        drainController({ cache: o.cache, clock: this.clock, log: o.log }),
        collectorController(this.collectorDeps()),
      ],
    });
  }

  get isLeader(): boolean {
    return this.current?.active ?? false;
  }

  /** The term this server leads in now, if it leads. */
  get term(): Term | undefined {
    return this.current?.active ? this.current : undefined;
  }

  start(): void {
    this.running = this.campaign().catch((err: unknown) => this.log.error({ err }, 'leadership loop failed'));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.current?.end('the server is stopping');
    await this.running;
  }

  /** Runs the collector now (leader only: NotLeaderError otherwise). */
  collectGarbage(now = this.clock.now()): Promise<Collected> {
    const term = this.term;
    if (!term) throw new NotLeaderError(`server ${this.serverId} is not the leader`);
    return collectGarbage(this.collectorDeps(), term, now);
  }

  private collectorDeps() {
    return {
      store: this.store,
      cache: this.cache,
      clock: this.clock,
      log: this.log,
      retention: this.retention,
    };
  }

  private async campaign(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        const elected = await this.election.campaign(signal);
        if (!elected) break;
        await this.lead(elected);
      } catch (err) {
        if (signal.aborted) break;
        this.log.warn({ err }, 'leader election failed; retrying');
        await this.clock.sleep(1000, signal);
      }
    }
  }

  private async lead(elected: Elected): Promise<void> {
    const term = new Term(this.store, elected.key, this.serverId, elected.revision);
    this.current = term;
    // From this instant: a beat this server records now counts, and no node is overdue before a grace.
    this.heartbeats?.lead(term);
    if (this.abort.signal.aborted) term.end('the server is stopping');
    this.log.info({ serverId: this.serverId, term: term.revision }, 'this server is now the leader');
    const work: Promise<void>[] = [];
    try {
      if (!(await this.cache.waitForIndex(term.revision)))
        throw new Error(`the cache did not reach the term's revision ${term.revision}`);
      this.broker.setEnabled(true);
      const unsubscribe = this.cache.subscribe((changes) => this.feedBroker(changes));
      term.signal.addEventListener('abort', unsubscribe, { once: true });
      this.restore();
      for (let i = 0; i < this.workerCount; i++)
        work.push(
          runWorker(i, term, this.workerDeps()).catch((err: unknown) =>
            this.log.error({ err }, 'worker failed'),
          ),
        );
      work.push(
        this.controllers.run(term).catch((err: unknown) => this.log.error({ err }, 'controllers failed')),
      );
      await this.renew(elected, term);
    } finally {
      term.end('stepped down');
      this.broker.setEnabled(false);
      await Promise.all(work);
      await this.election.resign(elected);
      this.log.info({ serverId: this.serverId, term: term.revision }, 'leadership term ended');
    }
  }

  /** Renews the lease every third of its TTL until the term ends or the lease is lost. */
  private async renew(elected: Elected, term: Term): Promise<void> {
    while (term.active) {
      await this.clock.sleep((this.election.ttlSeconds * 1000) / 3, term.signal);
      if (!term.active) return;
      try {
        await this.election.renew(elected);
      } catch (err) {
        this.log.error({ err }, 'lost the leader lease; stepping down');
        term.end('lost the leader lease');
      }
    }
  }

  private workerDeps() {
    return {
      broker: this.broker,
      cache: this.cache,
      applier: this.applier,
      clock: this.clock,
      log: this.log,
      newId,
      random: Math.random,
    };
  }

  /** On taking office: queue what the previous leader left. */
  private restore(): void {
    for (const e of this.cache.listEvals()) {
      if (e.status === 'pending') this.broker.enqueue(e);
      else if (e.status === 'blocked') this.broker.block(e);
    }
  }

  private feedBroker(changes: CacheChange[]): void {
    for (const c of changes) {
      if (c.kind === 'eval' && c.evaluation?.status === 'pending') this.broker.enqueue(c.evaluation);
      else if (c.kind === 'resync') this.restore();
    }
  }
}

export type { Retention };
