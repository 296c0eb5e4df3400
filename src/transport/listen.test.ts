import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidError, UnavailableError } from '../core/errors.ts';
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

test('tls is refused until the multi-host release brings it', async () => {
  await assert.rejects(
    listen((_req, res) => res.end(), { host: '127.0.0.1', port: 0, tls: { cert: 'x', key: 'y' } }),
    (err: unknown) => err instanceof InvalidError && /multi-host release/.test(err.message),
  );
});

test('advertised host: a wildcard is loopback, IPv6 is bracketed', () => {
  assert.equal(advertisedHost('::'), '127.0.0.1');
  assert.equal(advertisedHost('::1'), '[::1]');
  assert.equal(advertisedHost('10.0.0.1'), '10.0.0.1');
});
