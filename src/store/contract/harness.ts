/**
 * What the topic files of the Store contract share: the context `runStoreContract` hands each of
 * them, and watch recording helpers.
 *
 * `waitFor` arrives through the context rather than an import: src/store may import only src/core,
 * and test/imports.test.ts lets only contract.ts reach the test helpers in src/testing.
 */
import assert from 'node:assert/strict';
import type { Store, WatchEvent, WatchOptions, Watcher } from '../types.ts';

export type WaitFor = <T>(
  condition: () => T | Promise<T>,
  options?: { timeoutMs?: number; intervalMs?: number; description?: string },
) => Promise<NonNullable<T>>;

export interface Recorder {
  events: WatchEvent[];
  /** The arrays onEvents was called with, as received. */
  batches: WatchEvent[][];
  errors: Error[];
  watcher: Watcher;
}

export interface ContractContext {
  newStore: () => Promise<Store>;
  /** Runs `fn` on a fresh store and closes it. */
  withStore: (fn: (store: Store) => Promise<void>) => Promise<void>;
  /** Waits for a condition with a deadline (never a fixed delay). */
  waitFor: WaitFor;
  /** Waits until `recorder` has `count` events, and fails if the watch ended with an error. */
  waitForEvents: (recorder: Recorder, count: number, what: string) => Promise<void>;
}

export function contractContext(newStore: () => Promise<Store>, waitFor: WaitFor): ContractContext {
  return {
    newStore,
    waitFor,
    async withStore(fn) {
      const store = await newStore();
      try {
        await fn(store);
      } finally {
        await store.close();
      }
    },
    async waitForEvents(recorder, count, what) {
      await waitFor(() => recorder.events.length >= count || recorder.errors.length > 0, {
        timeoutMs: 15_000,
        description: `${what}: ${count} events (have ${recorder.events.length})`,
      });
      assert.deepEqual(recorder.errors, [], `${what}: watch failed`);
    },
  };
}

export function record(store: Store, options: WatchOptions): Recorder {
  const recorder: Omit<Recorder, 'watcher'> = { events: [], batches: [], errors: [] };
  const watcher = store.watch(options, {
    onEvents(events) {
      recorder.batches.push(events);
      recorder.events.push(...events);
    },
    onError(err) {
      recorder.errors.push(err);
    },
  });
  return { ...recorder, watcher };
}

/** `put k@3`, `delete k@4`: compact and readable in assertion diffs. */
export function describeEvent(event: WatchEvent): string {
  return `${event.type} ${event.kv.key}@${event.kv.modRevision}`;
}

export function codePointOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
