/**
 * Starts the control plane: the Store, the watch-fed cache, the HTTP API, and the leadership loop
 * (broker, scheduler workers, plan applier, controllers) that runs while this server leads.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { InvalidError, UnavailableError } from '../core/errors.ts';
import { DEFAULT_ALLOC_DISK_MIB, MAX_DISK } from '../core/job-spec.ts';
import { newId } from '../core/ids.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { silentLogger, type Logger } from '../core/log.ts';
import { unumVersion } from '../core/version.ts';
import { createStore } from '../store/index.ts';
import { restoreSnapshot, type SnapshotHeader } from '../store/snapshot.ts';
import { monotonicClock } from '../store/core/lessor.ts';
import type { Store } from '../store/types.ts';
import {
  Router,
  allowAll,
  listen,
  sendJson,
  type Authorizer,
  type ConnectionLimits,
} from '../transport/index.ts';
import { StateCache } from './cache.ts';
import { Heartbeats, detachLivenessLeases, heartbeatSettings, type HeartbeatSettings } from './heartbeats.ts';
import { WorkloadIdentity, withWorkloadIdentity } from './identity.ts';
import { aclAuthorizer } from './acl/tokens.ts';
import { hashSecret, withNodeCertificates, withNodeCredentials } from './node-credentials.ts';
import type { ServerPki } from './pki.ts';
import { agentCaller } from './api/agents.ts';
import { DEFAULT_JOIN_TOKEN_TTL_MS } from './api/join.ts';
import { createJoinToken } from './state/join-tokens.ts';
import type { MadeJoinToken } from '../api/types.ts';
import { createToken } from './state/acl.ts';
import { keys } from './keys.ts';
import { commit } from './state/write.ts';
import { Leadership, type Retention } from './leadership/leadership.ts';
import { LeaderLink } from './leadership/leader-link.ts';
import { openApiDocument } from './openapi.ts';
import { apiRoutes } from './api/index.ts';
import { uiPage } from './ui.ts';

export interface ServerOptions {
  /** Server state goes under `<dataDir>/server`. */
  dataDir: string;
  /** host:port to listen on; default 127.0.0.1:8686. Port 0 picks a free one. */
  addr?: string;
  /** Store URL: `sqlite:PATH` (default `sqlite:<dataDir>/server/state.db`) or `memory:`. */
  store?: string;
  /**
   * A Store opened by the caller, instead of `store`: several servers over one Store in one process
   * (tests of leadership, until the etcd backend). The server does not close it.
   */
  sharedStore?: Store;
  /**
   * How often agents heartbeat and the silence after which the leader marks a node down (defaults
   * in heartbeats.ts). Agents are told both at registration and in every heartbeat answer.
   */
  heartbeat?: Partial<HeartbeatSettings>;
  logger?: Logger;
  authorizer?: Authorizer;
  /** Scheduler workers on the leader (default 1). */
  workers?: number;
  /** History kept by the leader's garbage collector (defaults in controllers/collector.ts). */
  retention?: Partial<Retention>;
  /** Time for the leader's controllers and the API's writes (tests pass a fake one). */
  clock?: Clock;
  /** Host names served besides IP addresses and localhost (src/transport/browser.ts). */
  allowedHosts?: string[];
  /**
   * ACL tokens (deny by default). Default on; `false` serves everyone (tests of other things).
   * An explicit `authorizer` replaces both.
   */
  acl?: boolean;
  /**
   * Connections in total and per source, header and request timeouts of the API's listener
   * (defaults: DEFAULT_CONNECTION_LIMITS in src/transport/listen.ts).
   */
  limits?: Partial<ConnectionLimits>;
  /**
   * `ephemeral.sizeMiB` given to a submitted group that sets none (default DEFAULT_ALLOC_DISK_MIB):
   * decided at submission, kept in the job version, so the scheduler and the agents agree on it.
   */
  allocDiskMiB?: number;
  /**
   * Serve TLS with a cluster CA kept in the data dir (made at the first start; see pki.ts): nodes
   * join with join tokens and prove themselves by their certificates. `names`: more DNS names or
   * addresses for the server certificate than the listen address (and, for a wildcard, every
   * address of the machine). Default: plain HTTP, node secrets (`unum up` on loopback).
   */
  tls?: { names?: string[] };
}

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8686, or https://10.0.0.1:4646 with TLS. */
  addr: string;
  /** With TLS: the public CA file (clients' UNUM_CACERT), its hash (agents' --ca-hash), and whether this start made it. */
  pki?: { caFile: string; caHash: string; created: boolean; names: string[] };
  /** A join token made by the server itself (the banner's first one); with TLS only. */
  createJoinToken(o?: { ttlMs?: number; description?: string }): Promise<MadeJoinToken>;
  /**
   * The secret of a management token kept in `file` (mode 0600) for the CLI on this machine: the
   * one in the file while the cluster still knows it, else a new one written there. For `unum up`.
   */
  ensureManagementToken(file: string, name: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const log = options.logger ?? silentLogger();
  const disk = options.allocDiskMiB;
  if (disk !== undefined && (!Number.isSafeInteger(disk) || disk < 1 || disk > MAX_DISK))
    throw InvalidError.fromFields(
      [{ path: 'allocDiskMiB', message: `expected a whole number of MiB, 1 to ${MAX_DISK}, got ${disk}` }],
      'invalid server options',
    );
  const dir = join(options.dataDir, 'server');
  // The store and the server's secrets: nobody else's to read.
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const heartbeatOptions = heartbeatSettings(options.heartbeat);
  const serverId = persistentId(join(dir, 'server-id'));
  const store =
    options.sharedStore ?? (await createStore(options.store ?? `sqlite:${join(dir, 'state.db')}`));
  if (options.store === undefined && options.sharedStore === undefined)
    chmodSync(join(dir, 'state.db'), 0o600);
  // Before the leases of an older version's liveness keys can run out (a full TTL from the reopen).
  const detached = await detachLivenessLeases(store);
  if (detached > 0) log.info({ nodes: detached }, 'liveness keys detached from their old leases');
  const cache = new StateCache(store, log);
  await cache.start();
  const clock = options.clock ?? systemClock;
  const link = new LeaderLink({
    store,
    serverId,
    isLeader: () => leadership.isLeader,
    log,
    tls: () => pki?.clientTls(),
  });
  // Silence is measured on a monotonic clock: a step of the wall clock must not take nodes down.
  const heartbeats = new Heartbeats({
    clock: options.clock ?? monotonicClock,
    cache,
    relay: link,
    log,
    settings: heartbeatOptions,
  });
  const leadership: Leadership = new Leadership({
    store,
    cache,
    log,
    clock,
    serverId,
    heartbeats,
    workers: options.workers ?? 1,
    ...(options.retention ? { retention: options.retention } : {}),
  });
  const identity = new WorkloadIdentity(store);
  const { host, port } = splitAddr(options.addr ?? '127.0.0.1:8686');
  let pki: ServerPki | undefined;
  if (options.tls !== undefined) {
    // Loaded only for TLS: the certificate builder is the slowest module to load.
    const { ServerPki: Pki, serverNames } = await import('./pki.ts');
    pki = await Pki.load({
      dataDir: options.dataDir,
      serverId,
      names: serverNames(host, options.tls.names),
      now: clock.now(),
      store,
    });
  }
  const tokens = withWorkloadIdentity(
    options.authorizer ?? (options.acl === false ? allowAll : aclAuthorizer(cache, () => clock.now())),
    identity,
  );
  const authorizer =
    pki !== undefined
      ? withNodeCertificates(tokens)
      : withNodeCredentials(
          tokens,
          (id) => cache.nodeCredential(id),
          (hash) => cache.nodeOfSecret(hash),
        );
  const agents = agentCaller(cache, pki?.clientTls());
  const router = new Router(authorizer, log, { browser: { allowedHosts: options.allowedHosts ?? [] } });
  let addr = '';
  const version = unumVersion();
  router.add(
    ...apiRoutes({
      store,
      cache,
      leadership,
      link,
      heartbeats,
      identity,
      authorizer,
      log,
      clock,
      version,
      addr: () => addr,
      allocDiskMiB: options.allocDiskMiB ?? DEFAULT_ALLOC_DISK_MIB,
      agents,
      ...(pki !== undefined ? { pki } : {}),
    }),
  );
  router.add({
    method: 'GET',
    path: '/v1/openapi.json',
    capability: 'operator:read',
    summary: 'This document.',
    handler: () => openApiDocument(router.routes, version),
  });
  const listener = await listen(
    (req, res) => {
      if (req.method === 'GET' && (req.url === '/' || req.url === '/ui' || req.url?.startsWith('/ui/'))) {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(uiPage(version));
        return;
      }
      if (req.url === '/healthz') return sendJson(res, 200, { ok: true });
      router.handle(req, res);
    },
    {
      host,
      port,
      ...(pki !== undefined ? { tls: pki.listenerTls() } : {}),
      ...(options.limits ? { limits: options.limits } : {}),
      inUse: (h, p) =>
        `cannot listen on ${h}:${p}: the address is in use (is another unum running? pick another with --addr)`,
    },
  ).catch((err: unknown) => {
    if (err instanceof UnavailableError) throw err;
    throw new UnavailableError(`cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
  });
  const http = listener.server;
  http.keepAliveTimeout = 65_000;
  const a = http.address() as AddressInfo;
  addr = `${pki ? 'https' : 'http'}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  await link.announce(addr, clock.now());
  leadership.start();
  log.info({ addr, serverId, store: store.backend, tls: pki !== undefined }, 'server started');
  return {
    addr,
    ...(pki !== undefined
      ? { pki: { caFile: pki.caFile, caHash: pki.caHash, created: pki.created, names: pki.names } }
      : {}),
    async createJoinToken(o = {}) {
      if (pki === undefined) throw new InvalidError('join tokens need a server with TLS (a cluster CA)');
      const now = clock.now();
      const made = await commit(store, cache, () =>
        createJoinToken(
          cache,
          {
            expiresAt: now + (o.ttlMs ?? DEFAULT_JOIN_TOKEN_TTL_MS),
            ...(o.description !== undefined ? { description: o.description } : {}),
          },
          now,
          'server',
        ),
      );
      return { ...made, caHash: pki.caHash };
    },
    async ensureManagementToken(file, name) {
      const kept = await readFile(file, 'utf8').then(
        (t) => t.trim(),
        () => '',
      );
      const known = kept !== '' ? cache.aclTokenOfSecret(hashSecret(kept)) : undefined;
      if (known?.management) return kept;
      // The cluster counts as bootstrapped: nobody may make a management token anonymously after it.
      const made = await commit(store, cache, () => {
        const t = createToken(cache, { name, policies: [], management: true }, clock.now(), 'local');
        if ('done' in t || cache.revisionOf(keys.aclBootstrap) > 0) return t;
        return { ...t, ops: [...t.ops, { type: 'put', key: keys.aclBootstrap, value: String(clock.now()) }] };
      });
      await writeFile(`${file}.tmp`, `${made.secret}\n`, { mode: 0o600 });
      await chmod(`${file}.tmp`, 0o600);
      await rename(`${file}.tmp`, file);
      return made.secret;
    },
    async stop() {
      await leadership.stop();
      heartbeats.close();
      cache.stop();
      await listener.close();
      agents.close();
      await link.close();
      if (options.sharedStore === undefined) await store.close();
      log.info({ serverId }, 'server stopped');
    },
  };
}

function persistentId(path: string): string {
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  const id = newId();
  writeFileSync(path, `${id}\n`);
  return id;
}

export function splitAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!m) throw new UnavailableError(`cannot listen on "${addr}": expected host:port, e.g. 127.0.0.1:8686`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port: Number(m[3]) };
}

/**
 * Writes a snapshot (`unum operator snapshot save`) into the Store at `url`, which must hold no
 * cluster yet and have no server running on it (`unum operator snapshot restore`).
 */
export async function restoreSnapshotInto(
  url: string,
  lines: AsyncIterable<string>,
  onProgress?: (keys: number) => void,
): Promise<{ header: SnapshotHeader; keys: number }> {
  const store = await createStore(url);
  try {
    return await restoreSnapshot(store, lines, onProgress);
  } finally {
    await store.close();
  }
}
