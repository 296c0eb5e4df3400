/**
 * The etcd store URL:
 *
 * ```
 * etcd://[USER[:PASSWORD]@]HOST[:PORT][,HOST[:PORT]…][?OPTIONS]     plain TCP
 * etcds://[USER[:PASSWORD]@]HOST[:PORT][,…]?ca=FILE[&cert=FILE&key=FILE][&OPTIONS]   TLS
 * ```
 *
 * - Hosts are etcd members' client addresses, port 2379 by default; IPv6 in brackets (`[::1]:2379`).
 * - `USER`: etcd's authentication (`etcdctl auth enable`); the password comes from the URL or, better
 *   (URLs end up in process lists and logs), from the `UNUM_ETCD_PASSWORD` environment variable.
 * - `ca`: PEM file of the CA that signed the members' certificates (absent: the system's roots).
 *   `cert` and `key`: the client certificate and key, when the members require one
 *   (`--client-cert-auth`). Files are read when the store opens.
 * - `timeout`: the deadline of each call (default `5s`; `500ms`, `10s`, …).
 * - `max-request-bytes`: the members' `--max-request-bytes` (default 1572864, etcd's): a write
 *   bigger than that is refused before it is sent, with InvalidError.
 */
import { parseDuration } from '../../core/duration.ts';
import { InvalidError } from '../../core/errors.ts';

export const DEFAULT_PORT = 2379;
export const DEFAULT_TIMEOUT_MS = 5000;
/** etcd's default --max-request-bytes: 1.5 MiB. */
export const DEFAULT_MAX_REQUEST_BYTES = 1_572_864;
export const PASSWORD_ENV = 'UNUM_ETCD_PASSWORD';

export interface EtcdTls {
  /** File paths, as given. */
  ca?: string;
  cert?: string;
  key?: string;
}

export interface EtcdConfig {
  /** `host:port` of each member, in the URL's order. */
  endpoints: string[];
  /** Present for `etcds://`. */
  tls?: EtcdTls;
  auth?: { user: string; password: string };
  timeoutMs: number;
  maxRequestBytes: number;
}

function bad(url: string, message: string): InvalidError {
  const shown = url.replace(/\/\/([^@/?]*):([^@/?]*)@/, '//$1:***@');
  return new InvalidError(`store URL ${JSON.stringify(shown)}: ${message}`, {
    details: { fields: [{ path: 'store', message }] },
  });
}

function endpoint(url: string, text: string): string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(text);
  if (m === null) throw bad(url, `expected HOST[:PORT] for each member, got ${JSON.stringify(text)}`);
  const port = m[2] === undefined ? DEFAULT_PORT : Number(m[2]);
  if (port < 1 || port > 65535) throw bad(url, `port ${port} is out of range`);
  return `${m[1]}:${port}`;
}

/** Parses an `etcd://` or `etcds://` URL; InvalidError naming what is wrong. */
export function parseEtcdUrl(url: string, env: NodeJS.ProcessEnv = process.env): EtcdConfig {
  const m = /^(etcds?):\/\/([^?]*)(?:\?(.*))?$/.exec(url);
  if (m === null) throw bad(url, 'expected etcd://HOST:PORT[,HOST:PORT…] or etcds://… (TLS)');
  const [, scheme, authority = '', query = ''] = m;
  const at = authority.lastIndexOf('@');
  const userinfo = at === -1 ? undefined : authority.slice(0, at);
  const hosts = (at === -1 ? authority : authority.slice(at + 1)).replace(/\/$/, '');
  if (hosts === '') throw bad(url, 'names no etcd member: expected etcd://HOST:PORT[,HOST:PORT…]');
  const endpoints = hosts.split(',').map((h) => endpoint(url, h.trim()));

  const params = new URLSearchParams(query);
  const known = new Set(['ca', 'cert', 'key', 'timeout', 'max-request-bytes']);
  for (const name of params.keys()) {
    if (!known.has(name)) {
      throw bad(url, `unknown option ${JSON.stringify(name)}: expected ${[...known].join(', ')}`);
    }
  }

  const config: EtcdConfig = {
    endpoints,
    timeoutMs: DEFAULT_TIMEOUT_MS,
    maxRequestBytes: DEFAULT_MAX_REQUEST_BYTES,
  };
  const tls: EtcdTls = {};
  for (const name of ['ca', 'cert', 'key'] as const) {
    const value = params.get(name);
    if (value === null) continue;
    if (scheme !== 'etcds') throw bad(url, `${name}= needs TLS: use etcds://`);
    if (value === '') throw bad(url, `${name}= needs a file path`);
    tls[name] = value;
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw bad(url, 'give cert= and key= together (the client certificate and its private key)');
  }
  if (scheme === 'etcds') config.tls = tls;

  const timeout = params.get('timeout');
  if (timeout !== null) {
    const ms = parseDuration(timeout);
    if (ms === undefined || ms <= 0)
      throw bad(url, `timeout= expects a duration such as 5s or 500ms, got ${JSON.stringify(timeout)}`);
    config.timeoutMs = ms;
  }
  const limit = params.get('max-request-bytes');
  if (limit !== null) {
    const n = Number(limit);
    if (!/^\d+$/.test(limit) || !Number.isSafeInteger(n) || n < 1024) {
      throw bad(
        url,
        `max-request-bytes= expects a number of bytes (at least 1024), got ${JSON.stringify(limit)}`,
      );
    }
    config.maxRequestBytes = n;
  }

  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    const user = decodeURIComponent(colon === -1 ? userinfo : userinfo.slice(0, colon));
    const fromUrl = colon === -1 ? undefined : decodeURIComponent(userinfo.slice(colon + 1));
    const password = fromUrl ?? env[PASSWORD_ENV];
    if (user === '') throw bad(url, 'the user before @ is empty');
    if (password === undefined) {
      throw bad(
        url,
        `user ${JSON.stringify(user)} has no password: give USER:PASSWORD@ or set ${PASSWORD_ENV}`,
      );
    }
    config.auth = { user, password };
  }
  return config;
}
