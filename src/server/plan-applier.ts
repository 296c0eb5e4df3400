/**
 * The plan applier (leader only): the single writer of placements. It re-checks a scheduler's plan
 * against the latest state — the node is still ready, the resources are still free, no allocation
 * changed under it — and commits the plan, the evaluation's outcome and the events in one Store
 * transaction. A stale plan is refused (the worker schedules again on fresher state). The
 * transaction goes through the leadership term the plan was made in: after that term, the plan is
 * refused with NotLeaderError, never written unfenced.
 */
import type { Clock } from '../core/clock.ts';
import { shortId } from '../core/ids.ts';
import type { Logger } from '../core/log.ts';
import type { Allocation, Evaluation, Plan } from '../core/types.ts';
import { isTerminal } from '../core/alloc.ts';
import { checkPlan } from '../scheduler/check-plan.ts';
import type { Compare, TxnOp } from '../store/types.ts';
import type { Term } from './leadership/term.ts';
import type { StateCache } from './cache.ts';
import { eventOp, putOp } from './events.ts';
import { keys } from './keys.ts';
import { stoppingEvent } from './state/allocs.ts';

export interface ApplyResult {
  ok: boolean;
  revision: number;
  /** Why a plan was refused. */
  reason?: string;
  evaluation?: Evaluation;
}

export class PlanApplier {
  private readonly cache: StateCache;
  private readonly log: Logger;
  private readonly clock: Clock;

  constructor(cache: StateCache, log: Logger, clock: Clock) {
    this.cache = cache;
    this.log = log;
    this.clock = clock;
  }

  /** Commits `plan` in `term`. NotLeaderError when the term has ended (nothing is written). */
  async apply(plan: Plan, evaluation: Evaluation, term: Term, now = this.clock.now()): Promise<ApplyResult> {
    term.check();
    const actor = term.actor;
    const compare: Compare[] = [];
    const ops: TxnOp[] = [];
    const check = checkPlan(this.cache, plan);
    if (!check.ok) return { ok: false, revision: this.cache.index, reason: check.reason };
    const touched = new Map<string, Allocation>();
    const current = (id: string): Allocation | undefined => touched.get(id) ?? this.cache.alloc(id);
    const guarded = new Set<string>();
    const guard = (id: string) => {
      const key = keys.alloc(id);
      if (guarded.has(key)) return;
      guarded.add(key);
      compare.push({ key, target: 'mod', op: '=', value: this.cache.revisionOf(key) });
    };

    const stops = [
      ...plan.stop.map((s) => ({ ...s, preempted: false })),
      ...plan.preempt.map((s) => ({ ...s, preempted: true })),
    ];
    for (const s of stops) {
      const a = current(s.allocId);
      if (!a) continue;
      if (a.desiredStatus === 'stop') {
        // Stopped meanwhile: still record which allocation replaces it.
        if (s.nextAllocId !== undefined && a.nextAllocId === undefined) {
          guard(a.id);
          touched.set(a.id, { ...a, nextAllocId: s.nextAllocId, modifiedAt: now });
        }
        continue;
      }
      guard(a.id);
      touched.set(a.id, {
        ...a,
        desiredStatus: 'stop',
        desiredDescription: s.description,
        ...(s.nextAllocId !== undefined ? { nextAllocId: s.nextAllocId } : {}),
        modifiedAt: now,
      });
      // A finished allocation that is replaced has nothing left to stop: the placement's event names it.
      if (isTerminal(a) && s.nextAllocId !== undefined) continue;
      ops.push(stoppingEvent(a, s.description, now, actor, s.preempted));
    }

    for (const p of plan.inPlace) {
      const existing = current(p.id);
      if (!existing) continue; // checkPlan refused the plan already
      // The agent also writes an allocation: keep its fields, take only the scheduler's.
      guard(p.id);
      touched.set(p.id, { ...existing, jobVersion: p.jobVersion, groupSpec: p.groupSpec, modifiedAt: now });
    }

    for (const p of plan.place) {
      const nodeName = this.cache.node(p.nodeId)?.name ?? p.nodeId;
      // A new key: it must not exist yet.
      compare.push({ key: keys.alloc(p.id), target: 'create', op: '=', value: 0 });
      touched.set(p.id, p);
      ops.push(
        eventOp(
          {
            topic: 'allocation',
            type: 'alloc-placed',
            namespace: p.namespace,
            jobId: p.jobId,
            allocId: p.id,
            nodeId: p.nodeId,
            message: `placed ${p.name} (${shortId(p.id)}) on ${nodeName}${p.resources.ports.length ? ` ports ${p.resources.ports.map((x) => `${x.name}=${x.value}`).join(',')}` : ''}${p.previousAllocId ? `, replacing ${shortId(p.previousAllocId)}` : ''}`,
            actor,
          },
          now,
        ),
      );
    }
    for (const a of touched.values()) ops.push(putOp(keys.alloc(a.id), a));

    const failed = Object.keys(plan.failedGroups).length > 0;
    const outcome: Evaluation = {
      ...evaluation,
      status: failed ? 'blocked' : 'complete',
      modifiedAt: now,
      ...(failed
        ? { failedGroups: plan.failedGroups, statusDescription: 'some instances could not be placed' }
        : {}),
    };
    if (!failed) {
      delete outcome.failedGroups;
      delete outcome.statusDescription;
    }
    if (plan.error !== undefined) {
      outcome.status = 'failed';
      outcome.statusDescription = plan.error;
    }
    ops.push(putOp(keys.evaluation(evaluation.id), outcome));
    // A newer outcome for the job supersedes any other evaluation of it still parked as blocked.
    for (const other of this.cache.listEvals()) {
      if (
        other.id !== evaluation.id &&
        other.status === 'blocked' &&
        other.namespace === evaluation.namespace &&
        other.jobId === evaluation.jobId
      )
        ops.push(
          putOp(keys.evaluation(other.id), {
            ...other,
            status: 'canceled',
            statusDescription: `superseded by ${evaluation.id}`,
            modifiedAt: now,
          }),
        );
    }
    for (const [group, f] of Object.entries(plan.failedGroups)) {
      ops.push(
        eventOp(
          {
            topic: 'evaluation',
            type: 'placement-failed',
            namespace: plan.namespace,
            jobId: plan.jobId,
            evalId: evaluation.id,
            message: `${f.unplaced} instance${f.unplaced === 1 ? '' : 's'} of ${plan.jobId}.${group} cannot be placed: ${f.summary}`,
            actor,
          },
          now,
        ),
      );
    }
    for (const f of plan.followups) ops.push(putOp(keys.evaluation(f.id), f));

    const res = await term.txn({ compare, success: ops });
    if (!res.succeeded) {
      this.log.debug({ evalId: evaluation.id }, 'plan refused: state changed under it');
      return { ok: false, revision: res.revision, reason: 'state changed while the plan was made' };
    }
    if (!(await this.cache.waitForIndex(res.revision)))
      this.log.warn(
        { evalId: evaluation.id, revision: res.revision },
        'plan committed; the cache is behind it',
      );
    return { ok: true, revision: res.revision, evaluation: outcome };
  }
}
