/**
 * TLS listeners with the cluster's certificates: the listener asks for a client certificate and
 * verifies it against the CA; the door reads who called (peer.ts). A client without one still
 * connects; a certificate of another CA counts as none.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TlsFetcher, isCertificateError } from '../api/https.ts';
import { InvalidError } from '../core/errors.ts';
import { listen, type Listener } from './listen.ts';
import { peerOf, peerProblem } from './peer.ts';
import { LIFETIMES, createCa, issueKeyAndCertificate, type KeyAndCert } from './pki.ts';

void describe('a TLS listener', () => {
  let l: Listener;
  let ca: string;
  let node: KeyAndCert;
  let foreign: KeyAndCert;
  const now = Date.now();

  before(async () => {
    const cluster = await createCa(now);
    const other = await createCa(now);
    ca = cluster.certPem;
    const server = await issueKeyAndCertificate(cluster, {
      role: 'server',
      commonName: 'server-1',
      names: ['127.0.0.1', 'localhost'],
      now,
      lifetimeMs: LIFETIMES.serverMs,
    });
    node = await issueKeyAndCertificate(cluster, {
      role: 'node',
      commonName: 'n1',
      now,
      lifetimeMs: 3_600_000,
    });
    foreign = await issueKeyAndCertificate(other, {
      role: 'node',
      commonName: 'n1',
      now,
      lifetimeMs: 3_600_000,
    });
    l = await listen(
      (req, res) => res.end(JSON.stringify({ peer: peerOf(req) ?? null, problem: peerProblem(req) ?? null })),
      { host: '127.0.0.1', port: 0, tls: { cert: `${server.certPem}${ca}`, key: server.keyPem, ca } },
    );
  });
  after(() => l?.close());

  const ask = async (client: TlsFetcher) => {
    try {
      return (await (await client.fetch(l.url)).json()) as { peer: unknown; problem: string | null };
    } finally {
      client.close();
    }
  };

  test('serves https; a client with a node certificate of the cluster is that node', async () => {
    assert.match(l.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const r = await ask(new TlsFetcher({ ca, cert: node.certPem, key: node.keyPem }));
    assert.deepEqual(r, { peer: { role: 'node', name: 'n1' }, problem: null });
  });

  test('a client without a certificate connects, and is nobody', async () => {
    assert.deepEqual(await ask(new TlsFetcher({ ca })), { peer: null, problem: 'no client certificate' });
  });

  test('a certificate of another CA counts as none, and the door can say why', async () => {
    const r = await ask(new TlsFetcher({ ca, cert: foreign.certPem, key: foreign.keyPem }));
    assert.equal(r.peer, null);
    assert.match(r.problem ?? '', /does not vouch/);
  });

  test('a client that does not trust the cluster CA refuses the server', async () => {
    await assert.rejects(fetch(l.url), (err: unknown) => isCertificateError(err));
    const stranger = new TlsFetcher({ ca: (await createCa(now)).certPem });
    await assert.rejects(stranger.fetch(l.url), (err: unknown) => isCertificateError(err));
    stranger.close();
  });

  test('a certificate or key that TLS cannot use is InvalidError', async () => {
    await assert.rejects(
      listen((_req, res) => res.end(), { host: '127.0.0.1', port: 0, tls: { cert: 'x', key: 'y', ca } }),
      (err: unknown) => err instanceof InvalidError && /^tls:/.test(err.message),
    );
  });
});
