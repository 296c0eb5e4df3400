/**
 * A scheduler harness (after Nomad's scheduler/tests): state in plain arrays, a deterministic
 * context, and every plan recorded. `apply()` folds a plan back into the state the way the plan
 * applier would, so multi-step scenarios read naturally.
 */
import { schedule } from '../scheduler/generic.ts';
import type { SchedulerContext, Snapshot } from '../scheduler/types.ts';
import type { Allocation, Evaluation, Job, Node, Plan } from '../core/types.ts';

export class SchedulerHarness implements Snapshot {
  jobs: Job[] = [];
  nodes: Node[] = [];
  allocs: Allocation[] = [];
  plans: Plan[] = [];
  now = 1_000_000;
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
    return this.nodes.filter((n) => n.status === 'ready' && !n.drain);
  }
  node(id: string): Node | undefined {
    return this.nodes.find((n) => n.id === id);
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
    const plan = schedule(this, evaluation, this.context());
    this.plans.push(plan);
    return plan;
  }

  /** Applies a plan as the plan applier would (without re-checking). */
  apply(plan: Plan): void {
    for (const s of plan.stop) {
      const i = this.allocs.findIndex((a) => a.id === s.allocId);
      if (i >= 0)
        this.allocs[i] = { ...this.allocs[i]!, desiredStatus: 'stop', desiredDescription: s.description };
    }
    for (const a of plan.place) {
      const i = this.allocs.findIndex((x) => x.id === a.id);
      if (i >= 0) this.allocs[i] = a;
      else this.allocs.push(a);
    }
  }

  setClientStatus(id: string, clientStatus: Allocation['clientStatus'], at = this.now): void {
    const i = this.allocs.findIndex((a) => a.id === id);
    if (i >= 0) this.allocs[i] = { ...this.allocs[i]!, clientStatus, modifiedAt: at };
  }
}
