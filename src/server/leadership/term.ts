/**
 * A leadership term: the span during which this server leads — holds the head of the election's
 * line (its key, `leaderKey`, the first created of the candidates'; ./election.ts) — from the
 * revision that created that key until the lease is lost or given up. Everything the leader runs (scheduler
 * workers, the plan applier, controllers) receives the term it was started in and writes only
 * through `term.txn`, which adds the term's fence — a compare on the leader key's create revision
 * — to every transaction. A term never loses its fence: a write after the term ended is refused
 * with NotLeaderError before it is sent, and one sent just as the term ended fails its fence and
 * is refused the same way. So a deposed leader's late plan cannot land (the fencing token of
 * Chubby and etcd's election: the create revision is unique and grows with every new leader).
 */
import { NotLeaderError } from '../../core/errors.ts';
import type { Compare, TxnRequest, TxnResult } from '../../store/types.ts';

export interface TermTarget {
  txn(request: TxnRequest): Promise<TxnResult>;
}

export class Term {
  /** The leader key's create revision: the fencing token, unique per term and growing. */
  readonly revision: number;
  readonly serverId: string;
  /** The compares every write of this term carries. */
  readonly fence: readonly Compare[];
  private readonly leaderKey: string;
  /** Where the candidates wait in line (the leader key's folder). */
  private readonly linePrefix: string;
  private readonly store: TermTarget;
  private readonly controller = new AbortController();
  private endReason = '';

  constructor(store: TermTarget, leaderKey: string, serverId: string, revision: number) {
    this.store = store;
    this.leaderKey = leaderKey;
    this.linePrefix = leaderKey.slice(0, leaderKey.lastIndexOf('/') + 1);
    this.serverId = serverId;
    this.revision = revision;
    this.fence = Object.freeze([{ key: leaderKey, target: 'create', op: '=', value: revision }]);
  }

  /** What events written in this term name as their author. */
  get actor(): string {
    return `leader:${this.serverId}`;
  }

  /** Aborted when the term ends: work started in it stops. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get active(): boolean {
    return !this.controller.signal.aborted;
  }

  /** Ends the term (idempotent): its signal aborts and its writes are refused from now on. */
  end(reason: string): void {
    if (!this.active) return;
    this.endReason = reason;
    this.controller.abort(new NotLeaderError(this.describeEnd()));
  }

  /** NotLeaderError unless the term is still on. */
  check(): void {
    if (!this.active) throw new NotLeaderError(this.describeEnd());
  }

  /**
   * A transaction fenced by this term. NotLeaderError when the term has ended or the leader key is
   * no longer this term's (the term then ends). Otherwise the result as the Store gives it: a
   * failed compare of the caller's own is `succeeded: false`, as usual.
   */
  async txn(request: TxnRequest): Promise<TxnResult> {
    this.check();
    const res = await this.store.txn({
      compare: [...this.fence, ...(request.compare ?? [])],
      success: request.success,
      // On failure, learn whether it was the fence: read this term's place and the line of
      // candidates in the same revision.
      failure: [
        ...(request.failure ?? []),
        { type: 'get', key: this.leaderKey },
        { type: 'get', prefix: this.linePrefix },
      ],
    });
    if (res.succeeded) return res;
    const [own, line] = res.results.slice(-2).map((r) => (r.type === 'get' ? r.kvs : []));
    if (own?.[0]?.createRevision !== this.revision) {
      const next = [...(line ?? [])].sort((a, b) => a.createRevision - b.createRevision)[0];
      this.end(
        next
          ? `another leader took over at revision ${next.createRevision}`
          : "this leader's place in the election is gone (its lease ended)",
      );
      this.check();
    }
    return { ...res, results: res.results.slice(0, -2) };
  }

  private describeEnd(): string {
    return `the leadership term of server ${this.serverId} that began at revision ${this.revision} has ended (${this.endReason || 'stepped down'}); the current leader redoes this work`;
  }
}
