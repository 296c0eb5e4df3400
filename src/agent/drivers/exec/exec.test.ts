/**
 * The driver contract, for the exec driver both isolated (bwrap, a uid of its own, cgroups: when
 * this node can) and not (isolation turned off: the path a non-root agent takes), and raw_exec.
 */
import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { InvalidError, UnavailableError } from '../../../core/errors.ts';
import { silentLogger } from '../../../core/log.ts';
import { waitFor } from '../../../testing/wait.ts';
import { taskCgroupName } from '../../cgroups/index.ts';
import { isAlive } from '../../fixtures.ts';
import { noIsolation, type IsolationCapability } from './isolation.ts';
import { currentUserName } from './users.ts';
import {
  dataDir,
  nodeIsolation,
  processesIn,
  procOf,
  sandboxUnavailable,
  stdoutOf,
  taskConfig,
  type DataDir,
} from '../driver-fixtures.ts';
import { drivers } from '../index.ts';
import { ExecError, describeExit, type Driver, type TaskConfig, type TaskHandle } from '../types.ts';

const modes: {
  name: string;
  isolation: () => Promise<IsolationCapability>;
  skip: () => Promise<string | undefined>;
}[] = [
  { name: 'isolated', isolation: nodeIsolation, skip: sandboxUnavailable },
  {
    name: 'not isolated',
    isolation: () => Promise.resolve(noIsolation()),
    skip: () => Promise.resolve(undefined),
  },
];

for (const mode of modes) {
  void describe(`exec driver (${mode.name})`, async () => {
    const skip = await mode.skip();
    let data: DataDir;
    let exec: Driver;
    const handles: TaskHandle[] = [];

    before(async () => {
      data = await dataDir();
      exec = drivers.exec({
        logger: silentLogger(),
        enabled: true,
        dataDir: data.path,
        isolation: await mode.isolation(),
      });
    });
    afterEach(async () => {
      await Promise.all(handles.splice(0).map((h) => h.stop('SIGKILL', 0)));
    });
    after(async () => {
      await data.cleanup();
    });

    async function start(cfg: TaskConfig): Promise<TaskHandle> {
      const h = await exec.start(cfg);
      handles.push(h);
      return h;
    }

    void test('reports the exit code', { skip }, async () => {
      const h = await start(await taskConfig(data, 'sh', ['-c', 'exit 3']));
      assert.ok(h.pid > 0);
      assert.deepEqual(await h.wait(), { exitCode: 3 });
      assert.equal(describeExit({ exitCode: 3 }), 'exited with code 3');
    });

    void test('reports the signal that killed the task', { skip }, async () => {
      const cfg = await taskConfig(data, 'sh', ['-c', 'echo ready; exec sleep 300']);
      const h = await start(cfg);
      await waitFor(async () => (await stdoutOf(cfg)).includes('ready'));
      h.signal('SIGTERM');
      const result = await h.wait();
      assert.deepEqual(result, { signal: 'SIGTERM' });
      assert.equal(describeExit(result), 'killed by signal SIGTERM');
    });

    void test('a missing program is an exec error: command not found', { skip }, async () => {
      const cfg = await taskConfig(data, 'python4', ['-V']);
      await assert.rejects(exec.start(cfg), (err: unknown) => {
        assert.ok(err instanceof ExecError);
        assert.equal(err.message, 'exec: "python4": command not found');
        assert.equal(err.errno, 'ENOENT');
        // A problem of the job: the API's invalid, with the errno in its details.
        assert.ok(err instanceof InvalidError);
        assert.equal(err.code, 'invalid');
        assert.deepEqual(err.details, { errno: 'ENOENT' });
        return true;
      });
      // Nothing was left running for it (the sandbox may have been set up meanwhile), no cgroup.
      await waitFor(() => processesIn(cfg.cwd).length === 0, { description: 'no process of the task' });
      const cgroups = (await mode.isolation()).cgroups;
      if (cgroups !== undefined)
        assert.equal(await cgroups.open(taskCgroupName(cfg.allocId, cfg.task)), undefined);
    });

    void test('a file that is not executable is an exec error: permission denied', { skip }, async () => {
      const cfg = await taskConfig(data, './script.sh', []);
      await writeFile(join(cfg.cwd, 'script.sh'), '#!/bin/sh\necho hi\n');
      await chmod(join(cfg.cwd, 'script.sh'), 0o644);
      await assert.rejects(exec.start(cfg), (err: unknown) => {
        assert.ok(err instanceof ExecError);
        assert.equal(err.message, 'exec: "./script.sh": permission denied');
        return true;
      });
    });

    void test(
      'runs in the task dir with exactly the given environment, output appended to the log files',
      { skip },
      async () => {
        const cfg = await taskConfig(
          data,
          'sh',
          ['-c', 'echo "$GREETING from $(pwd)"; echo "oops" >&2; echo "agent-home=${HOME:-unset}"'],
          { env: { GREETING: 'hello' } },
        );
        await writeFile(cfg.stdoutPath, 'earlier line\n');
        assert.deepEqual(await (await start(cfg)).wait(), { exitCode: 0 });
        assert.deepEqual(await (await start(cfg)).wait(), { exitCode: 0 });
        const run = `hello from ${cfg.cwd}\nagent-home=unset\n`;
        assert.equal(await stdoutOf(cfg), `earlier line\n${run}${run}`);
        assert.equal(await readFile(cfg.stderrPath, 'utf8'), 'oops\noops\n');
      },
    );

    void test(
      'stop kills the whole process group: a forked background child is gone too',
      { skip },
      async () => {
        const cfg = await taskConfig(data, 'sh', ['-c', 'sleep 300 & echo started; wait']);
        const h = await start(cfg);
        await waitFor(async () => (await stdoutOf(cfg)).includes('started'));
        const sleeper = await waitFor(() => processesIn(cfg.cwd, 'sleep 300').at(0), {
          description: 'the background child to run',
        });
        const result = await h.stop('SIGTERM', 5_000);
        assert.deepEqual(result, { signal: 'SIGTERM' });
        await waitFor(() => !isAlive(sleeper) && !isAlive(h.pid), {
          description: 'the task and its child to be gone',
        });
      },
    );

    void test('a child left behind when the task exits on its own is killed with it', { skip }, async () => {
      const cfg = await taskConfig(data, 'sh', ['-c', 'sleep 300 & sleep 0.2; echo started']);
      const h = await start(cfg);
      await waitFor(async () => (await stdoutOf(cfg)).includes('started'));
      const sleeper = processesIn(cfg.cwd, 'sleep 300').at(0);
      assert.deepEqual(await h.wait(), { exitCode: 0 });
      if (sleeper !== undefined)
        await waitFor(() => !isAlive(sleeper), { description: 'the orphaned child to be killed' });
      assert.deepEqual(processesIn(cfg.cwd, 'sleep 300'), []);
    });

    void test(
      'stop sends SIGKILL after the kill timeout when the task ignores the kill signal',
      { skip },
      async () => {
        const cfg = await taskConfig(data, 'sh', [
          '-c',
          'trap "" TERM; echo ready; while :; do sleep 1; done',
        ]);
        const h = await start(cfg);
        await waitFor(async () => (await stdoutOf(cfg)).includes('ready'));
        const result = await h.stop('SIGTERM', 100);
        assert.deepEqual(result, { signal: 'SIGKILL' });
        // Stop is idempotent once the task is gone.
        assert.deepEqual(await h.stop('SIGTERM', 100), { signal: 'SIGKILL' });
      },
    );

    void test('a task that handles the kill signal exits with its own code', { skip }, async () => {
      const cfg = await taskConfig(data, 'sh', [
        '-c',
        'trap "echo cleaning up; exit 9" TERM; echo ready; while :; do sleep 0.05; done',
      ]);
      const h = await start(cfg);
      await waitFor(async () => (await stdoutOf(cfg)).includes('ready'));
      assert.deepEqual(await h.stop('SIGTERM', 10_000), { exitCode: 9 });
      assert.match(await stdoutOf(cfg), /cleaning up/);
    });

    void test('the handle state is plain JSON with what re-attaching needs', { skip }, async () => {
      const cfg = await taskConfig(data, 'sleep', ['300']);
      const h = await start(cfg);
      const saved = JSON.parse(JSON.stringify(h.state)) as typeof h.state;
      assert.deepEqual(saved, h.state);
      assert.equal(saved.version, 3);
      assert.equal(saved.driver, 'exec');
      const state = procOf(saved);
      assert.equal(state.pid, h.pid);
      assert.equal(state.wrapper, mode.name === 'isolated' ? 'bwrap' : 'sh');
      assert.ok(state.pidStartTime > 0);
      assert.equal(state.memoryLimitMiB, 64);
      assert.equal(state.stdoutPath, cfg.stdoutPath);
      if (mode.name === 'isolated') {
        assert.ok(state.cgroup !== undefined && state.uid !== undefined && state.uid > 0);
      } else {
        assert.equal(state.cgroup, undefined);
        assert.equal(state.uid, undefined);
      }
      await h.stop('SIGKILL', 0);
    });

    void test(
      'the exit code is recorded in the status file as well (for an agent that was down)',
      { skip },
      async () => {
        const cfg = await taskConfig(data, 'sh', ['-c', 'exit 4']);
        const h = await start(cfg);
        assert.deepEqual(await h.wait(), { exitCode: 4 });
        const recorded = await readFile(procOf(h.state).statusPath, 'utf8');
        if (procOf(h.state).wrapper === 'sh') assert.equal(recorded.trim(), '4');
        else assert.match(recorded, /"exit-code": 4/);
      },
    );

    void test('usage comes from the cgroup (none without)', { skip }, async () => {
      const cfg = await taskConfig(data, 'sleep', ['300']);
      const h = await start(cfg);
      const usage = await h.usage();
      if (mode.name === 'isolated') {
        assert.ok(usage !== undefined);
        // bwrap's two processes and the sleep.
        assert.ok(usage.pids >= 1, `pids: ${usage.pids}`);
        assert.ok(Number.isInteger(usage.memoryBytes) && Number.isInteger(usage.cpuNanos));
      } else {
        assert.equal(usage, undefined);
      }
      await h.stop('SIGKILL', 0);
      assert.equal(await h.usage(), undefined);
    });
  });
}

void describe('exec driver without isolation', () => {
  void test('fingerprint and start refuse to run tasks as root when they could not be dropped', async () => {
    const exec = drivers.exec({
      logger: silentLogger(),
      enabled: true,
      isolation: { ...noIsolation(), root: true },
    });
    const info = await exec.fingerprint();
    assert.equal(info.healthy, false);
    assert.match(info.description ?? '', /setpriv/);
  });
});

void describe('raw_exec driver', () => {
  void test('is off unless enabled', async () => {
    const off = drivers.raw_exec({ logger: silentLogger(), enabled: false });
    const info = await off.fingerprint();
    assert.equal(info.healthy, false);
    assert.match(info.description ?? '', /disabled/);
    const on = drivers.raw_exec({ logger: silentLogger(), enabled: true });
    assert.equal((await on.fingerprint()).healthy, true);
  });

  void test('a disabled driver refuses to start with unavailable, a problem of the node', async () => {
    const data = await dataDir();
    try {
      const cfg = await taskConfig(data, 'true', []);
      for (const off of [
        drivers.raw_exec({ logger: silentLogger(), enabled: false }),
        drivers.exec({ logger: silentLogger(), enabled: false, isolation: noIsolation() }),
      ])
        await assert.rejects(off.start(cfg), (err: unknown) => {
          assert.ok(err instanceof UnavailableError, String(err));
          assert.match(err.message, /driver is disabled on this node/);
          return true;
        });
    } finally {
      await data.cleanup();
    }
  });

  void test('runs the task as the agent user and records its exit code', async () => {
    const data = await dataDir();
    try {
      const raw = drivers.raw_exec({ logger: silentLogger(), enabled: true });
      const cfg = await taskConfig(data, 'sh', ['-c', 'id -u; exit 6']);
      const h = await raw.start(cfg);
      assert.deepEqual(await h.wait(), { exitCode: 6 });
      assert.equal((await stdoutOf(cfg)).trim(), String(process.getuid?.()));
      assert.equal(procOf(h.state).wrapper, 'sh');
      assert.equal(await h.usage(), undefined);
      // user: can not be honoured without a uid change: refused, unless it is the agent's own.
      const other = await taskConfig(data, 'true', [], { user: 'nobody' });
      await assert.rejects(raw.start(other), (err: unknown) => {
        assert.ok(err instanceof ExecError);
        assert.match(
          err.message,
          /user "nobody" can not be used with raw_exec: it runs tasks as the agent's user/,
        );
        return true;
      });
      const own = await taskConfig(data, 'true', [], { user: currentUserName() });
      assert.deepEqual(await (await raw.start(own)).wait(), { exitCode: 0 });
    } finally {
      await data.cleanup();
    }
  });
});
