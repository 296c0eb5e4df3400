import assert from 'node:assert/strict';
import { appendFile, writeFile } from 'node:fs/promises';
import { PassThrough } from 'node:stream';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../core/log.ts';
import { waitFor } from '../testing/wait.ts';
import { buildAllocDir, taskDirPaths } from './runner/alloc-dir.ts';
import { shipLog, tempDir } from './fixtures.ts';
import { createAgentHttpServer } from './http.ts';
import { streamLog, tailOffset } from './logs.ts';

void describe('agent HTTP endpoint', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let server: Server;
  let base: string;
  /** Allocations the fake agent knows, with whether they are finished. */
  const live = new Map<string, { finished: boolean; taskNames: string[] }>();

  before(async () => {
    dir = await tempDir();
    await buildAllocDir(dir.path, 'alloc-1', ['web', 'worker']);
    await buildAllocDir(dir.path, 'alloc-old', ['job']);
    await writeFile(taskDirPaths(dir.path, 'alloc-1', 'web').stdout, 'one\ntwo\nthree\nfour\n');
    await writeFile(taskDirPaths(dir.path, 'alloc-1', 'web').stderr, 'warning\n');
    await writeFile(taskDirPaths(dir.path, 'alloc-old', 'job').stdout, 'from an earlier agent\n');
    live.set('alloc-1', { finished: false, taskNames: ['web', 'worker'] });
    server = createAgentHttpServer({
      nodeId: 'node-1',
      allocsDir: dir.path,
      runner: (id) => live.get(id),
      counts: () => ({ allocations: live.size, running: 1 }),
      logger: silentLogger(),
      logPollMs: 20,
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await dir.cleanup();
  });

  const logs = (alloc: string, query: string): Promise<Response> =>
    fetch(`${base}/v1/agent/allocations/${alloc}/logs?${query}`);

  void test('serves a log as text/plain from the start', async () => {
    const res = await logs('alloc-1', 'task=web');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(res.headers.get('x-unum-log-offset'), '0');
    assert.equal(await res.text(), 'one\ntwo\nthree\nfour\n');
    assert.equal(await (await logs('alloc-1', 'task=web&stream=stderr')).text(), 'warning\n');
  });

  void test('tail gives the last N lines; offset starts at a byte', async () => {
    const tail = await logs('alloc-1', 'task=web&tail=2');
    assert.equal(tail.headers.get('x-unum-log-offset'), String('one\ntwo\n'.length));
    assert.equal(await tail.text(), 'three\nfour\n');
    assert.equal(await (await logs('alloc-1', 'task=web&tail=10')).text(), 'one\ntwo\nthree\nfour\n');
    assert.equal(await (await logs('alloc-1', 'task=web&tail=0')).text(), '');
    assert.equal(await (await logs('alloc-1', 'task=web&offset=8')).text(), 'three\nfour\n');
  });

  void test('logs of an allocation left on disk stay readable; the only task is the default', async () => {
    const res = await logs('alloc-old', '');
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'from an earlier agent\n');
  });

  void test('follow streams new lines as they are written, and ends once the allocation is finished', async () => {
    const file = taskDirPaths(dir.path, 'alloc-1', 'worker').stdout;
    await writeFile(file, 'started\n');
    const res = await logs('alloc-1', 'task=worker&follow=true');
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let received = '';
    const readUntil = async (text: string): Promise<void> => {
      while (!received.includes(text)) {
        const { value, done } = await reader.read();
        assert.equal(done, false, `stream ended before ${JSON.stringify(text)} arrived`);
        received += decoder.decode(value, { stream: true });
      }
    };
    await readUntil('started\n');
    await appendFile(file, 'working\n');
    await readUntil('working\n');
    await appendFile(file, 'last words\n');
    live.set('alloc-1', { finished: true, taskNames: ['web', 'worker'] });
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      received += decoder.decode(value, { stream: true });
    }
    assert.equal(received, 'started\nworking\nlast words\n');
    live.set('alloc-1', { finished: false, taskNames: ['web', 'worker'] });
  });

  void test('unknown allocation or task: 404 with a JSON error', async () => {
    for (const [alloc, query, message] of [
      ['nope', 'task=web', 'allocation nope not found on node node-1'],
      ['alloc-1', 'task=db', 'task "db" not found in allocation alloc-1 (tasks: web, worker)'],
      ['..%2F..%2Fetc', 'task=web', 'allocation ../../etc not found on node node-1'],
    ] as const) {
      const res = await logs(alloc, query);
      assert.equal(res.status, 404, `${alloc} ${query}`);
      assert.equal(res.headers.get('content-type'), 'application/json');
      assert.deepEqual(await res.json(), { error: { code: 'not_found', message } });
    }
  });

  void test('bad parameters: 400 naming the parameter', async () => {
    for (const [query, message] of [
      ['task=web&stream=stdin', 'stream: expected "stdout" or "stderr", got "stdin"'],
      ['task=web&tail=-1', 'tail: expected a whole number, 0 or more, got "-1"'],
      ['task=web&tail=1&offset=2', 'offset and tail: give one or the other, not both'],
      ['', 'task: required, the allocation has several tasks (web, worker)'],
    ] as const) {
      const res = await logs('alloc-1', query);
      assert.equal(res.status, 400, query);
      assert.deepEqual(await res.json(), { error: { code: 'invalid', message } });
    }
  });

  void test('rotated files are served oldest first; offsets and x-unum-log-offset are logical', async () => {
    await buildAllocDir(dir.path, 'alloc-rot', ['job']);
    live.set('alloc-rot', { finished: true, taskNames: ['job'] });
    const file = taskDirPaths(dir.path, 'alloc-rot', 'job').stdout;
    const limits = { maxBytes: 30, maxFiles: 3 }; // a file rotates at 10 bytes
    // Three runs of a shipper (three task processes), one write per line.
    await shipLog(file, limits, 'aaaa\n', 'bbbb\n');
    await shipLog(file, limits, 'cccc\n', 'dddd\n');
    await shipLog(file, limits, 'eeee\n');
    const all = await logs('alloc-rot', '');
    assert.equal(all.headers.get('x-unum-log-offset'), '0');
    assert.equal(await all.text(), 'aaaa\nbbbb\ncccc\ndddd\neeee\n');
    const tail = await logs('alloc-rot', 'tail=3');
    assert.equal(tail.headers.get('x-unum-log-offset'), '10');
    assert.equal(await tail.text(), 'cccc\ndddd\neeee\n');
    await shipLog(file, limits, 'ffff\n');
    // aaaa and bbbb were rotated away: offset 0 now starts at the oldest byte kept, and says so;
    // offset 20 is still "eeee".
    const from0 = await logs('alloc-rot', 'offset=0');
    assert.equal(from0.headers.get('x-unum-log-offset'), '10');
    assert.equal(await from0.text(), 'cccc\ndddd\neeee\nffff\n');
    assert.equal(await (await logs('alloc-rot', 'offset=20')).text(), 'eeee\nffff\n');
    assert.equal((await logs('alloc-rot', 'offset=999')).headers.get('x-unum-log-offset'), '30');
    live.delete('alloc-rot');
  });

  void test('GET /v1/agent/stats without a sampler: no allocations', async () => {
    const res = await fetch(`${base}/v1/agent/stats`);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { nodeId: string; allocations: object };
    assert.equal(body.nodeId, 'node-1');
    assert.deepEqual(body.allocations, {});
  });

  void test('GET /v1/agent/health', async () => {
    const res = await fetch(`${base}/v1/agent/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ok', nodeId: 'node-1', allocations: 1, running: 1 });
  });
});

void describe('tailOffset', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await dir.cleanup();
  });

  void test('finds the start of the last lines across read chunks, with or without a final newline', async () => {
    const file = `${dir.path}/big.log`;
    const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i}`);
    await writeFile(file, lines.join('\n'));
    const content = lines.join('\n');
    assert.equal(content.slice(await tailOffset(file, 3)), 'line 19997\nline 19998\nline 19999');
    assert.equal(content.slice(await tailOffset(file, 15_000)).split('\n').length, 15_000);
    await writeFile(file, 'a\nb\n');
    assert.equal(await tailOffset(file, 1), 2);
    assert.equal(await tailOffset(file, 5), 0);
    assert.equal(await tailOffset(`${dir.path}/missing.log`, 5), 0);
  });
});

void describe('streamLog', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    await dir.cleanup();
  });

  void test('a follow ends when the reader goes away, even while the allocation is live', async () => {
    const file = `${dir.path}/out.log`;
    await writeFile(file, 'hello\n');
    const out = new PassThrough();
    let received = '';
    out.on('data', (chunk: Buffer) => (received += chunk.toString()));
    const streaming = streamLog(out, { path: file, offset: 0, follow: true, isLive: () => true, pollMs: 20 });
    await waitFor(() => received === 'hello\n');
    out.destroy();
    await streaming;
    assert.equal(received, 'hello\n');
  });

  void test('a follow waits for a log file that does not exist yet', async () => {
    const file = `${dir.path}/later.log`;
    const out = new PassThrough();
    let received = '';
    out.on('data', (chunk: Buffer) => (received += chunk.toString()));
    let live = true;
    const streaming = streamLog(out, { path: file, offset: 0, follow: true, isLive: () => live, pollMs: 20 });
    await writeFile(file, 'finally\n');
    await waitFor(() => received === 'finally\n');
    live = false;
    await streaming;
  });
});
