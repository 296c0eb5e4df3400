/**
 * The way from a follower to the leader, for the few calls only the leader can answer (heartbeats:
 * the failure detector lives in its memory). Each server writes its address under
 * `/unum/servers/<id>` when it starts; the head of the election's line holds the leader's server id. A follower
 * reads both when it first needs the leader and keeps the address until a call to it fails or is
 * refused with `not_leader` (then it reads them again, once per call).
 *
 *   agent ─► follower: LeaderLink.forwardHeartbeat ─► POST <leader>/v1/nodes/:id/heartbeat
 *            (`x-unum-forwarded`: the leader never forwards it on; on a plain listener the node's own
 *            Authorization, with TLS the follower's server certificate and the node's id in
 *            `x-unum-on-behalf-of-node`, which the leader takes only from a server certificate)
 */
import { UnumClient } from '../../api/client.ts';
import type { ClientTls } from '../../api/https.ts';
import type { HeartbeatAnswer } from '../../api/types.ts';
import { NotLeaderError, UnavailableError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { Election } from '../../store/recipes/election.ts';
import { Session } from '../../store/recipes/session.ts';
import type { Store } from '../../store/types.ts';
import { keys } from '../keys.ts';
import { ON_BEHALF_OF_NODE_HEADER } from '../node-credentials.ts';

/** A server gone this long drops out of the list of servers. */
export const PRESENCE_TTL_SECONDS = 10;
const SERVERS_PREFIX = keys.server('');

/** Marks a call a server hands on to the leader. */
export const FORWARDED_HEADER = 'x-unum-forwarded';

/** How long a follower waits for the leader's answer to a forwarded call. */
export const FORWARD_TIMEOUT_MS = 5_000;

export interface ServerRecord {
  id: string;
  /** Base URL of its API, e.g. http://10.0.0.2:8686. */
  addr: string;
  startedAt: number;
}

export interface LeaderLinkOptions {
  store: Store;
  serverId: string;
  /** Whether this server leads now. */
  isLeader: () => boolean;
  /** With TLS: the CA and this server's certificate, for calls to the leader. */
  tls?: () => ClientTls | undefined;
  log: Logger;
}

export class LeaderLink {
  private readonly o: LeaderLinkOptions;
  private leader: { id: string; addr: string } | undefined;
  /** The lease this server's record lives on. */
  private presence: Session | undefined;
  /** The server is stopping: its record is not written again. */
  private closed = false;
  /** Holds the shared pool of TLS connections to the leader open between forwarded calls. */
  private anchor: UnumClient | undefined;

  constructor(o: LeaderLinkOptions) {
    this.o = o;
  }

  isLeader(): boolean {
    return this.o.isLeader();
  }

  /**
   * Writes where this server answers, for the others to reach it when it leads, on a lease this
   * server keeps alive: a server that is gone drops out of the list (`unum status --servers`) once
   * the lease ends. A lease lost while the server lives (a long stall) is replaced, and the record
   * written again.
   */
  async announce(addr: string, now: number): Promise<void> {
    if (this.closed) return;
    const record: ServerRecord = { id: this.o.serverId, addr, startedAt: now };
    const session = await Session.open(this.o.store, PRESENCE_TTL_SECONDS);
    this.presence = session;
    await this.o.store.put(keys.server(this.o.serverId), JSON.stringify(record), { lease: session.leaseId });
    session.lost.addEventListener(
      'abort',
      () => {
        if (this.closed || this.presence !== session) return;
        const again = () =>
          this.announce(addr, now).catch((err: unknown) => {
            this.o.log.warn({ err }, 'could not write this server into the list of servers; retrying');
            const t = setTimeout(again, 1_000);
            t.unref();
          });
        void again();
      },
      { once: true },
    );
  }

  /** The servers that answer now (their records live while they do), and the leader's id. */
  async servers(): Promise<{ servers: ServerRecord[]; leader: string | undefined }> {
    const [listed, leader] = await Promise.all([
      this.o.store.range({ prefix: SERVERS_PREFIX }),
      new Election(this.o.store, keys.leaders).leader(),
    ]);
    return {
      servers: listed.kvs.map((kv) => JSON.parse(kv.value) as ServerRecord),
      leader: leader?.value,
    };
  }

  /**
   * The leader's address, read from the Store when not known yet. UnavailableError while nobody
   * leads (an election is under way) or the leader wrote no address.
   */
  async leaderAddress(): Promise<{ id: string; addr: string }> {
    if (this.leader) return this.leader;
    const id = (await new Election(this.o.store, keys.leaders).leader())?.value;
    if (id === undefined)
      throw new UnavailableError('no server leads right now (an election is under way); try again shortly');
    if (id === this.o.serverId)
      throw new UnavailableError('this server is taking office or just left it; try again shortly');
    const kv = await this.o.store.get(keys.server(id));
    if (!kv) throw new UnavailableError(`the leader (server ${id}) has not written its address yet`);
    const record = JSON.parse(kv.value) as ServerRecord;
    this.leader = { id, addr: record.addr };
    return this.leader;
  }

  /** Lets go of the connections kept to the leader, and of this server's place in the list. */
  async close(): Promise<void> {
    this.closed = true;
    const presence = this.presence;
    this.presence = undefined;
    await presence?.close();
    this.anchor?.close();
    this.anchor = undefined;
  }

  /** Forgets the leader's address: the next call reads it again. */
  forget(): void {
    this.leader = undefined;
  }

  forwardHeartbeat(nodeId: string, authorization: string | undefined): Promise<HeartbeatAnswer> {
    return this.toLeader((client) => client.heartbeat(nodeId), authorization, nodeId);
  }

  /**
   * Calls the leader with the caller's own credential. A leader that cannot be reached or says it
   * does not lead is looked up again and called once more.
   */
  private async toLeader<T>(
    call: (c: UnumClient) => Promise<T>,
    authorization: string | undefined,
    nodeId: string,
  ): Promise<T> {
    const tls = this.o.tls?.();
    const token = tls ? undefined : authorization?.replace(/^Bearer\s+/i, '');
    for (let attempt = 0; ; attempt++) {
      const leader = await this.leaderAddress();
      const client = new UnumClient({
        addr: leader.addr,
        token: () => token,
        timeoutMs: FORWARD_TIMEOUT_MS,
        headers: {
          [FORWARDED_HEADER]: this.o.serverId,
          ...(tls ? { [ON_BEHALF_OF_NODE_HEADER]: nodeId } : {}),
        },
        ...(tls ?? {}),
      });
      if (tls && this.anchor?.addr !== client.addr) {
        this.anchor?.close();
        this.anchor = new UnumClient({ addr: leader.addr, ...tls });
      }
      try {
        return await call(client);
      } catch (err) {
        if (!(err instanceof UnavailableError || err instanceof NotLeaderError)) throw err;
        this.forget();
        if (attempt >= 1)
          throw new UnavailableError(`the leader could not be reached: ${err.message}`, { cause: err });
        this.o.log.debug(
          { err, leader: leader.id },
          'the leader did not take a forwarded call; looking it up again',
        );
      } finally {
        client.close();
      }
    }
  }
}
