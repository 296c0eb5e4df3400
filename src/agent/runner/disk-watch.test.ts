/** The allocation's disk limit (disk-watch.ts): measured while it runs, and enforced by failing it. */
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { after, afterEach, before, describe, test } from 'node:test';
import type { AllocStatusUpdate } from '../../api/types.ts';
import { silentLogger } from '../../core/log.ts';
import { waitFor } from '../../testing/wait.ts';
import { drivers } from '../drivers/index.ts';
import { noIsolation } from '../drivers/exec/isolation.ts';
import { tempDir, testAlloc, type TestAllocOptions } from '../fixtures.ts';
import { allocDirPaths, taskDirPaths } from './alloc-dir.ts';
import { AllocRunner } from './alloc-runner.ts';
import { exceeded, formatSize, nextDelay } from './disk-watch.ts';

const MiB = 1024 * 1024;

void describe('disk limit wording and pacing', () => {
  void test('says what was used of what, in the units people read', () => {
    assert.equal(
      exceeded({ bytes: 1.2 * 1024 * MiB, entries: 3 }, 1024 * MiB, 100),
      'disk limit exceeded: used 1.2 GiB of 1 GiB (ephemeral.sizeMiB)',
    );
    assert.equal(
      exceeded({ bytes: 20 * MiB + 12 * 1024, entries: 3 }, 20 * MiB, 100),
      'disk limit exceeded: used 20 MiB + 12 KiB of 20 MiB (ephemeral.sizeMiB)',
    );
    assert.equal(
      exceeded({ bytes: 20 * MiB, entries: 3 }, 20 * MiB, 100),
      undefined,
      'at the limit is within it',
    );
    assert.equal(
      exceeded({ bytes: 5 * 1024 * MiB, entries: 3 }, undefined, 100),
      undefined,
      'no limit: measured only',
    );
    assert.equal(
      exceeded({ bytes: 0, entries: 100, truncated: 'entries' }, 20 * MiB, 100),
      'disk limit exceeded: more than 100 files and directories (the most the agent counts in one allocation)',
    );
    assert.match(
      exceeded({ bytes: 0, entries: 9, truncated: 'path-length' }, MiB, 100) ?? '',
      /too long to measure/,
    );
    assert.equal(formatSize(512), '512 bytes');
    assert.equal(formatSize(24.5 * MiB), '24.5 MiB');
    assert.equal(formatSize(300 * MiB), '300 MiB');
  });

  void test('the next measurement comes sooner while the usage grows toward the limit', () => {
    const base = { intervalMs: 10_000, walkMs: 5, limitBytes: 1024 * MiB, at: 10_000 };
    assert.equal(nextDelay({ ...base, usedBytes: 10 * MiB }), 10_000, 'one sample: no rate yet');
    const still = { usedBytes: 100 * MiB, at: 0 };
    assert.equal(nextDelay({ ...base, usedBytes: 100 * MiB, previous: still }), 10_000);
    // 400 MiB in 10 s: the 524 MiB left would go in 13.1 s; half of that.
    const growing = nextDelay({ ...base, usedBytes: 500 * MiB, previous: { usedBytes: 100 * MiB, at: 0 } });
    assert.equal(Math.round(growing), 6550);
    // Fast: never below a second.
    assert.equal(nextDelay({ ...base, usedBytes: 1000 * MiB, previous: { usedBytes: 0, at: 0 } }), 1_000);
    // A walk that took 4 s: at least four times that, whatever the rest says.
    assert.equal(nextDelay({ ...base, walkMs: 4_000, usedBytes: 10 * MiB }), 16_000);
    const unlimited = { intervalMs: 10_000, walkMs: 5, at: 10_000 };
    assert.equal(nextDelay({ ...unlimited, usedBytes: 1000 * MiB, previous: still }), 10_000);
  });
});

void describe('an allocation and its disk', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  const runners: AllocRunner[] = [];
  const exec = drivers.exec({ logger: silentLogger(), enabled: true, isolation: noIsolation() });

  before(async () => {
    dir = await tempDir('unum-disk-watch-');
  });
  afterEach(async () => {
    await Promise.all(runners.splice(0).map((r) => r.stop('test over')));
  });
  after(async () => {
    await dir.cleanup();
  });

  function start(opts: TestAllocOptions): {
    runner: AllocRunner;
    allocId: string;
    updates: AllocStatusUpdate[];
  } {
    const alloc = testAlloc(opts);
    const updates: AllocStatusUpdate[] = [];
    const runner = new AllocRunner({
      alloc,
      allocsDir: dir.path,
      nodeId: 'node-1',
      // Measured often, so that the test does not wait: the pacing itself is tested above.
      disk: { intervalMs: 50, maxFiles: 1000 },
      driverFor: () => exec,
      logger: silentLogger(),
      onUpdate: (u) => updates.push(u),
    });
    runners.push(runner);
    void runner.run();
    return { runner, allocId: alloc.id, updates };
  }

  void test('within its limit it runs on, and its usage is there to see (logs apart)', async () => {
    const { runner, updates } = start({
      ephemeral: { sizeMiB: 8 },
      tasks: [
        {
          name: 'small',
          command: 'sh',
          // 2 MiB of data, and 12 MiB of logs (they have their own cap and are not counted).
          args: [
            '-c',
            'head -c 2097152 /dev/zero > data; head -c 12582912 /dev/zero | tr "\\0" x; echo; exec sleep 60',
          ],
        },
      ],
    });
    const usage = await waitFor(() => {
      const u = runner.diskUsage();
      return u !== undefined && u.usedBytes >= 2 * MiB ? u : undefined;
    });
    assert.equal(usage.limitBytes, 8 * MiB);
    assert.ok(usage.usedBytes < 3 * MiB, `${usage.usedBytes}`);
    assert.equal(updates.at(-1)?.clientStatus, 'running');
  });

  void test('over its limit every task is killed and fails, without a restart; its files go, its logs stay', async () => {
    const { runner, allocId, updates } = start({
      type: 'service',
      ephemeral: { sizeMiB: 4 },
      tasks: [
        {
          name: 'writer',
          command: 'sh',
          args: [
            '-c',
            'echo writing; i=0; while :; do head -c 1048576 /dev/zero > "$UNUM_ALLOC_DIR/f$i"; i=$((i+1)); sleep 0.02; done',
          ],
        },
        { name: 'idle', command: 'sleep', args: ['60'] },
      ],
    });
    await runner.run();
    const last = updates.at(-1)!;
    assert.equal(last.clientStatus, 'failed');
    assert.match(
      last.clientDescription ?? '',
      /^disk limit exceeded: used [\d.]+ MiB( \+ [\d.]+ KiB)? of 4 MiB \(ephemeral\.sizeMiB\)$/,
    );
    for (const [name, t] of Object.entries(last.taskStates)) {
      assert.equal(t.failed, true, name);
      assert.equal(t.restarts, 0, name);
      const types = t.events.map((e) => e.type);
      assert.ok(!types.includes('restarting'), `${name}: ${types.join(', ')}`);
      const event = t.events.find((e) => e.type === 'limit-exceeded');
      assert.equal(event?.message, last.clientDescription, name);
      assert.equal(t.events.at(-1)?.type, 'killed', name);
      assert.equal(t.events.at(-1)?.signal, 'SIGKILL', name);
    }
    // What the tasks wrote is removed once they are dead (the watcher does it right after).
    const left = async (): Promise<string> =>
      JSON.stringify([
        await readdir(allocDirPaths(dir.path, allocId).shared),
        await readdir(taskDirPaths(dir.path, allocId, 'writer').dir),
        await readdir(taskDirPaths(dir.path, allocId, 'idle').dir),
      ]);
    await waitFor(async () => (await left()) === JSON.stringify([[], ['logs'], ['logs']]), {
      description: 'only the logs left',
    });
    assert.equal(await readFile(taskDirPaths(dir.path, allocId, 'writer').stdout, 'utf8'), 'writing\n');
  });
});
