import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { allocDirPaths, taskDirPaths } from './alloc-dir.ts';
import { testAlloc } from '../fixtures.ts';
import { DEFAULT_PATH, buildTaskEnv, interpolate, interpolateCommand } from './task-env.ts';

void describe('interpolate', () => {
  const vars = { UNUM_PORT_HTTP: '20001', EMPTY: '' };

  void test('replaces known ${VAR}s', () => {
    assert.equal(interpolate('--port=${UNUM_PORT_HTTP}', vars), '--port=20001');
    assert.equal(interpolate('${UNUM_PORT_HTTP}${UNUM_PORT_HTTP}', vars), '2000120001');
    assert.equal(interpolate('[${EMPTY}]', vars), '[]');
  });

  void test('leaves unknown ${VAR}s and $VAR as written, so shell scripts keep their own variables', () => {
    assert.equal(interpolate('x=1; echo ${x} $UNUM_PORT_HTTP', vars), 'x=1; echo ${x} $UNUM_PORT_HTTP');
    assert.equal(interpolate('${not a var}', vars), '${not a var}');
  });

  void test('$${VAR} is a literal ${VAR}', () => {
    assert.equal(interpolate('$${UNUM_PORT_HTTP}', vars), '${UNUM_PORT_HTTP}');
  });
});

void describe('buildTaskEnv', () => {
  const alloc = testAlloc({
    tasks: [
      {
        name: 'server',
        command: 'python3',
        args: ['-m', 'http.server', '${UNUM_PORT_HTTP}'],
        env: { LISTEN: '127.0.0.1:${UNUM_PORT_HTTP}', HOME: '/custom', OTHER: '${LISTEN}' },
        resources: { cpu: 250, memory: 128 },
      },
    ],
    ports: [
      { name: 'http', value: 20001 },
      { name: 'admin-ui', value: 20002 },
    ],
  });
  const task = alloc.groupSpec.tasks[0]!;
  const dirs = {
    alloc: allocDirPaths('/data/agent/allocs', alloc.id),
    task: taskDirPaths('/data/agent/allocs', alloc.id, 'server'),
  };
  const env = buildTaskEnv(alloc, task, dirs, 'node-7', '/opt/bin:/usr/bin');

  void test('sets the unum variables', () => {
    assert.equal(env['UNUM_ALLOC_ID'], alloc.id);
    assert.equal(env['UNUM_ALLOC_NAME'], 'test.g[0]');
    assert.equal(env['UNUM_ALLOC_INDEX'], '0');
    assert.equal(env['UNUM_JOB'], 'test');
    assert.equal(env['UNUM_GROUP'], 'g');
    assert.equal(env['UNUM_TASK'], 'server');
    assert.equal(env['UNUM_NAMESPACE'], 'default');
    assert.equal(env['UNUM_NODE_ID'], 'node-7');
    assert.equal(env['UNUM_ALLOC_DIR'], `/data/agent/allocs/${alloc.id}/alloc`);
    assert.equal(env['UNUM_TASK_DIR'], `/data/agent/allocs/${alloc.id}/server`);
    assert.equal(env['UNUM_PORT_HTTP'], '20001');
    assert.equal(env['UNUM_PORT_ADMIN_UI'], '20002');
    assert.equal(env['UNUM_CPU_LIMIT'], '250');
    assert.equal(env['UNUM_MEMORY_LIMIT'], '128');
    assert.equal(env['TMPDIR'], `/data/agent/allocs/${alloc.id}/server/tmp`);
  });

  void test("PATH comes from the agent, and the task's env wins and is interpolated", () => {
    assert.equal(env['PATH'], '/opt/bin:/usr/bin');
    assert.equal(env['HOME'], '/custom');
    assert.equal(env['LISTEN'], '127.0.0.1:20001');
    // Task env values see unum's variables, not each other.
    assert.equal(env['OTHER'], '${LISTEN}');
    assert.equal(buildTaskEnv(alloc, task, dirs, 'n', '')['PATH'], DEFAULT_PATH);
  });

  void test('command and args are interpolated from the environment', () => {
    assert.deepEqual(interpolateCommand(task, env), {
      command: 'python3',
      args: ['-m', 'http.server', '20001'],
    });
  });

  void test('nothing from the agent environment leaks in besides PATH', () => {
    const names = Object.keys(env).filter((k) => !k.startsWith('UNUM_'));
    assert.deepEqual(names.sort(), ['HOME', 'LISTEN', 'OTHER', 'PATH', 'TMPDIR']);
  });
});
