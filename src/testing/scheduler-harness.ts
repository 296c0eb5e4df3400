/**
 * A scheduler harness (after Nomad's scheduler/tests): state in plain arrays, a deterministic
 * context, and every plan recorded. `apply()` re-checks a plan with the plan applier's own
 * `checkPlan` and folds it back into the state the way the applier would, so multi-step scenarios
 * read naturally and a plan the applier would refuse fails the test.
 */
import { checkPlan, nodeTakesWork, type PlanCheck } from '../scheduler/check-plan.ts';
import { schedule } from '../scheduler/schedule.ts';
import type { PlanSnapshot, Scheduler, SchedulerContext, Snapshot } from '../scheduler/types.ts';
import type { Allocation, Evaluation, Job, Node, Plan } from '../core/types.ts';

export class SchedulerHarness implements Snapshot, PlanSnapshot {
  jobs: Job[] = [];
  nodes: Node[] = [];
  allocs: Allocation[] = [];
  plans: Plan[] = [];
  /** Nodes whose agent stopped heartbeating (their lease expired); every other node is alive. */
  silentNodes = new Set<string>();
  now = 1_000_000;
  /** The schedulers to pick from by job type; the real map unless a test swaps it. */
  schedulers: Readonly<Partial<Record<string, Scheduler>>> | undefined;
  private ids = 0;
  private seed = 1;

  job(namespace: string, id: string): Job | undefined {
    return this.jobs.find((j) => j.namespace === namespace && j.id === id);
  }
  allocsOfJob(namespace: string, id: string): readonly Allocation[] {
    return this.allocs.filter((a) => a.namespace === namespace && a.jobId === id);
  }
  allocsOnNode(nodeId: string): readonly Allocation[] {
    return this.allocs.filter((a) => a.nodeId === nodeId);
  }
  readyNodes(): readonly Node[] {
    return this.nodes.filter((n) => nodeTakesWork(this, n));
  }
  node(id: string): Node | undefined {
    return this.nodes.find((n) => n.id === id);
  }
  alloc(id: string): Allocation | undefined {
    return this.allocs.find((a) => a.id === id);
  }
  isAlive(nodeId: string): boolean {
    return !this.silentNodes.has(nodeId);
  }

  context(): SchedulerContext {
    return {
      now: this.now,
      newId: () => `alloc-${++this.ids}`,
      // A small LCG: deterministic, good enough to spread ports.
      random: () => {
        this.seed = (this.seed * 1103515245 + 12345) % 2 ** 31;
        return this.seed / 2 ** 31;
      },
    };
  }

  run(evaluation: Evaluation): Plan {
    const plan = this.schedulers
      ? schedule(this, evaluation, this.context(), this.schedulers)
      : schedule(this, evaluation, this.context());
    this.plans.push(plan);
    return plan;
  }

  /** The plan applier's verdict on `plan` against the current state. */
  check(plan: Plan): PlanCheck {
    return checkPlan(this, plan);
  }

  /** Applies a plan as the plan applier would; throws with the applier's reason if it would refuse it. */
  apply(plan: Plan): void {
    const check = this.check(plan);
    if (!check.ok) throw new Error(`the plan applier would refuse this plan: ${check.reason}`);
    for (const s of [...plan.stop, ...plan.preempt]) {
      const i = this.allocs.findIndex((a) => a.id === s.allocId);
      if (i >= 0)
        this.allocs[i] = {
          ...this.allocs[i]!,
          desiredStatus: 'stop',
          desiredDescription: s.description,
          ...(s.nextAllocId !== undefined ? { nextAllocId: s.nextAllocId } : {}),
        };
    }
    for (const a of plan.inPlace) {
      const i = this.allocs.findIndex((x) => x.id === a.id);
      if (i >= 0) this.allocs[i] = { ...this.allocs[i]!, jobVersion: a.jobVersion, groupSpec: a.groupSpec };
    }
    this.allocs.push(...plan.place);
  }

  setClientStatus(id: string, clientStatus: Allocation['clientStatus'], at = this.now): void {
    const i = this.allocs.findIndex((a) => a.id === id);
    if (i >= 0) this.allocs[i] = { ...this.allocs[i]!, clientStatus, modifiedAt: at };
  }
}
