/**
 * Who is at the other end of a TLS connection, by the certificate it presented: a role (`server` or
 * `node`) and a name (the holder's id), read from the subject the cluster CA wrote
 * (`CN=<id>, O=unum, OU=<role>`, see pki.ts). Only a certificate the listener verified against the
 * cluster CA counts; anything else is no certificate at all. Kept apart from pki.ts so that reading
 * a peer does not load the certificate builder.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

/** What a certificate lets its holder be: a control-plane server, or a node (an agent's machine). */
export type CertRole = 'server' | 'node';

/** The organization of every subject the cluster CA signs. */
export const CERT_ORGANIZATION = 'unum';

export interface Peer {
  role: CertRole;
  /** The holder's id: a node id, a server id. */
  name: string;
}

/** The role and holder a certificate's subject names (undefined: not one of the cluster's). */
export function subjectIdentity(
  subject: Readonly<Record<string, string | string[] | undefined>> | undefined,
): Peer | undefined {
  if (subject === undefined) return undefined;
  const one = (v: string | string[] | undefined) =>
    Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : v;
  const role = one(subject['OU']);
  const name = one(subject['CN']);
  if (one(subject['O']) !== CERT_ORGANIZATION || name === undefined || name === '') return undefined;
  return role === 'server' || role === 'node' ? { role, name } : undefined;
}

const peers = new WeakMap<TLSSocket, Peer | null>();

/**
 * The verified peer of a request made over TLS; undefined over plain HTTP, without a certificate,
 * or with one the listener could not verify against its CA (expired, another CA's). Read once per
 * connection.
 */
export function peerOf(req: IncomingMessage): Peer | undefined {
  const socket = req.socket as Partial<TLSSocket>;
  if (socket.encrypted !== true || typeof socket.getPeerCertificate !== 'function') return undefined;
  const tls = socket as TLSSocket;
  let peer = peers.get(tls);
  if (peer === undefined) {
    peer = tls.authorized ? (subjectIdentity(tls.getPeerCertificate().subject) ?? null) : null;
    peers.set(tls, peer);
  }
  return peer ?? undefined;
}

/** Why a request has no verified peer, for error messages; undefined when it has one. */
export function peerProblem(req: IncomingMessage): string | undefined {
  const socket = req.socket as Partial<TLSSocket>;
  if (socket.encrypted !== true || typeof socket.getPeerCertificate !== 'function')
    return 'a plain connection (no TLS)';
  const tls = socket as TLSSocket;
  if (Object.keys(tls.getPeerCertificate()).length === 0) return 'no client certificate';
  if (!tls.authorized)
    return `a certificate the cluster CA does not vouch for (${String(tls.authorizationError)})`;
  return peerOf(req) === undefined ? 'a certificate that names no role of the cluster' : undefined;
}
