/**
 * An error thrown on the server reaches the client as the same class: every UnumError subclass is
 * thrown by a route of the real HTTP edge (src/server/http.ts) and read back through UnumClient,
 * which rebuilds it with errorFromWire. Class, `name`, `code`, message and details survive.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { UnumClient } from '../src/api/client.ts';
import * as errors from '../src/core/errors.ts';
import {
  CompactedError,
  ConflictError,
  ForbiddenError,
  InternalError,
  InvalidError,
  NotFoundError,
  NotLeaderError,
  UnauthenticatedError,
  UnavailableError,
  UnumError,
} from '../src/core/errors.ts';
import { silentLogger } from '../src/core/log.ts';
import { Router, allowAll } from '../src/transport/index.ts';

/** One instance of each class, as a server would throw it. */
const samples: UnumError[] = [
  new NotFoundError('job "web" not found'),
  new NotLeaderError('the leadership term that began at revision 12 has ended'),
  new ConflictError('job "web" changed since version 3', { details: { version: 4 } }),
  InvalidError.fromFields([{ path: 'groups[0].count', message: 'expected a positive integer' }]),
  new ForbiddenError('token may not write jobs in namespace "prod"'),
  new UnauthenticatedError('the token is not valid'),
  new UnavailableError('the store cannot be reached'),
  new CompactedError('revision 3 was compacted', 17),
  new InternalError('something broke'),
];

let server: Server;
let client: UnumClient;

before(async () => {
  const router = new Router(allowAll, silentLogger());
  samples.forEach((err, i) =>
    router.add({
      method: 'GET',
      path: `/v1/errors/${i}`,
      capability: 'operator:read',
      summary: `throws ${err.name}`,
      handler: () => {
        throw err;
      },
    }),
  );
  server = createServer(router.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  client = new UnumClient({ addr: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
});

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

test('the samples cover every error class that src/core/errors.ts exports', () => {
  const exported = Object.values(errors).filter(
    (v): v is typeof UnumError => typeof v === 'function' && v.prototype instanceof UnumError,
  );
  assert.deepEqual(samples.map((e) => e.constructor.name).sort(), exported.map((c) => c.name).sort());
});

for (const [i, sent] of samples.entries()) {
  void test(`${sent.name} crosses HTTP as ${sent.name}`, async () => {
    const got = await client.request(`GET`, `/v1/errors/${i}`).then(
      () => assert.fail('the request succeeded'),
      (err: unknown) => err,
    );
    assert.ok(got instanceof UnumError, `an UnumError, got ${String(got)}`);
    assert.equal(got.constructor, sent.constructor, 'the same class');
    assert.equal(got.name, sent.name);
    assert.equal(got.code, sent.code);
    assert.equal(got.message, sent.message);
    assert.deepEqual(got.details, sent.details);
  });
}

test('a CompactedError from the wire still says which revision is the oldest readable', () => {
  const err = errors.errorFromWire('compacted', 'revision 3 was compacted', { compactRevision: 17 });
  assert.ok(err instanceof CompactedError);
  assert.equal(err.compactRevision, 17);
});

test('an unknown code becomes an InternalError', () => {
  const err = errors.errorFromWire('no_such_code', 'from a newer server');
  assert.equal(err.constructor, InternalError);
  assert.equal(err.code, 'internal');
});
