import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Args } from './context.ts';
import { UsageError } from './context.ts';
import { TASK_FLAGS_HELP, serverOptions, taskAgentOptions } from './daemon.ts';

const args = (flags: Args['flags']): Args => ({ flags, positionals: [], rest: undefined });

void describe('the task flags of unum up and unum agent', () => {
  test('no flag: raw_exec off, everything else left to the agent defaults', () => {
    assert.deepEqual(taskAgentOptions(args({})), { enableRawExec: false });
  });

  test('each flag sets its agent option', () => {
    assert.deepEqual(
      taskAgentOptions(
        args({
          'raw-exec': true,
          'task-isolation': 'off',
          'allow-task-user': ['www-data', '1001'],
          'task-uid-range': '300000-300100',
          'task-pids-limit': '64',
          'cpu-hard-cap': true,
          'no-favordynmods': true,
        }),
      ),
      {
        enableRawExec: true,
        taskIsolation: 'off',
        allowedTaskUsers: ['www-data', '1001'],
        taskUidRange: { min: 300000, max: 300100 },
        taskPidsLimit: 64,
        cpuHardCap: true,
        favorDynmods: false,
      },
    );
  });

  test('bad values are usage errors that name the flag', () => {
    assert.throws(
      () => taskAgentOptions(args({ 'task-isolation': 'strict' })),
      (e: unknown) => {
        assert.ok(e instanceof UsageError);
        assert.match(e.message, /--task-isolation expects auto or off/);
        return true;
      },
    );
    assert.throws(
      () => taskAgentOptions(args({ 'task-uid-range': '5' })),
      /--task-uid-range expects MIN-MAX/,
    );
  });

  test('--help names every flag', () => {
    for (const flag of [
      '--raw-exec',
      '--task-isolation',
      '--allow-task-user',
      '--task-uid-range',
      '--task-pids-limit',
      '--cpu-hard-cap',
      '--no-favordynmods',
    ])
      assert.ok(TASK_FLAGS_HELP.includes(flag), flag);
  });
});

void describe('the server flags of unum up and unum server', () => {
  test('the connection limits reach the server options; a limit that is not a positive number is a usage error', () => {
    assert.deepEqual(serverOptions(args({})), {});
    assert.deepEqual(
      serverOptions(
        args({ 'allow-host': ['unum.lan'], 'max-connections': '2000', 'max-connections-per-source': '16' }),
      ),
      { allowedHosts: ['unum.lan'], limits: { maxConnections: 2000, maxConnectionsPerSource: 16 } },
    );
    assert.throws(
      () => serverOptions(args({ 'max-connections-per-source': '0' })),
      (err: unknown) =>
        err instanceof UsageError && /--max-connections-per-source expects a whole number/.test(err.message),
    );
  });
});
