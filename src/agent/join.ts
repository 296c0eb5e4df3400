/**
 * Joining a cluster: how a new machine gets its node certificate, and where it keeps it.
 *
 *   1. trust: connect to the server without trusting anything yet, and find, among the
 *      certificates it presents, the CA whose hash the operator gave (`--ca-hash`, as kubeadm's
 *      discovery hash): a server that presents no such CA is refused before a byte of the token is
 *      sent;
 *   2. join: over TLS verified against that CA (the server's certificate must name the address
 *      dialed), send the join token and a request (CSR) for the node's id, made with a new key that
 *      never leaves the machine;
 *   3. keep: the node certificate, its key (0600) and the CA under <dataDir>/agent/tls/, and the
 *      CA again as <dataDir>/ca.pem for the CLI on this machine.
 *
 * A node that joined before keeps its id (the node-id file) and its certificate; joining again
 * (another CA, or a certificate that expired) issues a new certificate for the same id.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type DetailedPeerCertificate } from 'node:tls';
import { UnumClient } from '../api/client.ts';
import { InvalidError, UnauthenticatedError, UnavailableError } from '../core/errors.ts';
import {
  certificateHash,
  describeCertificate,
  keyMatchesCertificate,
  newKeyAndCsr,
  parseCaHash,
  verifyCertificate,
} from '../transport/pki.ts';

/** The node's certificates, PEM. */
export interface NodeTls {
  ca: string;
  cert: string;
  key: string;
  /** `sha256:<hex>` of the CA. */
  caHash: string;
  /** When the node certificate expires (ms since the epoch). */
  expiresAt: number;
  notBefore: number;
}

export interface JoinOptions {
  /** The server to join: https://host:port (or several, comma-separated: the first that answers). */
  server: string;
  /** A join token (`unum token create`). */
  token: string;
  /** The CA's hash, `sha256:<hex>`, from the server's banner or `unum token create`. */
  caHash: string;
}

const files = (dataDir: string) => {
  const dir = join(dataDir, 'agent', 'tls');
  return {
    dir,
    cert: join(dir, 'node.pem'),
    key: join(dir, 'node-key.pem'),
    ca: join(dir, 'ca.pem'),
    publicCa: join(dataDir, 'ca.pem'),
  };
};

/**
 * The certificates kept in the data dir, if the node joined; InvalidError when they are there but
 * are not this node's, or do not go together.
 */
export async function loadNodeTls(dataDir: string, nodeId: string): Promise<NodeTls | undefined> {
  const f = files(dataDir);
  let cert: string;
  try {
    cert = await readFile(f.cert, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const [key, ca] = await Promise.all([readFile(f.key, 'utf8'), readFile(f.ca, 'utf8')]);
  const info = describeCertificate(cert);
  if (info.role !== 'node' || info.name !== nodeId || !keyMatchesCertificate(key, cert))
    throw new InvalidError(
      `${f.cert} is not a node certificate of node ${nodeId} with its key: remove ${f.dir} and join again (unum agent --join)`,
    );
  return { ca, cert, key, caHash: certificateHash(ca), expiresAt: info.notAfter, notBefore: info.notBefore };
}

/** Whether the certificate is past two thirds of its life (then it is renewed), or past its end. */
export function needsRenewal(tls: NodeTls, now: number): boolean {
  return now >= tls.notBefore + ((tls.expiresAt - tls.notBefore) * 2) / 3;
}

/**
 * Joins the cluster as node `nodeId` and keeps what it gets (see the top of this file).
 * UnauthenticatedError when the server is not the one the hash pins, or refuses the token;
 * UnavailableError when it can not be reached; InvalidError for a malformed hash or address.
 */
export async function joinCluster(dataDir: string, nodeId: string, o: JoinOptions): Promise<NodeTls> {
  // Several servers (`--join a,b,c`): the first that can be reached; a refusal is final.
  const servers = o.server
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const [i, server] of servers.entries()) {
    try {
      return await joinOne(dataDir, nodeId, { ...o, server });
    } catch (err) {
      if (!(err instanceof UnavailableError) || i === servers.length - 1) throw err;
    }
  }
  throw new InvalidError('--join: expected the https:// address of at least one server');
}

async function joinOne(dataDir: string, nodeId: string, o: JoinOptions): Promise<NodeTls> {
  const pinned = parseCaHash(o.caHash);
  if (pinned === undefined)
    throw new InvalidError(`--ca-hash: expected sha256:<64 hex digits>, got ${JSON.stringify(o.caHash)}`);
  let url: URL;
  try {
    url = new URL(o.server);
  } catch {
    throw new InvalidError(`--join: expected the server's https:// address, got ${JSON.stringify(o.server)}`);
  }
  if (url.protocol !== 'https:')
    throw new InvalidError(
      `--join: ${o.server} is not https://: joining needs a server with TLS ("unum server"; "unum up" serves plain HTTP on loopback only)`,
    );
  const ca = await pinnedCa(url, pinned);
  const { keyPem, csrPem } = await newKeyAndCsr(nodeId);
  const client = new UnumClient({ addr: o.server, ca, token: () => undefined });
  let res;
  try {
    res = await client.join(o.token, csrPem);
  } finally {
    client.close();
  }
  return keep(dataDir, nodeId, { ca: res.ca, cert: res.certificate, key: keyPem }, pinned);
}

/** A joined node's new certificate, asked for with its current one (before it expires). */
export async function renewNodeCertificate(
  dataDir: string,
  nodeId: string,
  server: string,
  current: NodeTls,
): Promise<NodeTls> {
  const { keyPem, csrPem } = await newKeyAndCsr(nodeId);
  const client = new UnumClient({
    addr: server,
    ca: current.ca,
    cert: current.cert,
    key: current.key,
    token: () => undefined,
  });
  try {
    const res = await client.renewNodeCertificate(nodeId, csrPem);
    return await keep(dataDir, nodeId, { ca: res.ca, cert: res.certificate, key: keyPem }, current.caHash);
  } finally {
    client.close();
  }
}

/** Checks what the server issued, then writes it (the key first, 0600; the certificate last). */
async function keep(
  dataDir: string,
  nodeId: string,
  got: { ca: string; cert: string; key: string },
  pinned: string,
): Promise<NodeTls> {
  if (certificateHash(got.ca) !== pinned)
    throw new UnauthenticatedError(`the server answered with another CA than ${pinned}: refusing it`);
  verifyCertificate(got.cert, got.ca, Date.now(), 'node');
  const info = describeCertificate(got.cert);
  if (info.name !== nodeId || !keyMatchesCertificate(got.key, got.cert))
    throw new UnauthenticatedError(
      `the server issued a certificate for ${info.name ?? 'nobody'}, not node ${nodeId}`,
    );
  const f = files(dataDir);
  await mkdir(f.dir, { recursive: true, mode: 0o700 });
  await chmod(f.dir, 0o700);
  await writeAtomic(f.key, got.key, 0o600);
  await writeAtomic(f.ca, got.ca, 0o644);
  await writeAtomic(f.publicCa, got.ca, 0o644);
  await writeAtomic(f.cert, got.cert, 0o644);
  return { ...got, caHash: pinned, expiresAt: info.notAfter, notBefore: info.notBefore };
}

async function writeAtomic(file: string, text: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode });
  await chmod(tmp, mode);
  await rename(tmp, file);
}

/**
 * The CA certificate, among those the server at `url` presents, whose hash is `pinned`; nothing is
 * trusted on this connection (nothing but the handshake goes over it). UnauthenticatedError when
 * none has that hash.
 */
async function pinnedCa(url: URL, pinned: string): Promise<string> {
  const port = Number(url.port || 443);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const chain = await new Promise<DetailedPeerCertificate>((resolve, reject) => {
    const socket = connect(
      {
        host,
        port,
        rejectUnauthorized: false,
        timeout: 10_000,
        ...(isName(host) ? { servername: host } : {}),
      },
      () => {
        const cert = socket.getPeerCertificate(true);
        socket.end();
        resolve(cert);
      },
    );
    socket.on('timeout', () => socket.destroy(new Error('timed out')));
    socket.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        new UnavailableError(
          `cannot reach the server at ${url.origin} to join it (${err.code ?? err.message})`,
          {
            cause: err,
          },
        ),
      ),
    );
  });
  const seen = new Set<Buffer>();
  for (
    let c: DetailedPeerCertificate | undefined = chain;
    c?.raw && !seen.has(c.raw);
    c = c.issuerCertificate
  ) {
    seen.add(c.raw);
    if (`sha256:${createHash('sha256').update(c.raw).digest('hex')}` === pinned)
      return new X509Certificate(c.raw).toString();
  }
  throw new UnauthenticatedError(
    `the server at ${url.origin} presented no CA certificate with hash ${pinned}: a mistyped --ca-hash, or not the server you meant (refusing to send it the join token)`,
  );
}

/** SNI takes names, not addresses. */
function isName(host: string): boolean {
  return !/^[\d.]+$/.test(host) && !host.includes(':');
}
