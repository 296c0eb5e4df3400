import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../core/log.ts';
import { waitFor } from '../testing/wait.ts';
import { isAlive, tempDir, testAlloc } from './fixtures.ts';
import { AgentStateStore, STATE_VERSION, type PersistedAlloc } from './state.ts';

function snapshot(id: string, seq: number, padding = ''): PersistedAlloc {
  const alloc = { ...testAlloc({ tasks: [{ name: 't', command: 'true' }] }), id };
  return {
    version: STATE_VERSION,
    alloc: { ...alloc, clientDescription: `${seq}:${padding}` },
    clientStatus: 'running',
    clientDescription: String(seq),
    tasks: {
      t: {
        state: { state: 'running', failed: false, restarts: 0, pid: 1000 + seq, events: [] },
        started: true,
        restartHistory: [],
      },
    },
    savedAt: seq,
  };
}

void describe('AgentStateStore', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  before(async () => {
    dir = await tempDir('unum-state-');
  });
  after(async () => {
    await dir.cleanup();
  });

  void test('keeps the latest snapshot of each allocation, and forgets removed ones', async () => {
    const store = new AgentStateStore(join(dir.path, 'a'), silentLogger());
    for (let i = 1; i <= 50; i++) store.save(snapshot('alloc-1', i));
    store.save(snapshot('alloc-2', 7));
    await store.flush();
    const again = new AgentStateStore(join(dir.path, 'a'), silentLogger());
    const loaded = await again.load();
    assert.deepEqual(
      loaded.map((p) => [p.alloc.id, p.clientDescription]),
      [
        ['alloc-1', '50'],
        ['alloc-2', '7'],
      ],
    );
    await again.remove('alloc-1');
    assert.deepEqual(
      (await new AgentStateStore(join(dir.path, 'a'), silentLogger()).load()).map((p) => p.alloc.id),
      ['alloc-2'],
    );
  });

  void test('a file that does not parse is skipped, not fatal; stray temporary files are removed', async () => {
    const path = join(dir.path, 'b');
    const store = new AgentStateStore(path, silentLogger());
    store.save(snapshot('good', 1));
    await store.flush();
    await writeFile(join(path, 'torn.json'), '{"version":1,"alloc":{"id":"to');
    await writeFile(join(path, 'good.json.123.4.tmp'), '{"half');
    const loaded = await new AgentStateStore(path, silentLogger()).load();
    assert.deepEqual(
      loaded.map((p) => p.alloc.id),
      ['good'],
    );
    assert.deepEqual((await readdir(path)).sort(), ['good.json', 'torn.json']);
  });

  void test('a writer killed with SIGKILL in the middle of a write leaves the last whole file', async () => {
    const path = join(dir.path, 'c');
    // A child process rewrites one allocation's state as fast as it can, each version a few MiB so
    // that a write takes a while; it is killed as soon as a write is seen in progress.
    const stateUrl = new URL('./state.ts', import.meta.url).href;
    const fixturesUrl = new URL('./fixtures.ts', import.meta.url).href;
    const logUrl = new URL('../core/log.ts', import.meta.url).href;
    const code = `
      import { AgentStateStore, STATE_VERSION } from ${JSON.stringify(stateUrl)};
      import { testAlloc } from ${JSON.stringify(fixturesUrl)};
      import { silentLogger } from ${JSON.stringify(logUrl)};
      const store = new AgentStateStore(${JSON.stringify(path)}, silentLogger());
      const alloc = { ...testAlloc({ tasks: [{ name: 't', command: 'true' }] }), id: 'victim' };
      for (let seq = 1; ; seq++) {
        const padding = String(seq % 10).repeat(4 * 1024 * 1024);
        store.save({ version: STATE_VERSION, alloc: { ...alloc, clientDescription: padding },
          clientStatus: 'running', clientDescription: String(seq), tasks: {}, savedAt: seq });
        await store.flush();
      }
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      // Two whole versions on disk, then a third being written.
      await waitFor(
        async () => {
          const text = await readFile(join(path, 'victim.json'), 'utf8').catch(() => '');
          return text !== '' && Number((JSON.parse(text) as PersistedAlloc).clientDescription) >= 2;
        },
        { description: `two versions written (child stderr: ${stderr})`, intervalMs: 1 },
      );
      await waitFor(async () => (await readdir(path)).some((n) => n.endsWith('.tmp')), {
        description: 'a write in progress',
        intervalMs: 0,
      });
      child.kill('SIGKILL');
      await exited;
      assert.equal(isAlive(child.pid!), false);

      const loaded = await new AgentStateStore(path, silentLogger()).load();
      assert.equal(loaded.length, 1, 'the last whole version is there and parses');
      const p = loaded[0]!;
      const seq = Number(p.clientDescription);
      assert.ok(seq >= 2);
      assert.equal(p.alloc.clientDescription, String(seq % 10).repeat(4 * 1024 * 1024), 'not torn');
      assert.ok(!(await readdir(path)).some((n) => n.endsWith('.tmp')), 'the torn temporary file is gone');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
