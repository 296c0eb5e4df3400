/**
 * Waiting helpers for tests: wait for a condition with a deadline instead of sleeping, and a promise
 * that is resolved from outside. No test should wait on a fixed delay to let something happen.
 */

export interface WaitForOptions {
  /** Give up after this long; default 10 000 ms. */
  timeoutMs?: number;
  /** Re-check this often; default 10 ms. */
  intervalMs?: number;
  /** Named in the timeout error so that a failure says what was awaited. */
  description?: string;
}

/**
 * Resolves with the first truthy value `condition` returns (it may be async). A thrown error counts
 * as "not yet" and is reported as the cause if the deadline passes.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 10;
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value !== undefined && value !== null && value !== false && value !== 0 && value !== '') {
        return value as NonNullable<T>;
      }
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (performance.now() >= deadline) {
      const what = options.description ?? condition.toString();
      throw new Error(
        `waitFor: condition not met within ${timeoutMs} ms: ${what}`,
        lastError === undefined ? undefined : { cause: lastError },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
  /** True once resolve or reject was called. */
  readonly settled: boolean;
}

/** A promise with its resolve and reject exposed. */
export function deferred<T = void>(): Deferred<T> {
  let settled = false;
  const { promise, resolve, reject } = Promise.withResolvers<T>();
  return {
    promise,
    resolve(value: T) {
      settled = true;
      resolve(value);
    },
    reject(err: unknown) {
      settled = true;
      reject(err);
    },
    get settled() {
      return settled;
    },
  };
}

/** Rejects with a clear message if `promise` has not settled within `timeoutMs`. */
export async function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
  description = 'operation',
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${description} did not finish within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
