/**
 * Where a listener is made, server's and agent's alike: plain HTTP, or TLS with the cluster's
 * certificates (a server with a CA, every joined agent). Over TLS the listener asks every client for
 * a certificate and verifies it against the cluster CA; whether one is required is the door's
 * decision (auth.ts, peer.ts), so that a refused caller gets a JSON error that says why instead of a
 * failed handshake. Loopback-only `unum up` keeps a plain listener.
 */
import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { InvalidError, UnavailableError } from '../core/errors.ts';
import { encodeError } from './errors.ts';

/** The certificates of a TLS listener. */
export interface TlsOptions {
  /**
   * PEM: the listener's certificate, followed by the CA's (sent too: a joining agent checks the CA
   * it pinned by hash against it), and its private key.
   */
  cert: string;
  key: string;
  /**
   * PEM: the CA client certificates are verified against. Clients are asked for one; a client
   * without one still connects (the door decides what it may do).
   */
  ca: string;
}

/**
 * What one listener lets its callers take. A caller that opens connections without end, or never
 * finishes its request, must not take the process's descriptors or memory from everyone else.
 */
export interface ConnectionLimits {
  /** Connections open at once, all sources together; one more is refused (503). Default 4096. */
  maxConnections: number;
  /** Connections open at once from one source address; one more is refused (503). Default 512. */
  maxConnectionsPerSource: number;
  /**
   * Time to receive a request's headers, from the connection's opening (or the request's first
   * byte on a kept-alive connection); then the connection is closed (408). Default 10 s.
   */
  headersTimeoutMs: number;
  /**
   * Time to receive a whole request, headers and body. It bounds only what the client sends: a
   * blocking query (`?wait=5m`) or a followed log stream answers for as long as it needs. Default
   * 60 s (a 4 MiB body at about 70 KB/s).
   */
  requestTimeoutMs: number;
  /** How often the two timeouts above are checked (node's default is 30 s). Default 1 s. */
  timeoutCheckMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = Object.freeze({
  maxConnections: 4096,
  maxConnectionsPerSource: 512,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  timeoutCheckMs: 1_000,
});

/**
 * Refused connections get their 503 and up to this long to read it before they are closed; past
 * MAX_REFUSING of them at once, more are closed at once without an answer (a flood gets no reply).
 */
const REFUSAL_GRACE_MS = 1_000;
const MAX_REFUSING = 64;

export interface ListenOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Serve TLS (https://) with these certificates; default plain HTTP. */
  tls?: TlsOptions;
  /** Said when the address is taken (default: "… is already in use"). */
  inUse?: (host: string, port: number) => string;
  /** Defaults: DEFAULT_CONNECTION_LIMITS. */
  limits?: Partial<ConnectionLimits>;
}

export interface Listener {
  readonly server: Server;
  /** The address others use to reach it: `http://127.0.0.1:8687`, `https://…` over TLS (a wildcard host is advertised as loopback). */
  readonly url: string;
  readonly port: number;
  /** Stops accepting and closes every open connection (streams included). Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts listening. Rejects with UnavailableError when the address is in use, the system's error
 * (with its errno `code`) when it can not be bound otherwise, InvalidError when `tls` holds no
 * usable certificate or key.
 */
export async function listen(handler: RequestListener, options: ListenOptions): Promise<Listener> {
  const { host, port: wanted, tls } = options;
  const limits = { ...DEFAULT_CONNECTION_LIMITS, ...options.limits };
  const httpOptions = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    connectionsCheckingInterval: limits.timeoutCheckMs,
  };
  let server: Server;
  if (tls === undefined) server = createServer(httpOptions, handler);
  else {
    try {
      server = createTlsServer(
        {
          ...httpOptions,
          cert: tls.cert,
          key: tls.key,
          ca: tls.ca,
          requestCert: true,
          // The door refuses what needs a certificate; the handshake lets a CLI without one in.
          rejectUnauthorized: false,
          minVersion: 'TLSv1.2',
          // A handshake that does not finish is bounded like a request's headers.
          handshakeTimeout: limits.headersTimeoutMs,
        },
        handler,
      ) as unknown as Server;
    } catch (err) {
      throw new InvalidError(`tls: cannot use the certificate and key given: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
  const gate = connectionGate(server, limits, tls !== undefined);
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
    url: `${tls ? 'https' : 'http'}://${advertisedHost(host)}:${port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        gate.closeRefused();
      });
      return closing;
    },
  };
}

/**
 * Counts the open connections, in total and per source, and refuses those over the limits before
 * node:http parses a byte of them: the gate takes the place of node:http's own `connection`
 * listener and hands it only the connections it admits.
 */
function connectionGate(server: Server, limits: ConnectionLimits, tls: boolean): { closeRefused(): void } {
  // Over TLS this is node:tls's listener: a refused connection never costs a handshake either.
  const [http] = server.listeners('connection') as ((socket: Socket) => void)[];
  if (!http || server.listenerCount('connection') !== 1)
    throw new Error('node:http was expected to listen to its connections once');
  server.removeAllListeners('connection');
  let open = 0;
  const bySource = new Map<string, number>();
  const refusing = new Set<Socket>();

  const refuse = (socket: Socket, message: string): void => {
    // A TLS client would read a plain answer as a broken handshake: it is closed without one.
    if (tls || refusing.size >= MAX_REFUSING) {
      socket.destroy();
      return;
    }
    refusing.add(socket);
    const { status, body } = encodeError(new UnavailableError(message));
    const text = JSON.stringify(body);
    const timer = setTimeout(() => socket.destroy(), REFUSAL_GRACE_MS);
    socket.once('close', () => {
      clearTimeout(timer);
      refusing.delete(socket);
    });
    socket.on('error', () => socket.destroy());
    // Whatever the client sends is read and dropped: closing with unread bytes would reset the
    // connection, and the client would lose the answer.
    socket.resume();
    socket.end(
      `HTTP/1.1 ${status} Service Unavailable\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(text)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n${text}`,
    );
  };

  server.on('connection', (socket: Socket) => {
    const source = sourceOf(socket);
    if (source === undefined) {
      socket.destroy(); // already gone
      return;
    }
    const fromSource = bySource.get(source) ?? 0;
    if (open >= limits.maxConnections)
      return refuse(socket, `the server has ${open} connections open, its limit; retry later`);
    if (fromSource >= limits.maxConnectionsPerSource)
      return refuse(
        socket,
        `${source} has ${fromSource} connections open to this server, the limit per source; close some, or retry later`,
      );
    open++;
    bySource.set(source, fromSource + 1);
    socket.once('close', () => {
      open--;
      const left = (bySource.get(source) ?? 1) - 1;
      if (left > 0) bySource.set(source, left);
      else bySource.delete(source);
    });
    http.call(server, socket);
  });

  return {
    closeRefused() {
      for (const socket of refusing) socket.destroy();
    },
  };
}

/** The caller's address; an IPv4 address reached over an IPv6 socket counts as itself. */
function sourceOf(socket: Socket): string | undefined {
  const address = socket.remoteAddress;
  return address?.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/** The host others should use to reach an endpoint bound to `host`. */
export function advertisedHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}
