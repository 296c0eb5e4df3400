import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { ForbiddenError, NotFoundError, UnauthenticatedError } from '../core/errors.ts';
import { silentLogger } from '../core/log.ts';
import type { Authorizer, Capability } from './auth.ts';
import { listen, type Listener } from './listen.ts';
import { Router, STREAMED } from './router.ts';

void describe('Router', () => {
  let server: Listener;
  let lenient: Listener;
  /** What the door saw, in order. */
  const seen: string[] = [];
  let handled = 0;
  const door: Authorizer = {
    authenticate(req) {
      const token = req.headers['authorization'];
      seen.push(`authenticate ${token ?? '-'}`);
      if (token === 'Bearer wrong') throw new UnauthenticatedError('bad token');
      return { name: token ?? 'anonymous', kind: token ? 'token' : 'anonymous' };
    },
    authorize(identity, capability: Capability, namespace) {
      seen.push(`authorize ${identity.name} ${capability} ${namespace}`);
      if (capability === 'job:write' && identity.kind === 'anonymous')
        throw new ForbiddenError('job:write needs a token');
    },
  };

  before(async () => {
    const router = new Router(door, silentLogger());
    router.add(
      {
        method: 'GET',
        path: '/v1/jobs/:id',
        capability: 'job:read',
        summary: 'a job',
        handler: ({ params, namespace }) => {
          handled += 1;
          if (params['id'] === 'missing') throw new NotFoundError('job "missing" not found');
          return { id: params['id'], namespace };
        },
      },
      {
        method: 'POST',
        path: '/v1/jobs',
        capability: 'job:write',
        summary: 'submit',
        handler: ({ body }) => ({ got: body }),
      },
      {
        method: 'GET',
        path: '/v1/boom',
        capability: 'job:read',
        summary: 'a bug',
        handler: () => {
          throw new Error('secret path /root/x');
        },
      },
      {
        method: 'GET',
        path: '/v1/text',
        capability: 'job:read',
        summary: 'a stream',
        handler: ({ res }) => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('hello');
          return STREAMED;
        },
      },
    );
    server = await listen(router.handle, { host: '127.0.0.1', port: 0 });
    const loose = new Router(door, silentLogger(), {
      headForGet: true,
      trimTrailingSlash: true,
      notFound: (method, path) => `nothing at ${method} ${path}`,
    });
    loose.add({
      method: 'GET',
      path: '/v1/x',
      capability: 'node:read',
      summary: 'x',
      handler: () => ({ ok: true }),
    });
    lenient = await listen(loose.handle, { host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    await server.close();
    await lenient.close();
  });

  void test('a route gets its decoded params and namespace, and answers JSON', async () => {
    const res = await fetch(`${server.url}/v1/jobs/a%20b?namespace=team`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/json');
    assert.deepEqual(await res.json(), { id: 'a b', namespace: 'team' });
  });

  void test('every request passes the door before its handler: authenticate, then authorize', async () => {
    seen.length = 0;
    await (await fetch(`${server.url}/v1/jobs/x`, { headers: { authorization: 'Bearer t' } })).json();
    assert.deepEqual(seen, ['authenticate Bearer t', 'authorize Bearer t job:read default']);
  });

  void test('a refused caller gets the error of its class and the handler never runs', async () => {
    const before = handled;
    const unauth = await fetch(`${server.url}/v1/jobs/x`, { headers: { authorization: 'Bearer wrong' } });
    assert.equal(unauth.status, 401);
    assert.deepEqual(await unauth.json(), { error: { code: 'unauthenticated', message: 'bad token' } });
    const forbidden = await fetch(`${server.url}/v1/jobs`, { method: 'POST', body: '{}' });
    assert.equal(forbidden.status, 403);
    assert.equal(((await forbidden.json()) as { error: { code: string } }).error.code, 'forbidden');
    assert.equal(handled, before);
  });

  void test('errors carry their code and the status of the one table', async () => {
    const res = await fetch(`${server.url}/v1/jobs/missing`);
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), { error: { code: 'not_found', message: 'job "missing" not found' } });
  });

  void test('an unknown path is not_found; a known path with another method is 405 invalid', async () => {
    const none = await fetch(`${server.url}/v1/nope`);
    assert.equal(none.status, 404);
    assert.match(((await none.json()) as { error: { message: string } }).error.message, /GET \/v1\/nope/);
    const wrong = await fetch(`${server.url}/v1/jobs/x`, { method: 'DELETE' });
    assert.equal(wrong.status, 405);
    assert.deepEqual(await wrong.json(), {
      error: { code: 'invalid', message: 'DELETE is not allowed on /v1/jobs/x' },
    });
  });

  void test('a body that is not JSON is invalid; a JSON body reaches the handler', async () => {
    const headers = { authorization: 'Bearer t', 'content-type': 'application/json' };
    const bad = await fetch(`${server.url}/v1/jobs`, { method: 'POST', body: '{nope', headers });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /not valid JSON/);
    const good = await fetch(`${server.url}/v1/jobs`, { method: 'POST', body: '{"a":1}', headers });
    assert.deepEqual(await good.json(), { got: { a: 1 } });
  });

  void test('hostile input is 400 invalid, not 500: deep nesting, bad percent-encoding, a bad target', async () => {
    const headers = { authorization: 'Bearer t', 'content-type': 'application/json' };
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const nested = await fetch(`${server.url}/v1/jobs`, { method: 'POST', body: deep, headers });
    assert.equal(nested.status, 400);
    assert.deepEqual(await nested.json(), {
      error: { code: 'invalid', message: 'request body nested more than 64 deep' },
    });
    const ok = `{"a":${'['.repeat(63)}"[[[{{{"${']'.repeat(63)}}`;
    assert.equal((await fetch(`${server.url}/v1/jobs`, { method: 'POST', body: ok, headers })).status, 200);
    for (const path of ['/v1/jobs/%zz', '/v1/jobs/%E0%A4%A', '/v1/jobs/%']) {
      const res = await fetch(`${server.url}${path}`);
      assert.equal(res.status, 400, path);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      assert.equal(error.code, 'invalid');
      assert.match(error.message, /^id: malformed percent-encoding/);
    }
    const raw = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${server.url}/`, { path: '//' }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(raw.status, 400);
    assert.match(raw.body, /"code":"invalid"/);
  });

  void test('a thrown plain Error is internal, without its message', async () => {
    const res = await fetch(`${server.url}/v1/boom`);
    assert.equal(res.status, 500);
    assert.deepEqual(await res.json(), { error: { code: 'internal', message: 'internal error' } });
  });

  void test('a handler may write the response itself', async () => {
    const res = await fetch(`${server.url}/v1/text`);
    assert.equal(await res.text(), 'hello');
  });

  void test('options: HEAD served by GET, trailing slash trimmed, own 404 wording', async () => {
    assert.equal((await fetch(`${server.url}/v1/jobs/x`, { method: 'HEAD' })).status, 405);
    const head = await fetch(`${lenient.url}/v1/x`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    assert.deepEqual(await (await fetch(`${lenient.url}/v1/x/`)).json(), { ok: true });
    assert.equal((await fetch(`${server.url}/v1/text/`)).status, 404);
    const none = await fetch(`${lenient.url}/v1/y`);
    assert.equal(
      ((await none.json()) as { error: { message: string } }).error.message,
      'nothing at GET /v1/y',
    );
  });
});
