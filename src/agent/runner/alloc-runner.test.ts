import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import type { AllocStatusUpdate } from '../../api/types.ts';
import { silentLogger } from '../../core/log.ts';
import type { Allocation } from '../../core/types.ts';
import { waitFor } from '../../testing/wait.ts';
import { AllocRunner, taskDevicePaths } from './alloc-runner.ts';
import { taskDirPaths } from './alloc-dir.ts';
import { drivers } from '../drivers/index.ts';
import type { Driver } from '../drivers/types.ts';
import { noIsolation } from '../drivers/exec/isolation.ts';
import { isAlive, tempDir, testAlloc, type TestAllocOptions } from '../fixtures.ts';

/** A port nobody listens on right now. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

void describe('AllocRunner', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  const runners: AllocRunner[] = [];
  // The runner's logic, not isolation (drivers/*.test.ts cover that): tasks here run the project's own
  // node, which a sandbox's private /tmp would hide when the checkout lives under /tmp.
  const exec = drivers.exec({ logger: silentLogger(), enabled: true, isolation: noIsolation() });

  before(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    await Promise.all(runners.splice(0).map((r) => r.stop('test over')));
  });
  after(async () => {
    await dir.cleanup();
  });

  function start(
    opts: TestAllocOptions,
    execDriver: Driver = exec,
  ): {
    runner: AllocRunner;
    alloc: Allocation;
    updates: AllocStatusUpdate[];
  } {
    const alloc = testAlloc(opts);
    const updates: AllocStatusUpdate[] = [];
    const runner = new AllocRunner({
      alloc,
      allocsDir: dir.path,
      nodeId: 'node-1',
      driverFor: (name) => (name === 'exec' ? execDriver : { unavailable: `driver "${name}" is disabled` }),
      logger: silentLogger(),
      onUpdate: (u) => updates.push(u),
    });
    runners.push(runner);
    void runner.run();
    return { runner, alloc, updates };
  }

  const statuses = (updates: AllocStatusUpdate[]): string[] =>
    updates.map((u) => u.clientStatus).filter((s, i, all) => all[i - 1] !== s);

  void test('a batch group goes pending → running → complete when every task exits 0', async () => {
    const { runner, updates } = start({
      type: 'batch',
      tasks: [
        { name: 'quick', command: 'true' },
        { name: 'slower', command: 'sh', args: ['-c', 'sleep 0.2'] },
      ],
    });
    await runner.run();
    assert.deepEqual(statuses(updates), ['pending', 'running', 'complete']);
    const last = updates.at(-1)!;
    assert.equal(last.clientDescription, 'all tasks completed');
    assert.equal(last.healthy, undefined);
    assert.deepEqual(Object.keys(last.taskStates).sort(), ['quick', 'slower']);
    assert.ok(Object.values(last.taskStates).every((t) => t.state === 'dead' && !t.failed));
  });

  void test('the driver prepares the allocation once, before its tasks start; a failure there is no failure', async () => {
    const calls: string[] = [];
    const recording: Driver = {
      name: 'exec',
      fingerprint: () => exec.fingerprint(),
      start: (config) => {
        calls.push(`start ${config.task}`);
        return exec.start(config);
      },
      prepareAllocation: (allocId, allocsDir) => {
        calls.push(`prepare ${allocId} in ${allocsDir}`);
        return Promise.reject(new Error('no uid today'));
      },
    };
    const { runner, alloc, updates } = start(
      {
        type: 'batch',
        tasks: [
          { name: 'a', command: 'true' },
          { name: 'b', command: 'true' },
        ],
      },
      recording,
    );
    await runner.run();
    assert.deepEqual(calls.slice(0, 1), [`prepare ${alloc.id} in ${dir.path}`]);
    assert.deepEqual(calls.slice(1).sort(), ['start a', 'start b']);
    assert.equal(updates.at(-1)?.clientStatus, 'complete');
  });

  void test('tasks get the unum environment and interpolated args', async () => {
    const { runner, alloc } = start({
      type: 'batch',
      ports: [{ name: 'http', value: 24567 }],
      tasks: [
        {
          name: 'env',
          command: 'sh',
          args: [
            '-c',
            'echo "$1 $UNUM_TASK $LISTEN ${UNUM_ALLOC_ID} $(pwd)"',
            'sh',
            '--port=${UNUM_PORT_HTTP}',
          ],
          env: { LISTEN: ':${UNUM_PORT_HTTP}' },
        },
      ],
    });
    await runner.run();
    const t = taskDirPaths(dir.path, alloc.id, 'env');
    assert.equal(await readFile(t.stdout, 'utf8'), `--port=24567 env :24567 ${alloc.id} ${t.dir}\n`);
  });

  void test('a task that fails for good fails the allocation and stops the other tasks', async () => {
    const { runner, updates } = start({
      type: 'service',
      restart: { attempts: 0 },
      tasks: [
        { name: 'main', command: 'sleep', args: ['300'] },
        { name: 'sidecar', command: 'sh', args: ['-c', 'sleep 0.1; exit 3'] },
      ],
    });
    await runner.run();
    const last = updates.at(-1)!;
    assert.equal(last.clientStatus, 'failed');
    assert.equal(
      last.clientDescription,
      'task "sidecar" failed: restarts are disabled (restart.attempts is 0)',
    );
    assert.equal(last.taskStates['sidecar']?.failed, true);
    assert.equal(last.taskStates['sidecar']?.exitCode, 3);
    const main = last.taskStates['main']!;
    assert.equal(main.state, 'dead');
    assert.equal(main.failed, false);
    assert.equal(main.events.at(-1)?.type, 'killed');
    assert.match(main.events.at(-1)?.message ?? '', /task "sidecar" failed/);
    // No terminal status before every process is gone.
    const firstTerminal = updates.findIndex((u) => u.clientStatus === 'failed');
    assert.equal(firstTerminal, updates.length - 1);
  });

  void test('a stop by the server ends the allocation as complete with the reason', async () => {
    const { runner, alloc, updates } = start({ tasks: [{ name: 'web', command: 'sleep', args: ['300'] }] });
    const pid = await waitFor(() =>
      updates.at(-1)?.clientStatus === 'running' ? updates.at(-1)?.taskStates['web']?.pid : undefined,
    );
    runner.update({ ...alloc, desiredStatus: 'stop', desiredDescription: 'job stopped by user' });
    await waitFor(() => runner.finished);
    const last = updates.at(-1)!;
    assert.equal(last.clientStatus, 'complete');
    assert.equal(last.clientDescription, 'stopped by server: job stopped by user');
    assert.equal(last.taskStates['web']?.failed, false);
    assert.equal(isAlive(pid), false);
  });

  void test('a task whose driver is unavailable fails the allocation with the reason', async () => {
    const { runner, updates } = start({ tasks: [{ name: 'raw', driver: 'raw_exec', command: 'true' }] });
    await runner.run();
    const last = updates.at(-1)!;
    assert.equal(last.clientStatus, 'failed');
    assert.equal(last.clientDescription, 'task "raw" failed: driver "raw_exec" is disabled');
  });

  void test('health checks set healthy once every check passes, and back when one fails', async () => {
    const port = await freePort();
    // Answers /health with 200 while a file named "ok" exists in its task dir, 500 otherwise.
    const server = [
      "const http = require('node:http'); const fs = require('node:fs');",
      "http.createServer((req, res) => { res.statusCode = fs.existsSync('ok') ? 200 : 500; res.end(); })",
      `.listen(Number(process.argv[1]), '127.0.0.1');`,
    ].join('\n');
    const { alloc, updates } = start({
      ports: [{ name: 'http', value: port }],
      tasks: [{ name: 'web', command: process.execPath, args: ['-e', server, '${UNUM_PORT_HTTP}'] }],
      services: [
        {
          name: 'web',
          port: 'http',
          check: { type: 'http', path: '/health', interval: '20ms', timeout: '1s' },
        },
        { name: 'web-tcp', port: 'http', check: { type: 'tcp', interval: '20ms', timeout: '1s' } },
      ],
    });
    const ok = join(taskDirPaths(dir.path, alloc.id, 'web').dir, 'ok');
    assert.equal(updates[0]?.healthy, false, 'not healthy before any check passed');
    const unhealthy = await waitFor(() => updates.find((u) => u.clientDescription?.includes('HTTP 500')));
    assert.equal(unhealthy.healthy, false);
    assert.equal(unhealthy.clientStatus, 'running');
    assert.equal(unhealthy.clientDescription, 'check of service "web" failing: HTTP 500');

    await writeFile(ok, '');
    const healthy = await waitFor(() => (updates.at(-1)?.healthy === true ? updates.at(-1) : undefined));
    assert.equal(healthy.clientDescription, 'tasks running');

    await rm(ok);
    await waitFor(() => updates.at(-1)?.healthy === false);
  });
});

void test('a task given GPUs gets their device files and the driver control files', () => {
  const alloc = testAlloc({ tasks: [{ name: 'train', command: 'true' }] });
  alloc.resources.devices = [
    { task: 'train', type: 'gpu', vendor: 'nvidia', id: 'GPU-1', index: 1 },
    { task: 'other', type: 'gpu', vendor: 'nvidia', id: 'GPU-0', index: 0 },
  ];
  const paths = taskDevicePaths(alloc, 'train');
  assert.ok(paths.includes('/dev/nvidia1'));
  assert.ok(!paths.includes('/dev/nvidia0'), "another task's GPU stays out");
  assert.ok(paths.includes('/dev/nvidiactl'));
  assert.deepEqual(taskDevicePaths(alloc, 'nothing'), []);
});
