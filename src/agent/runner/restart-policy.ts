/**
 * The group's restart policy as a small state machine: how many restarts happened within the last
 * `interval`, and what to do after the next exit. Pure (the caller passes the clock).
 */
import type { RestartPolicy } from '../../core/job-spec.ts';

export type RestartDecision =
  | {
      restart: true;
      delayMs: number;
      /** 1-based number of this restart within the interval. */
      attempt: number;
      /** True when attempts are used up and mode `delay` waits out the interval. */
      waitingForInterval: boolean;
    }
  | { restart: false; reason: string };

export class RestartTracker {
  private readonly policy: RestartPolicy;
  /** Times of the restarts still inside the interval, oldest first. */
  private restarts: number[] = [];

  /** `history`: the times of earlier restarts, as `history()` returned them (after an agent restart). */
  constructor(policy: RestartPolicy, history: readonly number[] = []) {
    this.policy = policy;
    this.restarts = [...history];
  }

  /** The times of the restarts still counted, oldest first: kept in the agent's state file. */
  history(): number[] {
    return [...this.restarts];
  }

  /** Decides what happens after an exit at `now`, and counts the restart if there is one. */
  next(now: number): RestartDecision {
    const { attempts, interval, delay, maxDelay, mode } = this.policy;
    this.restarts = this.restarts.filter((t) => now - t < interval);
    if (this.restarts.length < attempts) {
      const attempt = this.restarts.length + 1;
      this.restarts.push(now);
      return {
        restart: true,
        delayMs: Math.min(delay * 2 ** (attempt - 1), maxDelay),
        attempt,
        waitingForInterval: false,
      };
    }
    if (mode === 'fail')
      return {
        restart: false,
        reason:
          attempts === 0 ? 'restarts are disabled (restart.attempts is 0)' : 'restart attempts exhausted',
      };
    // mode delay: wait until the oldest restart leaves the interval, then go on counting afresh.
    const oldest = this.restarts[0];
    const delayMs = Math.max(delay, oldest === undefined ? interval : oldest + interval - now);
    this.restarts = [];
    this.restarts.push(now + delayMs);
    return { restart: true, delayMs, attempt: 1, waitingForInterval: true };
  }
}
