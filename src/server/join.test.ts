/**
 * A server with TLS, through its HTTP API: the cluster CA kept in the data dir, join tokens, a node
 * joining with one and then acting for itself by its certificate alone; wrong, expired and revoked
 * tokens refused without a trace in the cluster.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UnumClient } from '../api/client.ts';
import type { NodeRegistration } from '../api/types.ts';
import { systemClock, type Clock } from '../core/clock.ts';
import { ForbiddenError, NotFoundError, UnauthenticatedError } from '../core/errors.ts';
import { bootstrapped } from '../testing/acl.ts';
import { certificateHash, describeCertificate, newKeyAndCsr, verifyCertificate } from '../transport/pki.ts';
import { startServer, type RunningServer } from './index.ts';

const registration = (id: string, address: string): NodeRegistration => ({
  id,
  name: id,
  address,
  resources: { cpu: 1000, memory: 1024, disk: 1000 },
  reserved: { cpu: 0, memory: 0 },
  attributes: { os: 'linux' },
  drivers: { exec: { detected: true, healthy: true } },
  portRange: { min: 20000, max: 20100 },
});

const refused =
  (kind: typeof UnauthenticatedError | typeof ForbiddenError | typeof NotFoundError, re: RegExp) =>
  (err: unknown) =>
    err instanceof kind && re.test(err.message);

describe('a server with TLS', () => {
  let dir: string;
  let server: RunningServer;
  let admin: UnumClient;
  let ca: string;
  let adminToken = '';
  let offset = 0;
  const clock: Clock = { ...systemClock, now: () => Date.now() + offset };
  const start = () =>
    startServer({
      dataDir: dir,
      addr: '127.0.0.1:0',
      store: `sqlite:${join(dir, 'state.db')}`,
      clock,
      tls: {},
    });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'unum-join-'));
    server = await start();
    ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
    ({ client: admin, token: adminToken } = await bootstrapped(server.addr, ca));
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A node that joined with `token`: its id, and a client that presents its certificate. */
  const joinAs = async (nodeId: string, token: string) => {
    const { keyPem, csrPem } = await newKeyAndCsr(nodeId);
    const anonymous = new UnumClient({ addr: server.addr, ca, token: () => undefined });
    const res = await anonymous.join(token, csrPem).finally(() => anonymous.close());
    return {
      res,
      client: new UnumClient({ addr: server.addr, ca: res.ca, cert: res.certificate, key: keyPem }),
    };
  };
  const events = async (type: string) =>
    (await admin.events({ limit: 1000 })).events.filter((e) => e.type === type);

  test('serves https with a CA made at its first start, its key 0600; clients without the CA refuse it', async () => {
    assert.match(server.addr, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(server.pki?.created, true);
    assert.equal(server.pki?.caHash, certificateHash(ca));
    assert.equal(statSync(join(dir, 'server', 'ca-key.pem')).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'server', 'tls-key.pem')).mode & 0o777, 0o600);
    assert.ok(server.pki?.names.includes('127.0.0.1'));
    await assert.rejects(
      new UnumClient({ addr: server.addr, token: () => undefined }).status(),
      /certificate this client does not trust/,
    );
  });

  test('join tokens: made with an expiry by an operator, listed without secrets, revoked', async () => {
    const made = await admin.createJoinToken({ ttl: '1h', description: 'rack 1' });
    assert.match(made.secret, /^unum-join-[0-9a-f]{8}\./);
    assert.equal(made.caHash, server.pki?.caHash);
    assert.ok(Math.abs(made.token.expiresAt - (Date.now() + 3_600_000)) < 60_000);
    const listed = (await admin.joinTokens()).items.find((t) => t.id === made.token.id);
    assert.deepEqual(listed, made.token);
    assert.ok(
      !JSON.stringify(await admin.joinTokens()).includes(made.secret.split('.')[1]!),
      'no secret listed',
    );
    await assert.rejects(admin.createJoinToken({ ttl: '90d' }), /ttl: expected a duration from 1m to 720h/);
    await admin.revokeJoinToken(made.token.id);
    assert.equal(
      (await admin.joinTokens()).items.find((t) => t.id === made.token.id),
      undefined,
    );
    await assert.rejects(admin.revokeJoinToken(made.token.id), refused(NotFoundError, /no join token/));
    // Without a token, nothing; a token of no policy, 403.
    const anonymous = new UnumClient({ addr: server.addr, ca, token: () => undefined });
    await assert.rejects(anonymous.createJoinToken(), (e: unknown) => e instanceof UnauthenticatedError);
    const weak = await admin.createAclToken({ name: 'weak', policies: [] });
    const weakClient = new UnumClient({ addr: server.addr, ca, token: weak.secret });
    await assert.rejects(weakClient.createJoinToken(), (e: unknown) => e instanceof ForbiddenError);
    await assert.rejects(weakClient.joinTokens(), (e: unknown) => e instanceof ForbiddenError);
  });

  test('a node joins with a token and then acts by its certificate, for itself only', async () => {
    const { secret } = await admin.createJoinToken();
    const { res, client: node } = await joinAs('node-a', secret);
    assert.equal(res.nodeId, 'node-a');
    verifyCertificate(res.certificate, ca, Date.now(), 'node');
    assert.equal(describeCertificate(res.certificate).name, 'node-a');
    assert.equal(res.ca, ca);

    const reg = await node.registerNode(registration('node-a', 'https://127.0.0.1:9'));
    assert.equal(reg.credential, undefined, 'over TLS the certificate is the credential: no secret');
    await node.heartbeat('node-a');
    await assert.rejects(
      node.registerNode(registration('node-b', 'https://127.0.0.1:9')),
      refused(ForbiddenError, /node node-a may not register node node-b/),
    );
    await assert.rejects(node.heartbeat('node-b'), (e: unknown) => e instanceof ForbiddenError);
    // Its certificate grants nothing beyond the node routes: no jobs, no join tokens.
    await assert.rejects(node.listJobs(), (e: unknown) => e instanceof ForbiddenError);
    await assert.rejects(node.createJoinToken(), refused(ForbiddenError, /join tokens/));
    // An operator's token does not make one the node, nor does a node secret.
    await assert.rejects(admin.heartbeat('node-a'), refused(UnauthenticatedError, /that node's certificate/));
    const secretBearer = new UnumClient({ addr: server.addr, ca, token: 'unum-node-whatever' });
    await assert.rejects(
      secretBearer.heartbeat('node-a'),
      refused(UnauthenticatedError, /by their certificate/),
    );

    const joined = await events('node-joined');
    assert.equal(joined.length, 1);
    assert.equal(joined[0]?.nodeId, 'node-a');
    assert.match(joined[0]?.actor ?? '', /^join-token:/);
    node.close();
  });

  test('a wrong, an expired or a revoked token is refused, and nothing is registered', async () => {
    const before = await events('node-joined');
    const { secret, token } = await admin.createJoinToken({ ttl: '1h' });
    const [id] = secret.slice('unum-join-'.length).split('.');
    await assert.rejects(
      joinAs('intruder', `unum-join-${id}.${'x'.repeat(43)}`),
      refused(UnauthenticatedError, /not known/),
    );
    await assert.rejects(joinAs('intruder', 'hello'), refused(UnauthenticatedError, /not known/));
    offset = 2 * 3_600_000;
    try {
      await assert.rejects(joinAs('intruder', secret), refused(UnauthenticatedError, /expired/));
    } finally {
      offset = 0;
    }
    await admin.revokeJoinToken(token.id);
    await assert.rejects(joinAs('intruder', secret), refused(UnauthenticatedError, /not known/));

    assert.deepEqual(await events('node-joined'), before);
    assert.equal(
      (await admin.listNodes()).items.find((n) => n.id === 'intruder'),
      undefined,
    );
  });

  test('a joined node renews its own certificate; it may not ask for another id', async () => {
    const { secret } = await admin.createJoinToken();
    const { client: node } = await joinAs('node-r', secret);
    const own = await newKeyAndCsr('node-r');
    const renewed = await node.renewNodeCertificate('node-r', own.csrPem);
    assert.equal(describeCertificate(renewed.certificate).name, 'node-r');
    const other = await newKeyAndCsr('node-a');
    await assert.rejects(
      node.renewNodeCertificate('node-a', other.csrPem),
      (e: unknown) => e instanceof ForbiddenError,
    );
    await assert.rejects(node.renewNodeCertificate('node-r', other.csrPem), /names node node-a, not node-r/);
    node.close();
  });

  test('a restarted server keeps its CA: joined nodes stay trusted', async () => {
    const hash = server.pki?.caHash;
    await server.stop();
    server = await start();
    assert.equal(server.pki?.created, false);
    assert.equal(server.pki?.caHash, hash);
    admin.close();
    admin = new UnumClient({ addr: server.addr, ca, token: adminToken });
    assert.ok((await admin.status()).version);
  });
});

describe('a server without TLS (unum up)', () => {
  test('has no join tokens', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'unum-join-plain-'));
    const server = await startServer({ dataDir: dir, addr: '127.0.0.1:0', store: 'memory:' });
    try {
      const { client } = await bootstrapped(server.addr);
      await assert.rejects(client.createJoinToken(), refused(NotFoundError, /no cluster CA/));
      await assert.rejects(server.createJoinToken(), /need a server with TLS/);
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
