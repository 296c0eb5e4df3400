/**
 * Where a listener is made, server's and agent's alike: plain HTTP today. TLS goes here, and only
 * here, with the multi-host release (agents and servers verify each other against the cluster CA);
 * loopback-only `unum up` may keep a plain listener.
 */
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidError, UnavailableError } from '../core/errors.ts';

/**
 * The certificates of a TLS listener. Not implemented yet: it comes with the multi-host release
 * (node certificates issued by the cluster CA, clients verified); a listener asked for TLS now
 * refuses to start rather than serve plain text.
 */
export interface TlsOptions {
  /** PEM: the listener's certificate chain and private key. */
  cert: string;
  key: string;
  /** PEM: the CA callers' certificates must chain to (both sides verified). */
  ca?: string;
}

export interface ListenOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Coming with the multi-host release: see TlsOptions. */
  tls?: TlsOptions;
  /** Said when the address is taken (default: "… is already in use"). */
  inUse?: (host: string, port: number) => string;
}

export interface Listener {
  readonly server: Server;
  /** The address others use to reach it: `http://127.0.0.1:8687` (a wildcard host is advertised as loopback). */
  readonly url: string;
  readonly port: number;
  /** Stops accepting and closes every open connection (streams included). Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts listening. Rejects with UnavailableError when the address is in use, the system's error
 * (with its errno `code`) when it can not be bound otherwise, InvalidError when `tls` is asked for
 * (not yet available).
 */
export async function listen(handler: RequestListener, options: ListenOptions): Promise<Listener> {
  if (options.tls !== undefined)
    throw new InvalidError('tls: TLS listeners come with the multi-host release; leave tls unset');
  const { host, port: wanted } = options;
  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    // Other errors (EACCES, EADDRNOTAVAIL) go as they are: callers word them by their errno.
    const onError = (err: NodeJS.ErrnoException): void =>
      reject(
        err.code === 'EADDRINUSE'
          ? new UnavailableError(options.inUse?.(host, wanted) ?? `${host}:${wanted} is already in use`, {
              cause: err,
            })
          : err,
      );
    server.once('error', onError);
    server.listen(wanted, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    server,
    port,
    url: `http://${advertisedHost(host)}:${port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** The host others should use to reach an endpoint bound to `host`. */
export function advertisedHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}
