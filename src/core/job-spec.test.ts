import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidError } from './errors.ts';
import { closest, jobSpecJsonSchema, parseJobSpec, portEnvName } from './job-spec.ts';

const minimal = { job: 'web', groups: [{ name: 'web', tasks: [{ name: 'server', command: 'python3' }] }] };

function problems(input: unknown): { path: string; message: string }[] {
  try {
    parseJobSpec(input);
  } catch (err) {
    assert.ok(err instanceof InvalidError);
    return err.fields;
  }
  assert.fail('expected an InvalidError');
}

describe('job spec', () => {
  test('applies defaults, type-dependent ones included', () => {
    const s = parseJobSpec(minimal);
    assert.equal(s.namespace, 'default');
    assert.equal(s.type, 'service');
    assert.equal(s.priority, 50);
    const g = s.groups[0]!;
    assert.equal(g.count, 1);
    assert.deepEqual(g.tasks[0]!.resources, { cpu: 100, memory: 256, devices: [] });
    assert.equal(g.tasks[0]!.driver, 'exec');
    assert.equal(g.tasks[0]!.killTimeout, 5000);
    assert.equal(g.restart.attempts, 3);
    assert.equal(g.reschedule.unlimited, true);
    const b = parseJobSpec({ ...minimal, type: 'batch' });
    assert.equal(b.groups[0]!.restart.attempts, 1);
    assert.equal(b.groups[0]!.reschedule.unlimited, false);
    assert.equal(b.groups[0]!.reschedule.attempts, 1);
  });

  test('user values override defaults; durations become milliseconds', () => {
    const s = parseJobSpec({
      ...minimal,
      groups: [
        {
          name: 'web',
          restart: { attempts: 7, delay: '250ms' },
          network: { ports: ['http', { name: 'admin', static: 9000 }] },
          services: [{ name: 'web', port: 'http', check: { type: 'http', path: '/', interval: '2s' } }],
          tasks: [{ name: 'server', command: 'x', killTimeout: '1m30s' }],
        },
      ],
    });
    const g = s.groups[0]!;
    assert.equal(g.restart.attempts, 7);
    assert.equal(g.restart.delay, 250);
    assert.equal(g.restart.maxDelay, 30_000);
    assert.equal(g.tasks[0]!.killTimeout, 90_000);
    assert.deepEqual(g.network.ports, [{ name: 'http' }, { name: 'admin', static: 9000 }]);
    assert.equal(g.services[0]!.check?.interval, 2000);
  });

  test('errors name the field path, what was expected and what was given', () => {
    const p = problems({
      ...minimal,
      groups: [
        {
          name: 'web',
          count: -1,
          tasks: [{ name: 'server', command: 'x', resources: { cpu: 100, memory: '64MB' } }],
        },
      ],
    });
    assert.deepEqual(
      p.map((x) => x.path),
      ['groups[0].count', 'groups[0].tasks[0].resources.memory'],
    );
    assert.match(p[1]!.message, /expected a positive integer \(MiB\), got "64MB"/);
  });

  test('unknown fields are named with the closest known one', () => {
    const p = problems({
      ...minimal,
      typ: 'batch',
      groups: [{ name: 'web', tasks: [{ name: 's', comand: 'x' }] }],
    });
    const typ = p.find((x) => x.path === 'typ');
    assert.match(typ?.message ?? '', /did you mean "type"/);
    const comand = p.find((x) => x.path === 'groups[0].tasks[0].comand');
    assert.match(comand?.message ?? '', /did you mean "command"/);
    assert.ok(p.some((x) => x.path === 'groups[0].tasks[0].command' && /required/.test(x.message)));
  });

  test('absurd resources and bad names are refused', () => {
    const p = problems({
      job: 'Web App',
      groups: [{ name: 'g', tasks: [{ name: 't', command: 'x', resources: { cpu: 1e9, memory: 0 } }] }],
    });
    assert.ok(p.some((x) => x.path === 'job'));
    assert.ok(p.some((x) => x.path === 'groups[0].tasks[0].resources.cpu' && /at most/.test(x.message)));
    assert.ok(p.some((x) => x.path === 'groups[0].tasks[0].resources.memory'));
  });

  test('cross-field rules: duplicates, unknown service ports, reserved names, http checks need a path', () => {
    const p = problems({
      job: 'j',
      groups: [
        {
          name: 'g',
          network: { ports: ['http', 'http'] },
          services: [
            { name: 's', port: 'grpc' },
            { name: 't', port: 'http', check: { type: 'http' } },
          ],
          tasks: [
            { name: 'alloc', command: 'x' },
            { name: 'dup', command: 'x' },
            { name: 'dup', command: 'x' },
          ],
        },
      ],
    });
    const paths = p.map((x) => x.path);
    assert.ok(paths.includes('groups[0].network.ports[1]'));
    assert.ok(paths.includes('groups[0].services[0].port'));
    assert.ok(paths.includes('groups[0].services[1].check.path'));
    assert.ok(paths.includes('groups[0].tasks[0].name'));
    assert.ok(paths.includes('groups[0].tasks[2].name'));
  });

  test('not an object at all', () => {
    assert.ok(problems('hello').length > 0);
    assert.ok(problems(null).length > 0);
    assert.ok(problems({}).some((x) => x.path === 'job'));
  });

  test('helpers', () => {
    assert.equal(portEnvName('http'), 'UNUM_PORT_HTTP');
    assert.equal(portEnvName('admin-api'), 'UNUM_PORT_ADMIN_API');
    assert.equal(closest('comand', ['command', 'args']), 'command');
    assert.equal(closest('zzzzzz', ['command', 'args']), undefined);
    const schema = jobSpecJsonSchema();
    assert.equal(schema['type'], 'object');
  });
});
