/**
 * Heartbeats: failure detection in the leader's memory. A heartbeat costs a map update on the
 * leader and nothing in the Store; only transitions are written — a node's registration puts its
 * liveness key (`/unum/heartbeats/<id>`, down → ready), and the node-down controller deletes it in
 * the transaction that marks the node down (ready → down). Every server's cache follows that key, so
 * every server agrees on which nodes are up, and none of them writes per beat.
 *
 *   agent ─► any server ─► route (node's credential) ─► Heartbeats.beat
 *                                     follower: forwarded to the leader (LeaderLink), same credential
 *                                     leader:   lastBeat[node] = now  (memory only)
 *   leader: node-down controller, per node: overdueIn(node) > 0 ? look again then : mark it down
 *
 * Silence is counted in the time this server was awake, not in wall time: a gap between two looks
 * at the clock longer than STALL_MS (the process was paused, or its event loop blocked) counts as
 * TICK_MS only. Beats sent during such a stall wait in the sockets until the loop runs again; the
 * timers that would declare their nodes down fire first, so a stalled leader must not take the gap
 * for its nodes' silence. While it leads, a ticker looks at the clock every TICK_MS.
 *
 * A new term counts every node's silence from the term's start at the earliest: a new leader has no
 * history, and giving every node a full grace is what keeps a leader change from taking every node
 * down at once.
 *
 * The interval and the grace are settings (`--heartbeat-interval`, `--heartbeat-grace`), told to
 * the agents in every answer. Past `maxRate` beats per second for the whole cluster they grow with
 * the number of nodes up (as Nomad's heartbeat TTL does), so that the leader's cost stays bounded
 * however many nodes join; a small cluster keeps them as set.
 */
import type { Clock, ClockTimer } from '../core/clock.ts';
import { InvalidError, NotFoundError, NotLeaderError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { HeartbeatAnswer } from '../api/types.ts';
import type { Store } from '../store/types.ts';
import type { CacheChange, CacheListener } from './cache.ts';
import { prefixes } from './keys.ts';
import type { Term } from './leadership/term.ts';

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 1_000;
export const DEFAULT_HEARTBEAT_GRACE_MS = 4_000;
/** Beats per second the leader asks of all agents together (bench/heartbeats.ts: ~100 µs each). */
export const DEFAULT_HEARTBEAT_MAX_RATE = 5_000;
/** Bounds of the settings: beats faster than this are noise; a grace past this is no detection. */
export const MIN_HEARTBEAT_INTERVAL_MS = 100;
export const MAX_HEARTBEAT_GRACE_MS = 10 * 60_000;
/** While leading, the clock is looked at at least this often. */
export const TICK_MS = 250;
/** A gap between two looks at the clock longer than this is a stall of this server. */
export const STALL_MS = 1_000;

export interface HeartbeatSettings {
  /** How often agents beat (they are told so at registration and in every answer). */
  intervalMs: number;
  /** Silence after which the leader marks a node down. At least twice the interval. */
  graceMs: number;
  /**
   * Beats per second the leader asks of all the agents together; 0 for no limit. Past
   * `maxRate × interval` nodes, the interval and the grace both grow in proportion to the nodes.
   */
  maxRate: number;
}

/** The interval and grace for a cluster of `nodes` nodes up (see HeartbeatSettings.maxRate). */
export function scaled(s: HeartbeatSettings, nodes: number): { intervalMs: number; graceMs: number } {
  if (s.maxRate <= 0 || nodes * 1000 <= s.maxRate * s.intervalMs)
    return { intervalMs: s.intervalMs, graceMs: s.graceMs };
  const intervalMs = Math.ceil((nodes * 1000) / s.maxRate);
  return { intervalMs, graceMs: Math.ceil((s.graceMs * intervalMs) / s.intervalMs) };
}

/** The settings, checked: InvalidError naming the field otherwise. */
export function heartbeatSettings(o: Partial<HeartbeatSettings> = {}): HeartbeatSettings {
  const intervalMs = o.intervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
  const graceMs = o.graceMs ?? Math.max(DEFAULT_HEARTBEAT_GRACE_MS, 4 * intervalMs);
  const maxRate = o.maxRate ?? DEFAULT_HEARTBEAT_MAX_RATE;
  const fields: { path: string; message: string }[] = [];
  if (!Number.isFinite(intervalMs) || intervalMs < MIN_HEARTBEAT_INTERVAL_MS)
    fields.push({
      path: 'heartbeatIntervalMs',
      message: `expected at least ${MIN_HEARTBEAT_INTERVAL_MS} ms, got ${intervalMs}`,
    });
  else if (!Number.isFinite(graceMs) || graceMs < 2 * intervalMs || graceMs > MAX_HEARTBEAT_GRACE_MS)
    fields.push({
      path: 'heartbeatGraceMs',
      message: `expected at least twice the heartbeat interval (${2 * intervalMs} ms: one late beat must not take a node down) and at most ${MAX_HEARTBEAT_GRACE_MS} ms, got ${graceMs}`,
    });
  if (!Number.isFinite(maxRate) || maxRate < 0)
    fields.push({
      path: 'heartbeatMaxRate',
      message: `expected beats per second, 0 or more, got ${maxRate}`,
    });
  if (fields.length > 0) throw InvalidError.fromFields(fields, 'invalid heartbeat settings');
  return { intervalMs, graceMs, maxRate };
}

/** What a follower needs of the leader: whether it is this server, and a way to hand a beat on. */
export interface LeaderRelay {
  isLeader(): boolean;
  /**
   * Hands `nodeId`'s beat to the leader with the node's own `authorization`, and returns its answer.
   * The leader's errors pass through (NotFoundError: register again); UnavailableError when no
   * leader can be reached.
   */
  forwardHeartbeat(nodeId: string, authorization: string | undefined): Promise<HeartbeatAnswer>;
}

/** What the heartbeat route knows of the request. */
export interface BeatOrigin {
  /** The request's Authorization header, handed on when the beat is forwarded. */
  authorization?: string | undefined;
  /** Forwarded by another server: never forwarded again (a loop, or a stale idea of the leader). */
  forwarded: boolean;
}

/** The cache, as far as heartbeats read it. */
export interface LivenessView {
  node(id: string): { id: string } | undefined;
  isAlive(nodeId: string): boolean;
  aliveCount(): number;
  subscribe(listener: CacheListener): () => void;
}

interface Beat {
  /** Awake time (see `sample`) of the last beat. */
  awake: number;
  /** `clock.now()` of the last beat, for people. */
  at: number;
  /** The grace the node was told with it (the cluster may have shrunk since). */
  graceMs: number;
}

export interface HeartbeatsOptions {
  clock: Clock;
  cache: LivenessView;
  relay: LeaderRelay;
  log: Logger;
  settings?: Partial<HeartbeatSettings>;
}

export class Heartbeats {
  readonly settings: HeartbeatSettings;
  private readonly clock: Clock;
  private readonly cache: LivenessView;
  private readonly relay: LeaderRelay;
  private readonly log: Logger;
  private readonly beats = new Map<string, Beat>();
  private readonly unsubscribe: () => void;
  /** Time this server was awake, in ms, as of `sampledAt`. */
  private awake = 0;
  private sampledAt: number;
  /** Awake time when the current term began (no silence is counted before it). */
  private termStart = 0;
  private ticker: ClockTimer | undefined;

  constructor(o: HeartbeatsOptions) {
    this.settings = heartbeatSettings(o.settings);
    this.clock = o.clock;
    this.cache = o.cache;
    this.relay = o.relay;
    this.log = o.log;
    this.sampledAt = o.clock.now();
    this.unsubscribe = o.cache.subscribe((changes) => {
      for (const c of changes) this.onChange(c);
    });
  }

  /**
   * What agents are told now: how often to beat, and the silence after which their node is down
   * (both grow with the cluster past `maxRate`).
   */
  get answer(): HeartbeatAnswer {
    const { intervalMs, graceMs } = scaled(this.settings, this.cache.aliveCount());
    // ttlSeconds: what agents before intervalMs read (they beat every third of it).
    return { intervalMs, graceMs, ttlSeconds: graceMs / 1000 };
  }

  /**
   * A beat from `nodeId`, whose credential the route has checked. On the leader it is recorded in
   * memory (nothing is written); a follower forwards it. NotFoundError when the node must register
   * again (unknown, or marked down); NotLeaderError for a forwarded beat that reached a server that
   * no longer leads; UnavailableError when a follower can reach no leader.
   */
  async beat(nodeId: string, origin: BeatOrigin): Promise<HeartbeatAnswer> {
    if (this.relay.isLeader()) {
      if (this.cache.node(nodeId) === undefined || !this.cache.isAlive(nodeId))
        throw new NotFoundError(
          `node ${nodeId} is not registered or was marked down after missing its heartbeats; register again`,
        );
      const answer = this.answer;
      this.record(nodeId, answer.graceMs);
      return answer;
    }
    if (origin.forwarded)
      throw new NotLeaderError('this server does not lead (any more): send the heartbeat to the leader');
    const answer = await this.relay.forwardHeartbeat(nodeId, origin.authorization);
    // Seen through this server: what it shows as the node's last heartbeat.
    this.record(nodeId, answer.graceMs);
    return answer;
  }

  /** When this server last had a beat of `nodeId` (clock ms), if it had one. */
  lastSeen(nodeId: string): number | undefined {
    return this.beats.get(nodeId)?.at;
  }

  /**
   * The start of a term of this server: silence is counted from now at the earliest, and the clock
   * is looked at every TICK_MS until the term ends (so that a stall is seen as one).
   */
  lead(term: Term): void {
    this.termStart = this.sample();
    this.stopTicker();
    const tick = () => {
      this.sample();
      this.ticker = this.clock.setTimeout(tick, TICK_MS);
    };
    this.ticker = this.clock.setTimeout(tick, TICK_MS);
    term.signal.addEventListener('abort', () => this.stopTicker(), { once: true });
  }

  /**
   * Milliseconds until `nodeId` has been silent for its grace in the current term: > 0 means look
   * again then; ≤ 0 means it is overdue. Silence counts from the later of its last beat and the
   * term's start, in awake time; the grace is the current one, or the longer one the node was told
   * at its last beat.
   */
  overdueIn(nodeId: string): number {
    const now = this.sample();
    const beat = this.beats.get(nodeId);
    const grace = Math.max(this.answer.graceMs, beat?.graceMs ?? 0);
    return Math.max(beat?.awake ?? 0, this.termStart) + grace - now;
  }

  /** How long `nodeId` has been silent in the current term (awake ms), for the event that says so. */
  silenceOf(nodeId: string): number {
    const now = this.sample();
    return now - Math.max(this.beats.get(nodeId)?.awake ?? 0, this.termStart);
  }

  close(): void {
    this.unsubscribe();
    this.stopTicker();
  }

  private record(nodeId: string, graceMs: number): void {
    const awake = this.sample();
    const at = this.clock.now();
    const beat = this.beats.get(nodeId);
    if (beat) {
      beat.awake = awake;
      beat.at = at;
      beat.graceMs = graceMs;
    } else this.beats.set(nodeId, { awake, at, graceMs });
  }

  /** The awake time now: the clock's progress since the last look, a stall counting as TICK_MS. */
  private sample(): number {
    const now = this.clock.now();
    const gap = now - this.sampledAt;
    this.sampledAt = now;
    if (gap > STALL_MS) {
      // Without the ticker (not leading) a long gap is only a quiet spell, not worth a word.
      if (this.ticker !== undefined)
        this.log.warn(
          { stalledMs: gap },
          "this server's event loop stalled: the stall does not count as silence of the nodes",
        );
      this.awake += TICK_MS;
    } else if (gap > 0) this.awake += gap;
    return this.awake;
  }

  private stopTicker(): void {
    if (this.ticker !== undefined) this.clock.clearTimeout(this.ticker);
    this.ticker = undefined;
  }

  private onChange(c: CacheChange): void {
    // A registration (the liveness key written) is as good as a beat, on every server.
    if (c.kind === 'heartbeat' && c.alive) this.record(c.nodeId, this.answer.graceMs);
    else if (c.kind === 'node' && c.node === undefined && c.prev !== undefined) this.beats.delete(c.prev.id);
  }
}

/**
 * Liveness keys written before beats moved into the leader's memory sit on a lease of their own
 * that nothing renews any more. Each is written again without it (same value, compared on its
 * revision) and the lease revoked, so that an upgrade does not take every node down when those
 * leases run out. Returns how many were detached; nothing to do (and nothing written) after that.
 */
export async function detachLivenessLeases(store: Store): Promise<number> {
  const { kvs } = await store.range({ prefix: prefixes.heartbeats });
  const leased = kvs.filter((kv) => kv.lease !== 0);
  const detached = await Promise.all(
    leased.map(async (kv) => {
      const res = await store.txn({
        compare: [{ key: kv.key, target: 'mod', op: '=', value: kv.modRevision }],
        success: [{ type: 'put', key: kv.key, value: kv.value }],
      });
      if (res.succeeded) await store.revokeLease(kv.lease).catch(() => undefined);
      return res.succeeded;
    }),
  );
  return detached.filter(Boolean).length;
}
