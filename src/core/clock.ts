/**
 * Time, injected. Code that reads the time or waits takes a `Clock`, so that tests drive it with a
 * `FakeClock` instead of sleeping, and a run of the server core is repeatable.
 */

/** A timer handle: cancel it with `clock.clearTimeout`. */
export interface ClockTimer {
  readonly id: number;
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` once after `ms`. The timer does not keep the process alive. */
  setTimeout(fn: () => void, ms: number): ClockTimer;
  clearTimeout(timer: ClockTimer): void;
  /** Resolves after `ms`, or at once when `signal` aborts (never rejects). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock. */
export const systemClock: Clock = (() => {
  const timers = new Map<number, NodeJS.Timeout>();
  let next = 1;
  const clock: Clock = {
    now: () => Date.now(),
    setTimeout(fn, ms) {
      const id = next++;
      const t = setTimeout(() => {
        timers.delete(id);
        fn();
      }, ms);
      t.unref();
      timers.set(id, t);
      return { id };
    },
    clearTimeout(timer) {
      const t = timers.get(timer.id);
      if (t) clearTimeout(t);
      timers.delete(timer.id);
    },
    sleep: (ms, signal) => sleepWith(clock, ms, signal),
  };
  return clock;
})();

/**
 * A clock that moves only when told to. `advance(ms)` runs every timer that falls due, in order of
 * due time, with `now()` set to each one's due time as it runs.
 */
export class FakeClock implements Clock {
  private time: number;
  private next = 1;
  private readonly timers = new Map<number, { due: number; fn: () => void }>();

  constructor(start = 1_700_000_000_000) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const id = this.next++;
    this.timers.set(id, { due: this.time + Math.max(0, ms), fn });
    return { id };
  }

  clearTimeout(timer: ClockTimer): void {
    this.timers.delete(timer.id);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(this, ms, signal);
  }

  /** Timers waiting to fire. */
  get pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, firing due timers (and timers they set that also fall due). */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      let first: [number, { due: number; fn: () => void }] | undefined;
      for (const entry of this.timers) if (!first || entry[1].due < first[1].due) first = entry;
      if (!first || first[1].due > end) break;
      this.timers.delete(first[0]);
      this.time = Math.max(this.time, first[1].due);
      first[1].fn();
    }
    this.time = end;
  }

  /**
   * Moves time forward by `ms` as a paused process sees it (SIGSTOP, a blocked event loop): nothing
   * runs meanwhile, then every timer that fell due fires, in order, with `now()` at the end.
   */
  stall(ms: number): void {
    this.time += ms;
    this.advance(0);
  }
}

function sleepWith(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = clock.setTimeout(done, ms);
    function done() {
      clock.clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
