/**
 * Waiting in line on a Store prefix, the heart of the lock and the election (./mutex.ts,
 * ./election.ts). Each contender puts one key, `<prefix><lease id in hex>`, on a lease of its own:
 * the key's create revision is its place in the line (unique and growing, as every revision is).
 * The contender whose key has the lowest create revision holds the line's head; every other one
 * watches only the key just before its own (no thundering herd: a release wakes one waiter) and
 * looks again when that key is deleted — released, or gone with its holder's lease.
 *
 * The head's create revision is its fencing token: a write that must only happen while it holds the
 * head carries the compare `create(ownKey) = token` (`fence`), which fails once the key is gone,
 * so a holder that lost its lease without knowing it (paused, cut off) cannot write afterwards.
 */
import { NotFoundError, UnavailableError } from '../../core/errors.ts';
import type { Compare, KeyValue, Store } from '../types.ts';

export interface Place {
  /** The contender's key in the line. */
  key: string;
  /** The key's create revision: the place in the line, and the fencing token at the head. */
  revision: number;
  /** The compare that holds only while the key (so the place) still exists. */
  fence: readonly Compare[];
}

/** The key a lease's contender uses under `prefix`. */
export function placeKey(prefix: string, leaseId: number): string {
  return `${prefix}${leaseId.toString(16)}`;
}

/**
 * Takes a place in the line (or finds the one this lease already has) with `value` in the key.
 * NotFoundError when the lease is gone.
 */
export async function enqueue(store: Store, prefix: string, leaseId: number, value: string): Promise<Place> {
  const key = placeKey(prefix, leaseId);
  const res = await store.txn({
    compare: [{ key, target: 'create', op: '=', value: 0 }],
    success: [{ type: 'put', key, value, lease: leaseId }],
    failure: [{ type: 'get', key }],
  });
  let revision = res.revision;
  if (!res.succeeded) {
    const got = res.results[0];
    const kv = got?.type === 'get' ? got.kvs[0] : undefined;
    // Deleted between the compare and the read: the lease is going, the place with it.
    if (kv === undefined) throw new NotFoundError(`the place ${key} vanished: its lease ended`);
    revision = kv.createRevision;
  }
  return { key, revision, fence: Object.freeze([{ key, target: 'create', op: '=', value: revision }]) };
}

/** The contenders in line, first first. */
export async function line(store: Store, prefix: string): Promise<KeyValue[]> {
  const { kvs } = await store.range({ prefix });
  return kvs.sort((a, b) => a.createRevision - b.createRevision);
}

/**
 * Waits until `place` is at the head of the line: resolves then. Rejects with NotFoundError when the
 * place is gone (its lease ended), with the signal's reason when `signal` aborts, and with the
 * Store's error when a read or the watch fails.
 */
export async function waitForHead(
  store: Store,
  prefix: string,
  place: Place,
  signal: AbortSignal,
): Promise<void> {
  for (;;) {
    signal.throwIfAborted();
    const kvs = await line(store, prefix);
    const index = kvs.findIndex((kv) => kv.key === place.key);
    const mine = kvs[index];
    if (mine === undefined || mine.createRevision !== place.revision)
      throw new NotFoundError(`the place ${place.key} is gone: its lease ended`);
    if (index === 0) return;
    await deleted(store, kvs[index - 1]!, signal);
  }
}

/** Resolves once `kv` (as read) is deleted or replaced; from its mod revision on, so no change is missed. */
function deleted(store: Store, kv: KeyValue, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: unknown) => {
      watcher.cancel();
      signal.removeEventListener('abort', aborted);
      if (err === undefined) resolve();
      else reject(err instanceof Error ? err : new UnavailableError(String(err)));
    };
    const aborted = () => done(signal.reason);
    const watcher = store.watch(
      { key: kv.key, fromRevision: kv.modRevision + 1 },
      {
        onEvents: (events) => {
          if (events.some((e) => e.type === 'delete' || e.kv.createRevision !== kv.createRevision)) done();
        },
        // Compacted past the key's revision, or the Store went away: look at the line again (or fail there).
        onError: (err) => done(err.name === 'CompactedError' ? undefined : err),
      },
    );
    signal.addEventListener('abort', aborted);
  });
}

/**
 * Takes a place in line and waits for the head: the place, once there. On abort or any failure the
 * place is given up (`release`) and the error thrown.
 */
export async function takeHead(
  store: Store,
  prefix: string,
  leaseId: number,
  value: string,
  signal: AbortSignal,
): Promise<Place> {
  const place = await enqueue(store, prefix, leaseId, value);
  try {
    await waitForHead(store, prefix, place, signal);
    return place;
  } catch (err) {
    await release(store, place).catch(() => undefined);
    throw err;
  }
}

/** Gives a place up (the head: the lock or the office). A place already gone is no error. */
export async function release(store: Store, place: Place): Promise<void> {
  await store.txn({ compare: [...place.fence], success: [{ type: 'delete', key: place.key }] });
}
