import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { waitFor } from '../testing/wait.ts';
import { UnavailableError } from '../core/errors.ts';
import { advertisedHost, listen } from './listen.ts';

test('a listener on a free port answers at its advertised url and closes', async () => {
  const l = await listen((_req, res) => res.end('ok'), { host: '0.0.0.0', port: 0 });
  assert.equal(l.url, `http://127.0.0.1:${l.port}`);
  assert.equal(await (await fetch(l.url)).text(), 'ok');
  await l.close();
  await l.close();
  await assert.rejects(fetch(l.url));
});

test('an address in use is UnavailableError, in the caller’s words', async () => {
  const first = await listen((_req, res) => res.end(), { host: '127.0.0.1', port: 0 });
  try {
    await assert.rejects(
      listen((_req, res) => res.end(), {
        host: '127.0.0.1',
        port: first.port,
        inUse: (h, p) => `pick another than ${h}:${p}`,
      }),
      (err: unknown) =>
        err instanceof UnavailableError && err.message === `pick another than 127.0.0.1:${first.port}`,
    );
  } finally {
    await first.close();
  }
});

test('advertised host: a wildcard is loopback, IPv6 is bracketed', () => {
  assert.equal(advertisedHost('::'), '127.0.0.1');
  assert.equal(advertisedHost('::1'), '[::1]');
  assert.equal(advertisedHost('10.0.0.1'), '10.0.0.1');
});

/** One request on a connection of its own from `localAddress`: its status and body. */
function get(port: number, localAddress = '127.0.0.1'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', localAddress, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A kept-alive connection from `localAddress` that has had one answer (so the server has admitted it). */
async function heldConnection(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port, localAddress });
  socket.setEncoding('utf8');
  socket.write('GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n');
  await new Promise<void>((resolve, reject) => {
    let got = '';
    socket.on('data', (c: string) => {
      got += c;
      if (got.includes('\r\n\r\nok')) resolve();
    });
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`closed after ${JSON.stringify(got)}`)));
  });
  return socket;
}

/** Resolves with what the server sent once it has closed the connection. */
function closedByServer(socket: Socket): Promise<string> {
  let got = '';
  socket.setEncoding('utf8');
  socket.on('data', (c: string) => (got += c));
  socket.on('error', () => {});
  return new Promise((resolve) => socket.once('close', () => resolve(got)));
}

test('one connection more than a source may open gets 503 while other sources are served; closing frees a place', async () => {
  const l = await listen((_req, res) => res.end('ok'), {
    host: '0.0.0.0',
    port: 0,
    limits: { maxConnectionsPerSource: 3 },
  });
  const held: Socket[] = [];
  try {
    for (let i = 0; i < 3; i++) held.push(await heldConnection(l.port));
    const refused = await get(l.port);
    assert.equal(refused.status, 503);
    const error = (JSON.parse(refused.body) as { error: { code: string; message: string } }).error;
    assert.equal(error.code, 'unavailable');
    assert.match(error.message, /127\.0\.0\.1 has 3 connections open.*limit per source/);
    // Another source is served all along, and the held connections still work.
    assert.deepEqual(await get(l.port, '127.0.0.2'), { status: 200, body: 'ok' });
    held.push(await heldConnection(l.port, '127.0.0.2'));
    held[0]!.destroy();
    await waitFor(async () => (await get(l.port)).status === 200, { description: 'a freed place' });
  } finally {
    for (const s of held) s.destroy();
    await l.close();
  }
});

test('one connection more than the listener may hold in total gets 503, whatever its source', async () => {
  const l = await listen((_req, res) => res.end('ok'), {
    host: '0.0.0.0',
    port: 0,
    limits: { maxConnections: 2 },
  });
  const held: Socket[] = [];
  try {
    held.push(await heldConnection(l.port, '127.0.0.1'), await heldConnection(l.port, '127.0.0.2'));
    const refused = await get(l.port, '127.0.0.3');
    assert.equal(refused.status, 503);
    assert.match(refused.body, /2 connections open, its limit/);
    for (const s of held.splice(0)) s.destroy();
    await waitFor(async () => (await get(l.port, '127.0.0.3')).status === 200, {
      description: 'freed places',
    });
  } finally {
    for (const s of held) s.destroy();
    await l.close();
  }
});

const shortTimeouts = { headersTimeoutMs: 100, requestTimeoutMs: 200, timeoutCheckMs: 20 };

test('a client that never finishes its headers, or its body, is disconnected', async () => {
  const l = await listen((req, res) => req.resume().on('end', () => res.end('ok')), {
    host: '127.0.0.1',
    port: 0,
    limits: shortTimeouts,
  });
  try {
    const loris = connect({ host: '127.0.0.1', port: l.port });
    const lorisClosed = closedByServer(loris);
    loris.write('GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nx-a: 1\r\n');
    const silent = connect({ host: '127.0.0.1', port: l.port });
    const silentClosed = closedByServer(silent);
    const slowBody = connect({ host: '127.0.0.1', port: l.port });
    const slowBodyClosed = closedByServer(slowBody);
    slowBody.write('POST / HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100\r\n\r\n{"a":');
    assert.match(await lorisClosed, /^HTTP\/1\.1 408/);
    assert.match(await slowBodyClosed, /^HTTP\/1\.1 408/);
    await silentClosed;
  } finally {
    await l.close();
  }
});

test('the request timeouts do not cut a long answer: a blocking query, a stream', async () => {
  const l = await listen(
    (req, res) => {
      if (req.url === '/stream') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        let n = 0;
        const timer = setInterval(() => {
          res.write(`${n}\n`);
          if (++n === 10) {
            clearInterval(timer);
            res.end();
          }
        }, 50);
        return;
      }
      setTimeout(() => res.end('late'), 600);
    },
    { host: '127.0.0.1', port: 0, limits: shortTimeouts },
  );
  try {
    // Each lasts well past the request timeout (200 ms) and several timeout checks (20 ms).
    assert.equal(await (await fetch(`${l.url}/wait`)).text(), 'late');
    assert.equal(await (await fetch(`${l.url}/stream`)).text(), '0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n');
  } finally {
    await l.close();
  }
});
