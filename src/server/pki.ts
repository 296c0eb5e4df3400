/**
 * The server's share of the cluster PKI, kept in its data dir:
 *
 *   <dataDir>/ca.pem                 the cluster CA's certificate (public: clients' UNUM_CACERT)
 *   <dataDir>/server/ca-key.pem      the CA's private key (0600, in the 0700 server dir)
 *   <dataDir>/server/ca.pem          the CA's certificate (the copy the server trusts)
 *   <dataDir>/server/tls.pem         this server's certificate (role server, its addresses)
 *   <dataDir>/server/tls-key.pem     its key (0600)
 *
 * Made at the first start: the CA, then a certificate for the server's addresses. At each start the
 * server certificate is made again when it does not name every address, was signed by another CA,
 * or has less than a month left. Nodes get their certificates from `signNode` (join, renewal).
 *
 * Several servers on one Store (etcd) share one CA: the CA is also kept in the Store
 * (`/unum/pki/ca`), put only if absent. A server with no CA of its own adopts the Store's; the first
 * server of a cluster puts its own there; a server whose CA differs from the Store's refuses to
 * start (its nodes and the cluster's would not trust each other). The CA key is then as safe as the
 * Store: on etcd, use TLS client certificates and etcd's auth (docs).
 */
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { hostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { InvalidError } from '../core/errors.ts';
import type { Store } from '../store/types.ts';
import { keys } from './keys.ts';
import type { ClientTls } from '../api/https.ts';
import type { TlsOptions } from '../transport/index.ts';
import {
  LIFETIMES,
  certificateHash,
  createCa,
  describeCertificate,
  issueKeyAndCertificate,
  keyMatchesCertificate,
  readCsr,
  signCsr,
  verifyCertificate,
  type CertificateAuthority,
} from '../transport/pki.ts';

/** A server certificate with less than this left is made again at start. */
const RENEW_BEFORE_MS = 30 * 86_400_000;

export interface IssuedNodeCertificate {
  nodeId: string;
  certificate: string;
  ca: string;
  expiresAt: number;
}

/** Node ids the CA signs: what the agent keeps in its node-id file (fingerprint.ts). */
const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export class ServerPki {
  /** The public CA file clients point UNUM_CACERT at. */
  readonly caFile: string;
  /** `sha256:<hex>` of the CA certificate: what `unum agent --ca-hash` pins. */
  readonly caHash: string;
  /** The CA was made by this start (a new cluster). */
  readonly created: boolean;
  private readonly ca: CertificateAuthority;
  private readonly serverCert: string;
  private readonly serverKey: string;

  private constructor(o: {
    caFile: string;
    ca: CertificateAuthority;
    created: boolean;
    serverCert: string;
    serverKey: string;
  }) {
    this.caFile = o.caFile;
    this.ca = o.ca;
    this.caHash = certificateHash(o.ca.certPem);
    this.created = o.created;
    this.serverCert = o.serverCert;
    this.serverKey = o.serverKey;
  }

  /**
   * Loads the CA and the server certificate from the data dir, making what is missing. `names`:
   * the addresses and DNS names the server certificate must name. InvalidError when the files
   * there do not fit together (a CA key that is not the CA certificate's).
   */
  static async load(o: {
    dataDir: string;
    serverId: string;
    names: string[];
    now: number;
    /** The cluster's Store: where servers sharing it find the cluster's CA. */
    store: Store;
  }): Promise<ServerPki> {
    const dir = join(o.dataDir, 'server');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const caKeyFile = join(dir, 'ca-key.pem');
    const caCertFile = join(dir, 'ca.pem');
    let ca: CertificateAuthority | undefined;
    let created = false;
    if (existsSync(caKeyFile)) {
      ca = { keyPem: await readFile(caKeyFile, 'utf8'), certPem: await readFile(caCertFile, 'utf8') };
      if (!keyMatchesCertificate(ca.keyPem, ca.certPem))
        throw new InvalidError(
          `${caKeyFile} is not the key of ${caCertFile}: restore both from the same backup (a new CA would lock every joined node out)`,
        );
    }
    const shared = await sharedCa(o.store, ca, () => createCa(o.now));
    if (ca === undefined) {
      ca = shared.ca;
      created = shared.created;
      // The certificate first: a crash in between leaves no key without its certificate.
      await writeAtomic(caCertFile, ca.certPem, 0o644);
      await writeAtomic(caKeyFile, ca.keyPem, 0o600);
    }
    const caFile = join(o.dataDir, 'ca.pem');
    if (!existsSync(caFile) || (await readFile(caFile, 'utf8')) !== ca.certPem)
      await writeAtomic(caFile, ca.certPem, 0o644);

    const certFile = join(dir, 'tls.pem');
    const keyFile = join(dir, 'tls-key.pem');
    const names = [...new Set(o.names)];
    let serverCert = existsSync(certFile) ? await readFile(certFile, 'utf8') : '';
    let serverKey = existsSync(keyFile) ? await readFile(keyFile, 'utf8') : '';
    if (!usable(serverCert, serverKey, ca, names, o.now)) {
      const made = await issueKeyAndCertificate(ca, {
        role: 'server',
        commonName: o.serverId,
        names,
        now: o.now,
        lifetimeMs: LIFETIMES.serverMs,
      });
      await writeAtomic(keyFile, made.keyPem, 0o600);
      await writeAtomic(certFile, made.certPem, 0o644);
      serverCert = made.certPem;
      serverKey = made.keyPem;
    }
    return new ServerPki({ caFile, ca, created, serverCert, serverKey });
  }

  /** The API listener's certificates: this server's, then the CA's (a joining agent pins it by hash). */
  listenerTls(): TlsOptions {
    return {
      cert: `${this.serverCert.trim()}\n${this.ca.certPem.trim()}\n`,
      key: this.serverKey,
      ca: this.ca.certPem,
    };
  }

  /** What the server presents when it calls an agent (its certificate has the server role). */
  clientTls(): ClientTls {
    return { ca: this.ca.certPem, cert: this.serverCert, key: this.serverKey };
  }

  get caCertificate(): string {
    return this.ca.certPem;
  }

  /** The names the server certificate carries (its addresses). */
  get names(): string[] {
    return describeCertificate(this.serverCert).names;
  }

  /**
   * Signs a node's request: a node certificate for the id the request names (`expectNodeId`, when
   * given, must be it). InvalidError for a malformed request or id.
   */
  async signNode(csrPem: string, now: number, expectNodeId?: string): Promise<IssuedNodeCertificate> {
    const { commonName } = await readCsr(csrPem);
    if (!NODE_ID.test(commonName))
      throw new InvalidError(
        `csr: the common name must be the node id (letters, digits, ".", "_", "-"), got ${JSON.stringify(commonName.slice(0, 64))}`,
      );
    if (expectNodeId !== undefined && commonName !== expectNodeId)
      throw new InvalidError(`csr: names node ${commonName}, not ${expectNodeId}`);
    const certificate = await signCsr(this.ca, csrPem, {
      role: 'node',
      now,
      lifetimeMs: LIFETIMES.nodeMs,
    });
    return {
      nodeId: commonName,
      certificate,
      ca: this.ca.certPem,
      expiresAt: Date.parse(new X509Certificate(certificate).validTo),
    };
  }
}

/** Whether a server certificate can serve on: this CA's, its key, every name, a month left. */
function usable(
  certPem: string,
  keyPem: string,
  ca: CertificateAuthority,
  names: string[],
  now: number,
): boolean {
  if (certPem === '' || keyPem === '') return false;
  try {
    verifyCertificate(certPem, ca.certPem, now + RENEW_BEFORE_MS, 'server');
    const has = new Set(describeCertificate(certPem).names);
    return keyMatchesCertificate(keyPem, certPem) && names.every((n) => has.has(n));
  } catch {
    // expired, another CA's, not a server's, unreadable: made again
    return false;
  }
}

async function writeAtomic(file: string, text: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode });
  await chmod(tmp, mode);
  await rename(tmp, file);
}

/**
 * The names a server listening on `host` is reached by: that address, or every address of the
 * machine for a wildcard; `localhost` and the host name; and the operator's own (`--tls-name`).
 */
export function serverNames(host: string, extra: readonly string[] = []): string[] {
  const names = new Set<string>(['localhost', hostname()]);
  const wildcard = host === '' || host === '0.0.0.0' || host === '::';
  if (wildcard) {
    for (const list of Object.values(networkInterfaces()))
      for (const a of list ?? [])
        if (a.family === 'IPv4' || !a.address.startsWith('fe80:')) names.add(a.address);
    names.add('127.0.0.1');
  } else names.add(host.replace(/^\[|\]$/g, ''));
  for (const n of extra) names.add(n);
  return [...names];
}

/**
 * The cluster's CA as the Store keeps it: `local` (this server's, if it has one) put there if the
 * Store has none yet, else the Store's (made with `make` when neither exists). `created`: this call
 * made it. InvalidError when `local` differs from the Store's.
 */
async function sharedCa(
  store: Store,
  local: CertificateAuthority | undefined,
  make: () => Promise<CertificateAuthority>,
): Promise<{ ca: CertificateAuthority; created: boolean }> {
  const key = keys.clusterCa;
  const kept = await store.get(key);
  if (kept === undefined) {
    const mine = local ?? (await make());
    const res = await store.txn({
      compare: [{ key, target: 'create', op: '=', value: 0 }],
      success: [{ type: 'put', key, value: JSON.stringify(mine) }],
      failure: [{ type: 'get', key }],
    });
    if (res.succeeded) return { ca: mine, created: local === undefined };
    // Another server of the cluster put one first: that one is the cluster's.
    const got = res.results[0];
    const kv = got?.type === 'get' ? got.kvs[0] : undefined;
    if (kv === undefined) throw new InvalidError(`${key} vanished while this server read it; start it again`);
    return check(JSON.parse(kv.value) as CertificateAuthority, local);
  }
  return check(JSON.parse(kept.value) as CertificateAuthority, local);
}

function check(
  cluster: CertificateAuthority,
  local: CertificateAuthority | undefined,
): { ca: CertificateAuthority; created: boolean } {
  if (!keyMatchesCertificate(cluster.keyPem, cluster.certPem))
    throw new InvalidError(
      `the cluster CA in the Store (${keys.clusterCa}) does not match its key: restore it from a backup`,
    );
  if (local !== undefined && local.certPem.trim() !== cluster.certPem.trim())
    throw new InvalidError(
      `this server's CA (${certificateHash(local.certPem)}) is not the cluster's (${certificateHash(cluster.certPem)}, in the Store): its data dir belongs to another cluster; start it with an empty --data-dir to adopt the cluster's CA`,
    );
  return { ca: cluster, created: false };
}
