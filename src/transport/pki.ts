/**
 * The cluster's certificates: a CA (ECDSA P-256, self-signed), the certificates it issues to servers
 * and to nodes, the requests (CSRs) nodes make, and the checks either side runs on them.
 *
 * Every certificate says who holds it in its subject: `CN=<server or node id>, O=unum, OU=<role>`.
 * The role (`server` or `node`) is what lets an agent refuse a node that calls it as if it were a
 * server, and lets a server take a node's certificate as that node's identity. Both roles get the
 * serverAuth and clientAuth key usages: a server answers agents and CLIs and calls agents; an agent
 * answers servers and calls them.
 *
 * Certificates are built with @peculiar/x509 over WebCrypto (no hand-written ASN.1) and checked
 * with node:crypto's X509Certificate (what TLS itself uses).
 */
// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { X509Certificate, createHash, createPrivateKey, randomBytes, webcrypto } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
import { isIP } from 'node:net';
import { InvalidError, UnauthenticatedError } from '../core/errors.ts';
import { CERT_ORGANIZATION as ORGANIZATION, subjectIdentity, type CertRole } from './peer.ts';

export { subjectIdentity, type CertRole };

// @peculiar/x509's types are the DOM's; node:crypto's webcrypto is that API.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

/** How long what the cluster issues stays valid. */
export const LIFETIMES = Object.freeze({
  caMs: 10 * 365 * DAY_MS,
  serverMs: 365 * DAY_MS,
  nodeMs: 365 * DAY_MS,
});

/** Issued certificates start this long before `now`: a node whose clock is a little behind accepts them. */
const BACKDATE_MS = 5 * 60_000;

/** The CA: its certificate (public, handed to every member) and its private key (the server's alone). */
export interface CertificateAuthority {
  certPem: string;
  keyPem: string;
}

/** A private key and the certificate that goes with it, both PEM. */
export interface KeyAndCert {
  keyPem: string;
  certPem: string;
}

/** PEM as files hold it: ending with a newline, so that two of them make a chain. */
function pemText(pem: string): string {
  return `${pem.trim()}\n`;
}

/** A fresh ECDSA P-256 key pair (extractable: its private half is written to a 0600 file). */
export function newKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

/** The private key as PKCS#8 PEM, the form TLS takes. */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return pemText(x509.PemConverter.encode(der, 'PRIVATE KEY'));
}

async function importPrivateKey(pem: string): Promise<CryptoKey> {
  const der = x509.PemConverter.decode(pem)[0];
  if (der === undefined) throw new InvalidError('not a PEM private key');
  return webcrypto.subtle.importKey('pkcs8', der, KEY_ALGORITHM, false, ['sign']);
}

/** A positive 128-bit serial number, hex. */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

/** The cluster's CA: a self-signed certificate that may sign end-entity certificates only. */
export async function createCa(now: number, name = 'unum cluster CA'): Promise<CertificateAuthority> {
  const keys = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: [{ CN: [name] }, { O: [ORGANIZATION] }],
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + LIFETIMES.caMs),
    signingAlgorithm: SIGNING_ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: pemText(cert.toString('pem')), keyPem: await privateKeyPem(keys.privateKey) };
}

/** A certificate request for `commonName` (a node asks for its id), signed by the key it names. */
export async function createCsr(keys: CryptoKeyPair, commonName: string): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [commonName] }],
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
  });
  return pemText(csr.toString('pem'));
}

/** A new key and a request for `commonName`: what a node sends when it joins or renews. */
export async function newKeyAndCsr(commonName: string): Promise<{ keyPem: string; csrPem: string }> {
  const keys = await newKeyPair();
  return { keyPem: await privateKeyPem(keys.privateKey), csrPem: await createCsr(keys, commonName) };
}

export interface IssueOptions {
  role: CertRole;
  /** The holder's id: a node's id, a server's id. */
  commonName: string;
  /** More names for the subject alternative name: DNS names and IP addresses (a server's addresses). */
  names?: readonly string[];
  now: number;
  lifetimeMs: number;
}

/**
 * The common name a request asks for, once its signature is checked (the requester holds the key).
 * InvalidError for anything that is not a PEM CSR with a valid signature over a P-256 key.
 */
export async function readCsr(csrPem: string): Promise<{ commonName: string; publicKey: x509.PublicKey }> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new InvalidError('csr: expected a PEM certificate request (PKCS#10)', { cause: err });
  }
  const alg = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256')
    throw new InvalidError(
      `csr: expected an ECDSA P-256 key, got ${alg.name} ${alg.namedCurve ?? ''}`.trim(),
    );
  if (!(await csr.verify()))
    throw new InvalidError('csr: its signature does not match its key (the requester must hold the key)');
  const commonName = csr.subjectName.getField('CN')[0];
  if (commonName === undefined) throw new InvalidError('csr: the subject has no common name (CN)');
  return { commonName, publicKey: csr.publicKey };
}

/** Signs a certificate for `publicKey` with the CA: the subject and names are the issuer's choice. */
export async function issueCertificate(
  ca: CertificateAuthority,
  publicKey: x509.PublicKeyType,
  o: IssueOptions,
): Promise<string> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const signingKey = await importPrivateKey(ca.keyPem);
  const names = [o.commonName, ...(o.names ?? [])];
  const sans = [...new Set(names)].map((n) =>
    isIP(n) !== 0 ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n },
  );
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: [{ CN: [o.commonName] }, { O: [ORGANIZATION] }, { OU: [o.role] }],
    issuer: caCert.subjectName,
    notBefore: new Date(o.now - BACKDATE_MS),
    notAfter: new Date(o.now + o.lifetimeMs),
    signingAlgorithm: SIGNING_ALGORITHM,
    publicKey,
    signingKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension(sans),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return pemText(cert.toString('pem'));
}

/** Signs a node's request: the certificate names the request's common name with `role`. */
export async function signCsr(
  ca: CertificateAuthority,
  csrPem: string,
  o: Omit<IssueOptions, 'commonName'> & { commonName?: string },
): Promise<string> {
  const csr = await readCsr(csrPem);
  return issueCertificate(ca, csr.publicKey, { ...o, commonName: o.commonName ?? csr.commonName });
}

/** A new key and a certificate for it, both made here (a server's own certificate). */
export async function issueKeyAndCertificate(ca: CertificateAuthority, o: IssueOptions): Promise<KeyAndCert> {
  const keys = await newKeyPair();
  return {
    keyPem: await privateKeyPem(keys.privateKey),
    certPem: await issueCertificate(ca, keys.publicKey, o),
  };
}

// --- checks -------------------------------------------------------------------------------------

/** `sha256:<hex>` of a certificate's DER: how a joining node pins the CA before it has it. */
export function certificateHash(certPem: string): string {
  return `sha256:${createHash('sha256').update(new X509Certificate(certPem).raw).digest('hex')}`;
}

/** A `--ca-hash` as given (`sha256:<64 hex>`, the prefix optional, any case), normalized; undefined if malformed. */
export function parseCaHash(text: string): string | undefined {
  const m = /^(?:sha256:)?([0-9a-fA-F]{64})$/.exec(text.trim());
  return m ? `sha256:${m[1]!.toLowerCase()}` : undefined;
}

/** What a PEM certificate says: who, which role, until when. */
export function describeCertificate(certPem: string): {
  role?: CertRole;
  name?: string;
  notBefore: number;
  notAfter: number;
  serial: string;
  names: string[];
} {
  const cert = new X509Certificate(certPem);
  const subject: Record<string, string> = {};
  for (const line of cert.subject.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) subject[line.slice(0, at)] = line.slice(at + 1);
  }
  const who = subjectIdentity(subject);
  const names = (cert.subjectAltName ?? '')
    .split(', ')
    .map((n) => n.replace(/^(DNS|IP Address):/, ''))
    .filter((n) => n !== '');
  return {
    ...(who ? { role: who.role, name: who.name } : {}),
    notBefore: Date.parse(cert.validFrom),
    notAfter: Date.parse(cert.validTo),
    serial: cert.serialNumber,
    names,
  };
}

/**
 * UnauthenticatedError unless `certPem` was signed by the CA `caPem` and is valid at `now` (and,
 * when given, has `role`). What TLS checks on every connection, for certificates read from files.
 */
export function verifyCertificate(certPem: string, caPem: string, now: number, role?: CertRole): void {
  const cert = new X509Certificate(certPem);
  const ca = new X509Certificate(caPem);
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey))
    throw new UnauthenticatedError('the certificate was not signed by the cluster CA');
  if (Date.parse(cert.validFrom) > now)
    throw new UnauthenticatedError(
      `the certificate is not valid before ${new Date(cert.validFrom).toISOString()}`,
    );
  if (Date.parse(cert.validTo) <= now)
    throw new UnauthenticatedError(`the certificate expired at ${new Date(cert.validTo).toISOString()}`);
  if (role !== undefined) {
    const got = describeCertificate(certPem).role;
    if (got !== role)
      throw new UnauthenticatedError(`the certificate is a ${got ?? 'foreign'} one, not a ${role}'s`);
  }
}

/** Whether the key in `keyPem` is the one `certPem` certifies. */
export function keyMatchesCertificate(keyPem: string, certPem: string): boolean {
  try {
    return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    // a malformed key or certificate
    return false;
  }
}
