/** Hostile or malformed input through the server's real routes: each is a 400 that says what is wrong. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UnumClient } from '../../api/client.ts';
import { bootstrapped } from '../../testing/acl.ts';
import { startServer, type RunningServer } from '../index.ts';

interface WireError {
  error: { code: string; message: string; details?: { fields?: { path: string; message: string }[] } };
}

describe('server API: malformed input', () => {
  let dir: string;
  let server: RunningServer;
  let token = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'unum-input-'));
    server = await startServer({ dataDir: dir, addr: '127.0.0.1:0', store: 'memory:' });
    ({ token } = await bootstrapped(server.addr));
  });
  after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = async (path: string): Promise<{ status: number; body: WireError }> => {
    const res = await fetch(`${server.addr}${path}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, body: (await res.json()) as WireError };
  };

  test('malformed numbers in the query are 400 invalid, naming the parameter', async () => {
    for (const [path, name] of [
      ['/v1/events?index=abc', 'index'],
      ['/v1/events?limit=ten', 'limit'],
      ['/v1/events/stream?index=abc', 'index'],
      ['/v1/jobs/web/allocations?index=abc', 'index'],
      ['/v1/allocations?index=1&wait=soon', 'wait'],
    ] as const) {
      const { status, body } = await get(path);
      assert.equal(status, 400, path);
      assert.equal(body.error.code, 'invalid', path);
      assert.ok(body.error.message.startsWith(`${name}: `), `${path}: ${body.error.message}`);
    }
  });

  test('malformed percent-encoding in a path is 400 invalid', async () => {
    const { status, body } = await get('/v1/jobs/%E0%A4%A');
    assert.equal(status, 400);
    assert.equal(body.error.code, 'invalid');
  });

  test('a deeply nested job body is 400 invalid, not a stack overflow', async () => {
    const deep = `${'['.repeat(50_000)}${']'.repeat(50_000)}`;
    const res = await fetch(`${server.addr}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: `{"job":{"job":"web","meta":${deep},"groups":[]}}`,
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as WireError).error.code, 'invalid');
  });

  test('a dry-run plan with a catastrophic regexp constraint returns (RE2 matches in linear time)', async () => {
    await new UnumClient({ addr: server.addr, token }).registerNode({
      id: 'node-a',
      name: 'node-a',
      address: 'http://127.0.0.1:9',
      resources: { cpu: 4000, memory: 4096, disk: 10_000 },
      reserved: { cpu: 0, memory: 0 },
      attributes: { os: 'linux', hostname: 'node-a', label: `${'a'.repeat(50_000)}b` },
      drivers: { exec: { detected: true, healthy: true } },
      portRange: { min: 20000, max: 20100 },
    });
    const res = await fetch(`${server.addr}/v1/jobs/plan`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({
        job: {
          job: 'web',
          constraints: [{ attribute: 'label', operator: 'regexp', value: '^(a+)+$' }],
          groups: [{ name: 'web', tasks: [{ name: 'server', command: 'sleep' }] }],
        },
      }),
    });
    assert.equal(res.status, 200);
    const plan = (await res.json()) as { placements: unknown[]; failedGroups: Record<string, unknown> };
    assert.equal(plan.placements.length, 0);
    assert.ok(plan.failedGroups['web'], 'the group is said not to fit');
  });
});
