/**
 * The sqlite backend's file: its schema, how rows map to KeyValues, the prepared statements, and
 * opening the file with the pragmas the write path relies on. See ../README.md ("Schema").
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { InvalidError, UnavailableError, UnumError } from '../../core/errors.ts';
import type { KeyValue } from '../types.ts';

export type SynchronousLevel = 'normal' | 'full';

export const SCHEMA_VERSION = 1;
/**
 * WAL pages after which SQLite checkpoints by itself (4 KB pages: 64 MB with synchronous=normal,
 * 16 MB with full). A checkpoint copies the pages changed since the previous one into the database
 * file and fsyncs it, on the event loop: with `normal` a bigger WAL means fewer of them (a lone
 * writer's commit writes ~3 pages: one checkpoint per ~5000 commits). With `full` the WAL is already
 * synced, checkpoints are cheap, and a WAL growing to 64 MB after each open costs more (every
 * commit's fsync also writes the file's new size) than the checkpoints it saves.
 */
export const WAL_AUTOCHECKPOINT_PAGES = { normal: 16_000, full: 4000 } as const;
/** Bound as a BLOB and cast to TEXT: byte 0xFF sorts after every valid UTF-8 string. */
const NO_UPPER_BOUND = new Uint8Array([0xff]);

// Rows come back as arrays (setReturnArrays) in these column orders: cheaper than named objects.
/** key, value, create_revision, mod_revision, version, lease */
export type KvRow = [string, string, number, number, number, number];
/** mod_revision, sub, key, value, create_revision, version, lease; version 0 marks a delete. */
export type HistoryRow = [number, number, string, string, number, number, number];

const KV_COLUMNS = 'key, value, create_revision, mod_revision, version, lease';
const HISTORY_COLUMNS = 'mod_revision, sub, key, value, create_revision, version, lease';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
  key             TEXT PRIMARY KEY,
  value           TEXT NOT NULL,
  create_revision INTEGER NOT NULL,
  mod_revision    INTEGER NOT NULL,
  version         INTEGER NOT NULL,
  lease           INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease <> 0;
CREATE TABLE IF NOT EXISTS history (
  mod_revision    INTEGER NOT NULL,
  sub             INTEGER NOT NULL,
  key             TEXT NOT NULL,
  value           TEXT NOT NULL,
  create_revision INTEGER NOT NULL,
  version         INTEGER NOT NULL,
  lease           INTEGER NOT NULL,
  PRIMARY KEY (mod_revision, sub)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS history_key_revision ON history (key, mod_revision);
CREATE TABLE IF NOT EXISTS lease (
  id  INTEGER PRIMARY KEY,
  ttl REAL NOT NULL
);
`;

export function kvFromRow(row: KvRow): KeyValue {
  return {
    key: row[0],
    value: row[1],
    createRevision: row[2],
    modRevision: row[3],
    version: row[4],
    lease: row[5],
  };
}

export function kvFromHistory(row: HistoryRow): KeyValue {
  return {
    key: row[2],
    value: row[3],
    createRevision: row[4],
    modRevision: row[0],
    version: row[5],
    lease: row[6],
  };
}

/**
 * The smallest string greater than every string that starts with `prefix`, in SQLite's BINARY
 * (UTF-8 byte) order, which is code point order: bump the last code point that can be bumped.
 */
export function prefixEnd(prefix: string): string | Uint8Array {
  const points = Array.from(prefix);
  while (points.length > 0) {
    const last = points.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) {
      const next = last + 1 === 0xd800 ? 0xe000 : last + 1;
      return points.join('') + String.fromCodePoint(next);
    }
  }
  return NO_UPPER_BOUND;
}

/**
 * Opens (and creates) the store file: WAL journal, exclusive locking, the schema. UnavailableError if
 * it cannot be opened or another process holds it; InvalidError if a newer unum wrote it.
 */
export function openDatabase(path: string, synchronous: SynchronousLevel): DatabaseSync {
  const inMemory = path === ':memory:';
  let db: DatabaseSync | undefined;
  try {
    if (!inMemory) mkdirSync(dirname(path), { recursive: true });
    db = new DatabaseSync(path);
    if (!inMemory) {
      // One process owns the file: a second server on it would break the revision and the watches.
      // Set before WAL so that SQLite keeps the WAL index in process memory (no -shm file).
      db.exec('PRAGMA locking_mode = EXCLUSIVE');
      const mode = db.prepare('PRAGMA journal_mode = WAL').get()?.['journal_mode'];
      if (mode !== 'wal') throw new Error(`cannot switch to WAL mode (got ${String(mode)})`);
      // Checkpoints: see WAL_AUTOCHECKPOINT_PAGES. journal_size_limit keeps the WAL file at up to
      // 64 MB after a checkpoint rather than truncating it.
      db.exec(`PRAGMA wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES[synchronous]}`);
      db.exec('PRAGMA journal_size_limit = 67108864');
    }
    db.exec(`PRAGMA synchronous = ${synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    db.exec('PRAGMA cache_size = -32768');
    db.exec('PRAGMA temp_store = MEMORY');
    // BEGIN IMMEDIATE takes the write lock now, so that a second opener fails here, not later.
    db.exec('BEGIN IMMEDIATE');
    const userVersion = Number(db.prepare('PRAGMA user_version').get()?.['user_version'] ?? 0);
    if (userVersion > SCHEMA_VERSION) {
      throw new InvalidError(
        `store file ${path} has schema version ${userVersion}; this unum knows up to ${SCHEMA_VERSION}`,
      );
    }
    db.exec(SCHEMA);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    db.exec('COMMIT');
    return db;
  } catch (err) {
    try {
      db?.close();
    } catch {
      // Already failing: the first error is the one to report.
    }
    if (err instanceof UnumError) throw err;
    const busy = (err as { errcode?: number }).errcode === 5;
    throw new UnavailableError(
      busy
        ? `store file ${path} is in use by another process`
        : `cannot open store file ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** Every statement the backend runs, prepared once, returning rows as arrays. */
export type Statements = ReturnType<typeof prepareStatements>;

export function prepareStatements(db: DatabaseSync) {
  const prepare = (sql: string): StatementSync => {
    const statement = db.prepare(sql);
    statement.setReturnArrays(true);
    return statement;
  };
  // Latest history row per key at or before a revision (SQLite takes the bare columns from the MAX row).
  const historyLatest = (low: '>=' | '>') => `
    SELECT key, value, create_revision, mod_revision, version, lease FROM (
      SELECT key, value, create_revision, MAX(mod_revision) AS mod_revision, version, lease
      FROM history WHERE key ${low} ?1 AND key < CAST(?2 AS TEXT) AND mod_revision <= ?3 GROUP BY key
    ) WHERE version > 0`;
  return {
    begin: prepare('BEGIN IMMEDIATE'),
    commit: prepare('COMMIT'),
    rollback: prepare('ROLLBACK'),
    getMeta: prepare('SELECT value FROM meta WHERE name = ?'),
    setMeta: prepare(
      'INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
    ),

    kvGet: prepare(`SELECT ${KV_COLUMNS} FROM kv WHERE key = ?`),
    kvRangeGe: prepare(
      `SELECT ${KV_COLUMNS} FROM kv WHERE key >= ?1 AND key < CAST(?2 AS TEXT) ORDER BY key LIMIT ?3`,
    ),
    kvRangeGt: prepare(
      `SELECT ${KV_COLUMNS} FROM kv WHERE key > ?1 AND key < CAST(?2 AS TEXT) ORDER BY key LIMIT ?3`,
    ),
    kvCountGe: prepare('SELECT COUNT(*) FROM kv WHERE key >= ?1 AND key < CAST(?2 AS TEXT)'),
    kvCountGt: prepare('SELECT COUNT(*) FROM kv WHERE key > ?1 AND key < CAST(?2 AS TEXT)'),
    // A put knows whether the key exists (it read the row): an INSERT or an UPDATE, not an upsert
    // (which tries the insert first).
    kvInsert: prepare(`INSERT INTO kv (${KV_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`),
    kvUpdate: prepare('UPDATE kv SET value = ?, mod_revision = ?, version = ?, lease = ? WHERE key = ?'),
    kvDelete: prepare('DELETE FROM kv WHERE key = ?'),
    kvDeleteRange: prepare('DELETE FROM kv WHERE key >= ?1 AND key < CAST(?2 AS TEXT)'),
    kvByLease: prepare(`SELECT ${KV_COLUMNS} FROM kv WHERE lease = ? ORDER BY key`),

    historyInsert: prepare(`INSERT INTO history (${HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`),
    historyKeyAt: prepare(
      `SELECT ${HISTORY_COLUMNS} FROM history WHERE key = ? AND mod_revision <= ? ORDER BY mod_revision DESC LIMIT 1`,
    ),
    historyRangeGe: prepare(`${historyLatest('>=')} ORDER BY key LIMIT ?4`),
    historyRangeGt: prepare(`${historyLatest('>')} ORDER BY key LIMIT ?4`),
    historyCountGe: prepare(`SELECT COUNT(*) FROM (${historyLatest('>=')})`),
    historyCountGt: prepare(`SELECT COUNT(*) FROM (${historyLatest('>')})`),
    historyKeyFrom: prepare(
      `SELECT ${HISTORY_COLUMNS} FROM history WHERE key = ? AND mod_revision >= ? AND mod_revision <= ?
       ORDER BY mod_revision LIMIT ?`,
    ),
    historyPrefixFrom: prepare(
      `SELECT ${HISTORY_COLUMNS} FROM history
       WHERE key >= ?1 AND key < CAST(?2 AS TEXT) AND mod_revision >= ?3 AND mod_revision <= ?4
       ORDER BY mod_revision, sub LIMIT ?5`,
    ),
    historyPrefixAt: prepare(
      `SELECT ${HISTORY_COLUMNS} FROM history WHERE key >= ?1 AND key < CAST(?2 AS TEXT) AND mod_revision = ?3
       ORDER BY sub`,
    ),
    historyPrev: prepare(
      `SELECT ${HISTORY_COLUMNS} FROM history WHERE key = ? AND mod_revision < ? ORDER BY mod_revision DESC LIMIT 1`,
    ),
    historyMinRevision: prepare('SELECT MIN(mod_revision) FROM history'),
    historyMaxRevision: prepare('SELECT MAX(mod_revision) FROM history'),
    historyCompact: prepare(
      `DELETE FROM history WHERE mod_revision >= ?1 AND mod_revision < ?2 AND (
         version = 0 OR mod_revision < (
           SELECT MAX(h.mod_revision) FROM history AS h WHERE h.key = history.key AND h.mod_revision < ?3))`,
    ),

    leaseInsert: prepare('INSERT INTO lease (id, ttl) VALUES (?, ?)'),
    leaseDelete: prepare('DELETE FROM lease WHERE id = ?'),
    leaseAll: prepare('SELECT id, ttl FROM lease'),
  };
}
