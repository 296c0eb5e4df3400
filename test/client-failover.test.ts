/**
 * A client given several server addresses (UNUM_ADDR=a,b,c): a call that can not reach one server
 * goes to the next when that is safe — reads, idempotent calls, job submissions (each carries an
 * idempotency key), and any call whose connection was refused — and a write that may have reached a
 * server that then went silent is not sent again: its error says so. Real HTTP servers on loopback.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { UnumClient } from '../src/api/client.ts';
import { UnavailableError } from '../src/core/errors.ts';
import { freePort } from '../src/testing/net.ts';

describe('a client with several servers', () => {
  const servers: Server[] = [];
  const seen: { server: string; method: string; path: string; key?: string }[] = [];
  let live = '';
  let silent = '';
  let refused = '';

  const serve = async (name: string, answer: boolean): Promise<string> => {
    const s = createServer((req, res) => {
      seen.push({
        server: name,
        method: req.method ?? '',
        path: req.url ?? '',
        ...(typeof req.headers['idempotency-key'] === 'string'
          ? { key: req.headers['idempotency-key'] }
          : {}),
      });
      req.resume();
      if (!answer) return; // takes the request and never answers
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ job: { id: 'j', version: 0 }, changed: true, items: [], index: 1 }));
    });
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  };

  before(async () => {
    live = await serve('live', true);
    silent = await serve('silent', false);
    refused = `http://127.0.0.1:${await freePort()}`;
  });
  after(() => {
    for (const s of servers) s.closeAllConnections();
    for (const s of servers) s.close();
  });

  test('a refused connection: every call moves to the next server, which it then keeps', async () => {
    const c = new UnumClient({ addr: `${refused},${live}`, token: 't' });
    seen.length = 0;
    await c.listJobs();
    assert.equal(c.addr, live);
    await c.request('POST', '/v1/acl/bootstrap');
    assert.deepEqual(
      seen.map((s) => s.server),
      ['live', 'live'],
    );
  });

  test('a server that takes a submission and goes silent: the same submission, same key, goes to the next', async () => {
    const c = new UnumClient({ addr: `${silent},${live}`, token: 't', timeoutMs: 500 });
    seen.length = 0;
    await c.submitJob({ job: 'j', groups: [] });
    assert.deepEqual(
      seen.map((s) => [s.server, s.method]),
      [
        ['silent', 'POST'],
        ['live', 'POST'],
      ],
    );
    assert.ok(seen[0]!.key && seen[0]!.key === seen[1]!.key, 'one idempotency key for both attempts');
  });

  test('a write without a key that may have landed is not sent again, and the error says so', async () => {
    const c = new UnumClient({ addr: `${silent},${live}`, token: 't', timeoutMs: 500 });
    seen.length = 0;
    await assert.rejects(c.request('POST', '/v1/acl/tokens', { body: {} }), (err: unknown) => {
      assert.ok(err instanceof UnavailableError);
      assert.match(err.message, /may or may not have been done/);
      return true;
    });
    assert.deepEqual(
      seen.map((s) => s.server),
      ['silent'],
    );
  });

  test('one address: as before, no retry', async () => {
    const c = new UnumClient({ addr: refused, token: 't' });
    await assert.rejects(c.listJobs(), /cannot reach the unum server/);
    assert.deepEqual(c.addrs, [refused]);
  });
});
