/**
 * fetch() over TLS with the cluster's certificates. Node's fetch trusts the system's CAs only and
 * cannot present a client certificate, so requests to a cluster member go through node:https with
 * the cluster CA (and, for agents and servers, their own certificate); the answer is a standard
 * `Response`, so callers read it as they read fetch's.
 */
import { Agent, request } from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { Readable } from 'node:stream';

export interface ClientTls {
  /** PEM: the cluster CA, the only one trusted for the other end. */
  ca: string;
  /** PEM: this side's certificate and key, presented to the other end (agents, servers). */
  cert?: string;
  key?: string;
}

export interface TlsRequestInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
  /**
   * The name the other end's certificate must carry instead of the URL's host (a server calls an
   * agent by its address and checks that the node id answers).
   */
  expectName?: string;
  /** Checks the other end's certificate further; a returned Error fails the request. */
  checkPeer?: (cert: PeerCertificate) => Error | undefined;
}

/** A pool of kept-alive TLS connections with one set of certificates. */
export class TlsFetcher {
  private readonly agent: Agent;

  constructor(tls: ClientTls) {
    this.agent = new Agent({
      keepAlive: true,
      ca: tls.ca,
      ...(tls.cert !== undefined ? { cert: tls.cert } : {}),
      ...(tls.key !== undefined ? { key: tls.key } : {}),
      minVersion: 'TLSv1.2',
    });
  }

  /** Like fetch(url, init) for an https:// URL. Rejects with the system's or TLS's error (its `code`). */
  fetch(url: string, init: TlsRequestInit = {}): Promise<Response> {
    const method = init.method ?? 'GET';
    return new Promise<Response>((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          agent: this.agent,
          ...(init.headers ? { headers: init.headers } : {}),
          ...(init.signal ? { signal: init.signal } : {}),
          ...(init.expectName !== undefined ? { servername: init.expectName } : {}),
          ...(init.checkPeer !== undefined
            ? { checkServerIdentity: (_host: string, cert: PeerCertificate) => init.checkPeer?.(cert) }
            : {}),
        },
        (res) => {
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) {
            if (Array.isArray(v)) for (const x of v) headers.append(k, x);
            else if (v !== undefined) headers.set(k, v);
          }
          const status = res.statusCode ?? 502;
          const empty = method === 'HEAD' || status === 204 || status === 304;
          if (empty) res.resume();
          resolve(
            new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
              status,
              statusText: res.statusMessage ?? '',
              headers,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(init.body);
    });
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }
}

/** TLS errors that mean "the other end's certificate is not one this side trusts". */
export function isCertificateError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code ?? (err as { cause?: { code?: unknown } }).cause?.code;
  return (
    typeof code === 'string' &&
    /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS_CERT_ALTNAME/.test(code)
  );
}

/** Pools shared by every client with the same certificates, as fetch shares its own. */
const shared = new Map<string, { fetcher: TlsFetcher; users: number }>();

/**
 * The pool for these certificates, shared (a program that makes a client per call must not open a
 * connection per client: servers limit connections per source). `release` when done; the pool
 * closes when its last user releases it.
 */
export function sharedTlsFetcher(tls: ClientTls): { fetcher: TlsFetcher; release(): void } {
  const key = `${tls.ca}\0${tls.cert ?? ''}\0${tls.key ?? ''}`;
  let entry = shared.get(key);
  if (entry === undefined) {
    entry = { fetcher: new TlsFetcher(tls), users: 0 };
    shared.set(key, entry);
  }
  entry.users++;
  const held = entry;
  let released = false;
  return {
    fetcher: held.fetcher,
    release() {
      if (released) return;
      released = true;
      if (--held.users > 0) return;
      held.fetcher.close();
      if (shared.get(key) === held) shared.delete(key);
    },
  };
}
