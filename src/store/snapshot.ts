/**
 * Snapshots of a Store's keys under a prefix, for backups and for moving a cluster to another
 * backend (sqlite → etcd): JSON lines, one read at one revision.
 *
 *   {"unumSnapshot":1,"prefix":"/unum/","revision":812,"backend":"sqlite","createdAt":1796…}
 *   {"k":"/unum/jobs/default/web","v":"{…}"}
 *   …
 *   {"end":true,"keys":154}
 *
 * Keys on a lease are left out: they belong to processes (a server's place in the election, its
 * record, a node's liveness) that make them again when they start. The last line counts the keys,
 * so a file cut short is refused rather than half restored. Restoring writes every key into a Store
 * that has none under the prefix (InvalidError otherwise), in transactions of bounded size; the new
 * Store's revisions start afresh.
 */
import { InvalidError } from '../core/errors.ts';
import type { Store, TxnOp } from './types.ts';

export const SNAPSHOT_FORMAT = 1;
/** Keys read per page while saving. */
const PAGE = 500;
/** A restore transaction stays under this many bytes of keys and values (etcd takes 1.5 MiB). */
const BATCH_BYTES = 512 * 1024;
const BATCH_OPS = 128;

export interface SnapshotHeader {
  unumSnapshot: number;
  prefix: string;
  revision: number;
  backend: string;
  createdAt: number;
}

/** The snapshot's lines (each without its newline): header, keys in key order, trailer. */
export async function* snapshotLines(store: Store, prefix: string, now = Date.now()): AsyncGenerator<string> {
  const { revision, backend } = await store.status();
  const header: SnapshotHeader = { unumSnapshot: SNAPSHOT_FORMAT, prefix, revision, backend, createdAt: now };
  yield JSON.stringify(header);
  let keys = 0;
  let after: string | undefined;
  for (;;) {
    const page = await store.range({ prefix }, { revision, limit: PAGE, ...(after ? { after } : {}) });
    for (const kv of page.kvs) {
      if (kv.lease !== 0) continue;
      keys++;
      yield JSON.stringify({ k: kv.key, v: kv.value });
    }
    const last = page.kvs.at(-1);
    if (!page.more || last === undefined) break;
    after = last.key;
  }
  yield JSON.stringify({ end: true, keys });
}

/**
 * Writes a snapshot's keys into `store`, which must hold none under the snapshot's prefix. The
 * header and the count are checked first-to-last: a malformed line, another format, or a missing or
 * wrong trailer is an InvalidError — and, found before anything was written, changes nothing.
 * `onProgress` hears the keys written so far.
 */
export async function restoreSnapshot(
  store: Store,
  lines: AsyncIterable<string>,
  onProgress?: (keys: number) => void,
): Promise<{ header: SnapshotHeader; keys: number }> {
  // Read and check the whole file before the first write: a cut file restores nothing.
  const parsed: { k: string; v: string }[] = [];
  let header: SnapshotHeader | undefined;
  let trailer: { keys: number } | undefined;
  let n = 0;
  for await (const raw of lines) {
    n++;
    const line = raw.trim();
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new InvalidError(`snapshot line ${n} is not JSON: ${JSON.stringify(line.slice(0, 80))}`);
    }
    if (trailer !== undefined) throw new InvalidError(`snapshot line ${n} comes after the last line`);
    if (header === undefined) {
      header = checkHeader(value, n);
      continue;
    }
    const o = value as { k?: unknown; v?: unknown; end?: unknown; keys?: unknown };
    if (o.end === true && typeof o.keys === 'number') trailer = { keys: o.keys };
    else if (typeof o.k === 'string' && typeof o.v === 'string') {
      if (!o.k.startsWith(header.prefix))
        throw new InvalidError(`snapshot line ${n}: key ${o.k} is not under ${header.prefix}`);
      parsed.push({ k: o.k, v: o.v });
    } else
      throw new InvalidError(`snapshot line ${n}: expected {"k":…,"v":…} or the last line {"end":true,…}`);
  }
  if (header === undefined) throw new InvalidError('the snapshot is empty');
  if (trailer === undefined)
    throw new InvalidError(
      `the snapshot ends without its last line after ${parsed.length} keys: the file was cut short; nothing restored`,
    );
  if (trailer.keys !== parsed.length)
    throw new InvalidError(
      `the snapshot says ${trailer.keys} keys but holds ${parsed.length}: nothing restored`,
    );
  const existing = await store.range({ prefix: header.prefix }, { countOnly: true });
  if (existing.count > 0)
    throw new InvalidError(
      `the target store already has ${existing.count} keys under ${header.prefix}: restore into an empty store (a new data dir, or an etcd prefix nobody uses)`,
    );
  let written = 0;
  let batch: TxnOp[] = [];
  let bytes = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    await store.txn({ success: batch });
    written += batch.length;
    onProgress?.(written);
    batch = [];
    bytes = 0;
  };
  for (const { k, v } of parsed) {
    const size = k.length + v.length;
    if (batch.length >= BATCH_OPS || (bytes + size > BATCH_BYTES && batch.length > 0)) await flush();
    batch.push({ type: 'put', key: k, value: v });
    bytes += size;
  }
  await flush();
  return { header, keys: written };
}

function checkHeader(value: unknown, line: number): SnapshotHeader {
  const h = value as Partial<SnapshotHeader>;
  if (typeof h.unumSnapshot !== 'number')
    throw new InvalidError(`snapshot line ${line}: not a unum snapshot (no "unumSnapshot" header)`);
  if (h.unumSnapshot !== SNAPSHOT_FORMAT)
    throw new InvalidError(
      `the snapshot is of format ${h.unumSnapshot}; this unum reads format ${SNAPSHOT_FORMAT}: restore it with the unum that saved it`,
    );
  if (typeof h.prefix !== 'string' || h.prefix === '' || typeof h.revision !== 'number')
    throw new InvalidError(`snapshot line ${line}: the header lacks its prefix or revision`);
  return {
    unumSnapshot: h.unumSnapshot,
    prefix: h.prefix,
    revision: h.revision,
    backend: String(h.backend ?? ''),
    createdAt: Number(h.createdAt ?? 0),
  };
}
