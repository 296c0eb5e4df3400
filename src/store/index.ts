/**
 * Opens a Store from a URL. Backends are chosen through this explicit map, not a DI framework.
 *
 * - `sqlite:/abs/path.db`, `sqlite:relative/path.db` (relative to the working directory): the default
 *   backend, one file in WAL mode (see sqlite/sqlite-store.ts). `?synchronous=full` after the path
 *   chooses the durability level (an explicit `options.synchronous` wins).
 * - `memory:`: the same engine on an in-memory database; nothing survives `close()`. For tests.
 * - `etcd://host:port,...` (plain) and `etcds://…?ca=FILE&cert=FILE&key=FILE` (TLS): an etcd cluster
 *   (3.4 or later), for several servers; a user and password, a deadline and the request size limit
 *   go in the URL too (see etcd/url.ts).
 */
import { resolve } from 'node:path';
import { InvalidError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { EtcdStore } from './etcd/etcd-store.ts';
import { SqliteStore, type SynchronousLevel } from './sqlite/sqlite-store.ts';
import type { Store } from './types.ts';

export type * from './types.ts';
export {
  SqliteStore,
  type SqliteStoreOptions,
  type SqliteStoreStats,
  type SynchronousLevel,
} from './sqlite/sqlite-store.ts';
export { watchEvents, type WatchIterator } from './watch.ts';
export { EtcdStore, type EtcdStoreOptions } from './etcd/etcd-store.ts';

export interface CreateStoreOptions {
  /** sqlite only: `normal` (default; survives kill -9) or `full` (also survives power loss). */
  synchronous?: SynchronousLevel;
  logger?: Logger;
}

type Opener = (rest: string, options: CreateStoreOptions) => Store;

function sqliteOptions(options: CreateStoreOptions): { synchronous?: SynchronousLevel; logger?: Logger } {
  return {
    ...(options.synchronous === undefined ? {} : { synchronous: options.synchronous }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  };
}

function etcdOptions(options: CreateStoreOptions): { logger?: Logger } {
  return options.logger === undefined ? {} : { logger: options.logger };
}

const openers: Record<string, Opener> = {
  sqlite(url, options) {
    const query = url.indexOf('?');
    const rest = query === -1 ? url : url.slice(0, query);
    const synchronous = query === -1 ? null : new URLSearchParams(url.slice(query + 1)).get('synchronous');
    if (synchronous !== null && options.synchronous === undefined) {
      if (synchronous !== 'normal' && synchronous !== 'full') {
        throw new InvalidError(`store URL ${JSON.stringify(url)}: synchronous must be normal or full`);
      }
      options = { ...options, synchronous };
    }
    if (rest === '' || rest === ':memory:') {
      throw new InvalidError(
        'store URL sqlite: needs a file path, e.g. sqlite:/var/lib/unum/state.db (or use memory:)',
      );
    }
    return new SqliteStore({ path: resolve(rest), ...sqliteOptions(options) });
  },
  memory(rest, options) {
    if (rest !== '')
      throw new InvalidError(`store URL memory: takes nothing after the colon, got ${JSON.stringify(rest)}`);
    return new SqliteStore({ path: ':memory:', backend: 'memory', ...sqliteOptions(options) });
  },
  etcd: (rest, options) => new EtcdStore({ url: `etcd:${rest}`, ...etcdOptions(options) }),
  etcds: (rest, options) => new EtcdStore({ url: `etcds:${rest}`, ...etcdOptions(options) }),
};

/** The schemes `createStore` understands, for messages and `--help`. */
export const storeSchemes: readonly string[] = Object.keys(openers).map((scheme) => `${scheme}:`);

/**
 * Opens the store a URL names. InvalidError for a URL with an unknown scheme (naming the supported
 * ones) or malformed; UnavailableError if the file cannot be opened or is in use
 * by another process.
 */
export async function createStore(url: string, options: CreateStoreOptions = {}): Promise<Store> {
  const colon = typeof url === 'string' ? url.indexOf(':') : -1;
  const scheme = colon > 0 ? url.slice(0, colon) : '';
  const opener = Object.hasOwn(openers, scheme) ? openers[scheme] : undefined;
  if (opener === undefined) {
    throw new InvalidError(
      `unknown store URL ${JSON.stringify(url)}: expected one of ${storeSchemes.join(', ')} (e.g. sqlite:/var/lib/unum/state.db)`,
      {
        details: {
          fields: [{ path: 'store', message: `expected a URL starting with ${storeSchemes.join(', ')}` }],
        },
      },
    );
  }
  return opener(url.slice(colon + 1), options);
}
