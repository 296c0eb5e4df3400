import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../core/log.ts';
import { TaskApiSocket } from './task-api.ts';

/** A request through a Unix socket: status and body. */
function call(
  socketPath: string,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, path, method: opts.method ?? 'GET', headers: opts.headers ?? {} },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('the task API socket', () => {
  let dir: string;
  let upstream: Server;
  let base: string;
  let seen: { url: string; headers: IncomingHttpHeaders; body: string }[] = [];
  let hold: (() => void)[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'unum-taskapi-'));
    upstream = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (c: string) => (body += c));
      req.on('end', () => {
        seen.push({ url: req.url ?? '', headers: req.headers, body });
        const answer = () => {
          res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': 'x=1' });
          res.end(JSON.stringify({ url: req.url }));
        };
        if (req.url === '/v1/slow') hold.push(answer);
        else answer();
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
  });
  after(() => {
    upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("relays /v1/ with the task's own token and nothing else of its headers", async () => {
    seen = [];
    const path = join(dir, 'a.sock');
    // The first server is down: the next one is tried.
    const sock = await TaskApiSocket.listen(path, () => ['http://127.0.0.1:1', base], silentLogger(), dir);
    try {
      assert.equal(statSync(path).mode & 0o777, 0o666);
      const r = await call(path, '/v1/identity/self', {
        headers: {
          authorization: 'Bearer t0k',
          cookie: 'session=1',
          origin: 'http://evil.example',
          'x-forwarded-for': '1.2.3.4',
        },
      });
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.body), { url: '/v1/identity/self' });
      const h = seen[0]!.headers;
      assert.equal(h.authorization, 'Bearer t0k');
      assert.equal(h.cookie, undefined);
      assert.equal(h.origin, undefined);
      assert.equal(h['x-forwarded-for'], undefined);

      const post = await call(path, '/v1/kv/x', {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: '{"a":1}',
      });
      assert.equal(post.status, 200);
      assert.equal(seen[1]!.body, '{"a":1}');

      assert.equal((await call(path, '/ui/')).status, 404);
      assert.equal(seen.length, 2, 'nothing outside /v1/ reaches the server');
    } finally {
      await sock.close();
    }
  });

  it('bounds what one task can ask: body size and requests at once', async () => {
    const path = join(dir, 'b.sock');
    const sock = await TaskApiSocket.listen(path, () => [base], silentLogger(), dir, {
      concurrent: 2,
      maxBody: 1024,
      timeoutMs: 60_000,
    });
    try {
      const big = await call(path, '/v1/x', { method: 'POST', body: 'x'.repeat(4096) });
      assert.equal(big.status, 413);
      hold = [];
      const slow = [call(path, '/v1/slow'), call(path, '/v1/slow')];
      while (hold.length < 2) await new Promise((r) => setTimeout(r, 10));
      const third = await call(path, '/v1/slow');
      assert.equal(third.status, 503);
      assert.match(third.body, /at most 2 requests at once/);
      for (const h of hold) h();
      for (const r of await Promise.all(slow)) assert.equal(r.status, 200);
    } finally {
      await sock.close();
    }
  });

  it('is bound under a short name and renamed when its path is too long for a socket address', async () => {
    const deep = join(dir, 'x'.repeat(60), 'y'.repeat(60));
    mkdirSync(deep, { recursive: true });
    const path = join(deep, 'api.sock');
    const sock = await TaskApiSocket.listen(path, () => [base], silentLogger(), join(dir, 's'));
    try {
      assert.ok(Buffer.byteLength(path) > 108);
      // A client reaches it through a shorter name for the same file (a relative path, a link).
      const link = join(dir, 'l.sock');
      symlinkSync(path, link);
      assert.equal((await call(link, '/v1/ok')).status, 200);
    } finally {
      await sock.close();
    }
  });

  it('says so when no server can be reached', async () => {
    const path = join(dir, 'c.sock');
    const sock = await TaskApiSocket.listen(path, () => ['http://127.0.0.1:1'], silentLogger(), dir);
    try {
      const r = await call(path, '/v1/identity/self');
      assert.equal(r.status, 503);
      assert.match(r.body, /no server reachable/);
    } finally {
      await sock.close();
    }
  });
});
