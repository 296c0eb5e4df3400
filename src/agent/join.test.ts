/**
 * The agent's side of joining, against a real TLS server in this process: the CA pinned by hash
 * before the token is sent, the certificate kept in the data dir (key 0600), refusals that keep
 * nothing, renewal with the current certificate.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { UnumClient } from '../api/client.ts';
import { UnauthenticatedError } from '../core/errors.ts';
import { startServer, type RunningServer } from '../server/index.ts';
import { bootstrapped } from '../testing/acl.ts';
import { describeCertificate } from '../transport/pki.ts';
import { joinCluster, loadNodeTls, needsRenewal, renewNodeCertificate, type NodeTls } from './join.ts';

describe('joining, from the agent', () => {
  let dir: string;
  let server: RunningServer;
  let admin: UnumClient;
  let caHash: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'unum-agent-join-'));
    server = await startServer({
      dataDir: join(dir, 'server'),
      addr: '127.0.0.1:0',
      store: 'memory:',
      tls: {},
    });
    ({ client: admin } = await bootstrapped(
      server.addr,
      readFileSync(join(dir, 'server', 'ca.pem'), 'utf8'),
    ));
    caHash = server.pki!.caHash;
  });
  after(async () => {
    admin?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const agentDir = (name: string) => join(dir, name);

  test('joins: the node certificate, its key (0600) and the CA are kept; loading them again gives the same', async () => {
    const { secret } = await admin.createJoinToken();
    const got = await joinCluster(agentDir('a'), 'node-a', { server: server.addr, token: secret, caHash });
    assert.equal(describeCertificate(got.cert).name, 'node-a');
    assert.equal(got.caHash, caHash);
    assert.equal(statSync(join(agentDir('a'), 'agent', 'tls', 'node-key.pem')).mode & 0o777, 0o600);
    assert.equal(statSync(join(agentDir('a'), 'agent', 'tls')).mode & 0o777, 0o700);
    assert.ok(existsSync(join(agentDir('a'), 'ca.pem')), 'the CA for the CLI on this machine');
    assert.deepEqual(await loadNodeTls(agentDir('a'), 'node-a'), got);
    await assert.rejects(loadNodeTls(agentDir('a'), 'node-b'), /not a node certificate of node node-b/);
  });

  test('a wrong CA hash is refused before the token is sent; a wrong token is refused; nothing is kept', async () => {
    const { secret, token } = await admin.createJoinToken();
    await assert.rejects(
      joinCluster(agentDir('b'), 'node-b', {
        server: server.addr,
        token: secret,
        caHash: `sha256:${'1'.repeat(64)}`,
      }),
      (err: unknown) =>
        err instanceof UnauthenticatedError && /presented no CA certificate with hash/.test(err.message),
    );
    assert.equal(
      (await admin.joinTokens()).items.find((t) => t.id === token.id)?.joins,
      0,
      'the token was not used',
    );
    await assert.rejects(
      joinCluster(agentDir('b'), 'node-b', { server: server.addr, token: `${secret}x`, caHash }),
      (err: unknown) => err instanceof UnauthenticatedError,
    );
    await assert.rejects(
      joinCluster(agentDir('b'), 'node-b', {
        server: server.addr.replace('https', 'http'),
        token: secret,
        caHash,
      }),
      /is not https:/,
    );
    assert.equal(await loadNodeTls(agentDir('b'), 'node-b'), undefined);
  });

  test('renews with its current certificate: a new key and certificate, the same node', async () => {
    const { secret } = await admin.createJoinToken();
    const first = await joinCluster(agentDir('c'), 'node-c', { server: server.addr, token: secret, caHash });
    const renewed = await renewNodeCertificate(agentDir('c'), 'node-c', server.addr, first);
    assert.notEqual(renewed.key, first.key);
    assert.notEqual(describeCertificate(renewed.cert).serial, describeCertificate(first.cert).serial);
    assert.equal(describeCertificate(renewed.cert).name, 'node-c');
    assert.deepEqual(await loadNodeTls(agentDir('c'), 'node-c'), renewed);
  });

  test('a certificate is due for renewal past two thirds of its life', () => {
    const tls = { notBefore: 0, expiresAt: 300 } as NodeTls;
    assert.equal(needsRenewal(tls, 199), false);
    assert.equal(needsRenewal(tls, 200), true);
    assert.equal(needsRenewal(tls, 400), true);
  });
});
