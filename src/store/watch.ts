/**
 * A Store watch as an async iterator: `for await (const events of watchEvents(store, { prefix }))`.
 * Each step yields the events of one or more whole revisions, as `onEvents` received them. Leaving
 * the loop (break, return, throw) cancels the watch; a watch error (CompactedError,
 * UnavailableError) is thrown from the loop after the events received before it.
 *
 * Events are buffered without bound until read: a consumer that stops reading should leave the loop.
 */
import type { Store, WatchEvent, WatchOptions, Watcher } from './types.ts';

export interface WatchIterator extends AsyncIterableIterator<WatchEvent[]> {
  /** Stops the watch; a pending `next()` resolves as done. Idempotent. */
  cancel(): void;
}

export function watchEvents(store: Store, options: WatchOptions, signal?: AbortSignal): WatchIterator {
  const buffered: WatchEvent[][] = [];
  let failure: Error | undefined;
  let done = false;
  let waiting: ((result: IteratorResult<WatchEvent[]>) => void) | undefined;
  let waitingReject: ((err: Error) => void) | undefined;
  // Filled in once store.watch() returns; `cancel` may run before (an already aborted signal).
  const handle: { watcher: Watcher | undefined } = { watcher: undefined };

  const wake = (): void => {
    if (waiting === undefined) return;
    const resolve = waiting;
    const reject = waitingReject!;
    waiting = undefined;
    waitingReject = undefined;
    if (buffered.length > 0) resolve({ value: buffered.shift()!, done: false });
    else if (failure !== undefined) {
      const err = failure;
      failure = undefined;
      done = true;
      reject(err);
    } else if (done) resolve({ value: undefined, done: true });
  };

  const cancel = (): void => {
    if (done) return;
    done = true;
    handle.watcher?.cancel();
    signal?.removeEventListener('abort', cancel);
    buffered.length = 0;
    wake();
  };

  const iterator: WatchIterator = {
    next() {
      if (buffered.length > 0) return Promise.resolve({ value: buffered.shift()!, done: false });
      if (failure !== undefined) {
        const err = failure;
        failure = undefined;
        done = true;
        return Promise.reject(err);
      }
      if (done) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve, reject) => {
        waiting = resolve;
        waitingReject = reject;
      });
    },
    return() {
      cancel();
      return Promise.resolve({ value: undefined, done: true });
    },
    throw(err?: unknown) {
      cancel();
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    },
    cancel,
    [Symbol.asyncIterator]() {
      return iterator;
    },
  };

  if (signal?.aborted === true) {
    done = true;
    return iterator;
  }
  signal?.addEventListener('abort', cancel, { once: true });
  handle.watcher = store.watch(options, {
    onEvents(events) {
      if (done) return;
      buffered.push(events);
      wake();
    },
    onError(err) {
      if (done) return;
      failure = err;
      signal?.removeEventListener('abort', cancel);
      wake();
    },
  });
  return iterator;
}
