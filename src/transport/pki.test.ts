import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, test } from 'node:test';
import { InvalidError, UnauthenticatedError } from '../core/errors.ts';
import {
  LIFETIMES,
  certificateHash,
  createCa,
  describeCertificate,
  issueKeyAndCertificate,
  keyMatchesCertificate,
  newKeyAndCsr,
  parseCaHash,
  readCsr,
  signCsr,
  subjectIdentity,
  verifyCertificate,
} from './pki.ts';

const NOW = Date.parse('2026-01-01T00:00:00Z');
const DAY = 86_400_000;

void describe('the cluster CA', () => {
  test('is a self-signed P-256 CA certificate that may sign only end-entity certificates', async () => {
    const ca = await createCa(NOW);
    const cert = new X509Certificate(ca.certPem);
    assert.equal(cert.ca, true);
    assert.ok(cert.checkIssued(cert) && cert.verify(cert.publicKey), 'self-signed');
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----/);
    assert.ok(keyMatchesCertificate(ca.keyPem, ca.certPem));
    assert.ok(Date.parse(cert.validTo) >= NOW + LIFETIMES.caMs - 1000);
  });

  test('its hash is the sha256 of its DER, and a --ca-hash is read in its usual spellings', async () => {
    const ca = await createCa(NOW);
    const hash = certificateHash(ca.certPem);
    assert.match(hash, /^sha256:[0-9a-f]{64}$/);
    assert.notEqual(hash, certificateHash((await createCa(NOW)).certPem), 'each CA has its own');
    const hex = hash.slice(7);
    assert.equal(parseCaHash(hex.toUpperCase()), hash);
    assert.equal(parseCaHash(` sha256:${hex} `), hash);
    assert.equal(parseCaHash(`sha256:${hex.slice(1)}`), undefined);
    assert.equal(parseCaHash('md5:abc'), undefined);
  });
});

void describe('node certificates', () => {
  test('a node asks for its id; the CA signs a node certificate naming it, valid a year', async () => {
    const ca = await createCa(NOW);
    const { keyPem, csrPem } = await newKeyAndCsr('3f9a1c2e-node');
    assert.equal((await readCsr(csrPem)).commonName, '3f9a1c2e-node');
    const certPem = await signCsr(ca, csrPem, { role: 'node', now: NOW, lifetimeMs: LIFETIMES.nodeMs });
    const info = describeCertificate(certPem);
    assert.equal(info.role, 'node');
    assert.equal(info.name, '3f9a1c2e-node');
    assert.deepEqual(info.names, ['3f9a1c2e-node']);
    assert.ok(info.notAfter >= NOW + 364 * DAY && info.notAfter <= NOW + 366 * DAY);
    assert.ok(keyMatchesCertificate(keyPem, certPem), 'the certificate is for the requester key');
    verifyCertificate(certPem, ca.certPem, NOW + DAY, 'node');
  });

  test('the CA, not the request, decides the certificate: role, subject and names', async () => {
    const ca = await createCa(NOW);
    const { csrPem } = await newKeyAndCsr('asked');
    const certPem = await signCsr(ca, csrPem, {
      role: 'server',
      commonName: 'server-1',
      names: ['10.0.0.1', 'unum.lan'],
      now: NOW,
      lifetimeMs: DAY,
    });
    const info = describeCertificate(certPem);
    assert.deepEqual([info.role, info.name], ['server', 'server-1']);
    assert.deepEqual(info.names.sort(), ['10.0.0.1', 'server-1', 'unum.lan']);
  });

  test('verification refuses another CA, an expired certificate, one not yet valid, the wrong role', async () => {
    const ca = await createCa(NOW);
    const other = await createCa(NOW);
    const { certPem } = await issueKeyAndCertificate(ca, {
      role: 'node',
      commonName: 'n1',
      now: NOW,
      lifetimeMs: 10 * DAY,
    });
    const refused = (fn: () => void, re: RegExp) =>
      assert.throws(fn, (err: unknown) => err instanceof UnauthenticatedError && re.test(err.message));
    refused(() => verifyCertificate(certPem, other.certPem, NOW), /not signed by the cluster CA/);
    refused(() => verifyCertificate(certPem, ca.certPem, NOW + 11 * DAY), /expired/);
    refused(() => verifyCertificate(certPem, ca.certPem, NOW - DAY), /not valid before/);
    refused(() => verifyCertificate(certPem, ca.certPem, NOW, 'server'), /node one, not a server's/);
    verifyCertificate(certPem, ca.certPem, NOW);
  });

  test('a request whose signature does not match its key, or that is not a request, is refused', async () => {
    const { csrPem } = await newKeyAndCsr('n1');
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    // Flip a byte of the signature (the end of the DER).
    der[der.length - 2] = (der[der.length - 2] ?? 0) ^ 0xff;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await assert.rejects(readCsr(tampered), (err: unknown) => err instanceof InvalidError);
    await assert.rejects(
      readCsr('hello'),
      (err: unknown) => err instanceof InvalidError && /PEM certificate request/.test(err.message),
    );
  });

  test('a certificate subject names its role only when it is one of the cluster', () => {
    assert.deepEqual(subjectIdentity({ CN: 'n1', O: 'unum', OU: 'node' }), { role: 'node', name: 'n1' });
    assert.deepEqual(subjectIdentity({ CN: 's', O: 'unum', OU: 'server' }), { role: 'server', name: 's' });
    assert.equal(subjectIdentity({ CN: 'n1', O: 'acme', OU: 'node' }), undefined);
    assert.equal(subjectIdentity({ CN: 'n1', O: 'unum', OU: ['node', 'server'] }), undefined);
    assert.equal(subjectIdentity({ CN: 'n1', O: 'unum' }), undefined);
    assert.equal(subjectIdentity(undefined), undefined);
  });
});
