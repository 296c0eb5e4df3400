import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { ForbiddenError, UnauthenticatedError } from '../core/errors.ts';
import { silentLogger } from '../core/log.ts';
import type { Authorizer } from './auth.ts';
import { hostName } from './browser.ts';
import { listen, type Listener } from './listen.ts';
import { Router } from './router.ts';

/** A raw request, so that Host, Origin and Content-Type are exactly what a browser would send. */
function send(
  port: number,
  o: { method?: string; path?: string; headers?: Record<string, string>; body?: string; hang?: boolean },
): Promise<{ status: number; body: { error?: { code: string; message: string } } }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: o.method ?? 'GET',
        path: o.path ?? '/v1/things',
        headers: o.headers,
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text || '{}') }));
      },
    );
    req.on('error', reject);
    if (o.body !== undefined) req.write(o.body);
    // A body that never ends: only a server that does not read it can answer.
    if (o.hang === true) req.flushHeaders();
    else req.end();
  });
}

void describe('browser guard', () => {
  let server: Listener;
  let writes = 0;
  const door: Authorizer = {
    authenticate(req) {
      if (req.headers.authorization !== 'Bearer ok') throw new UnauthenticatedError('a token is needed');
      return { name: 'tester', kind: 'token' };
    },
    authorize(_identity, capability) {
      if (capability === 'operator:read') throw new ForbiddenError('no');
    },
  };
  const auth = { authorization: 'Bearer ok' };

  before(async () => {
    const router = new Router(door, silentLogger(), { browser: { allowedHosts: ['unum.internal'] } });
    router.add(
      {
        method: 'GET',
        path: '/v1/things',
        capability: 'job:read',
        summary: 'read',
        handler: () => ({ ok: true }),
      },
      {
        method: 'POST',
        path: '/v1/things',
        capability: 'job:write',
        summary: 'write',
        handler: () => {
          writes++;
          return { ok: true };
        },
      },
      {
        method: 'DELETE',
        path: '/v1/things',
        capability: 'job:write',
        summary: 'delete',
        handler: () => {
          writes++;
          return { ok: true };
        },
      },
    );
    server = await listen(router.handle, { host: '127.0.0.1', port: 0 });
  });
  after(() => server.close());

  test('only IP addresses, localhost and allowed names are served (DNS rebinding)', async () => {
    const at = (host: string) => send(server.port, { headers: { ...auth, host } });
    const rebound = await at(`attacker.example:${server.port}`);
    assert.equal(rebound.status, 403);
    assert.equal(rebound.body.error?.code, 'forbidden');
    assert.match(rebound.body.error?.message ?? '', /attacker\.example.*--allow-host/);
    for (const host of [`127.0.0.1:${server.port}`, 'localhost', '[::1]:8686', 'UNUM.internal.', '10.1.2.3'])
      assert.equal((await at(host)).status, 200, host);
  });

  test('a cross-site write is refused; the CLI, curl and the same origin may write', async () => {
    const before = writes;
    const json = { ...auth, 'content-type': 'application/json' };
    const body = '{"a":1}';
    const foreign = await send(server.port, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'text/plain', origin: 'https://evil.example' },
      body,
    });
    assert.equal(foreign.status, 403);
    assert.match(foreign.body.error?.message ?? '', /evil\.example/);
    const foreignJson = await send(server.port, {
      method: 'POST',
      headers: { ...json, origin: 'https://evil.example' },
      body,
    });
    assert.equal(foreignJson.status, 403, 'a foreign origin, even with JSON');
    const plain = await send(server.port, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'text/plain' },
      body,
    });
    assert.equal(plain.status, 403, 'a text/plain body (what a form or a simple fetch sends)');
    assert.match(plain.body.error?.message ?? '', /application\/json/);
    const del = await send(server.port, {
      method: 'DELETE',
      headers: { ...auth, origin: 'http://evil.example' },
    });
    assert.equal(del.status, 403);
    assert.equal(writes, before, 'no refused request reached its handler');

    assert.equal((await send(server.port, { method: 'POST', headers: json, body })).status, 200, 'no origin');
    const same = await send(server.port, {
      method: 'POST',
      headers: { ...json, origin: `http://127.0.0.1:${server.port}` },
      body,
    });
    assert.equal(same.status, 200, 'the same origin');
    assert.equal(writes, before + 2);
    const read = await send(server.port, { headers: { ...auth, origin: 'https://evil.example' } });
    assert.equal(read.status, 200, 'a read is answered (no CORS header lets the page see it)');
  });

  test('an unauthenticated caller is refused before its body is read', async () => {
    const r = await send(server.port, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': '100000000' },
      hang: true,
    });
    assert.equal(r.status, 401);
  });

  test('host names are compared without port, brackets, case or a final dot', () => {
    assert.equal(hostName('Example.COM:8686'), 'example.com');
    assert.equal(hostName('[::1]:8686'), '::1');
    assert.equal(hostName('unum.internal.'), 'unum.internal');
    assert.equal(hostName('127.0.0.1'), '127.0.0.1');
  });
});
