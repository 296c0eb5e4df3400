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
          restart: { attempts: 7, delay: '2.5s' },
          network: { ports: ['http', { name: 'admin', static: 9000 }] },
          services: [{ name: 'web', port: 'http', check: { type: 'http', path: '/', interval: '2s' } }],
          tasks: [{ name: 'server', command: 'x', killTimeout: '1m30s' }],
        },
      ],
    });
    const g = s.groups[0]!;
    assert.equal(g.restart.attempts, 7);
    assert.equal(g.restart.delay, 2500);
    assert.equal(g.restart.maxDelay, 30_000);
    assert.equal(g.tasks[0]!.killTimeout, 90_000);
    assert.deepEqual(g.network.ports, [{ name: 'http' }, { name: 'admin', static: 9000 }]);
    assert.equal(g.services[0]!.check?.interval, 2000);
  });

  test('migrate.maxParallel: 1 unless given, a whole number of instances when given', () => {
    assert.deepEqual(parseJobSpec(minimal).groups[0]!.migrate, { maxParallel: 1 });
    const given = { ...minimal, groups: [{ ...minimal.groups[0]!, migrate: { maxParallel: 3 } }] };
    assert.deepEqual(parseJobSpec(given).groups[0]!.migrate, { maxParallel: 3 });
    const bad = { ...minimal, groups: [{ ...minimal.groups[0]!, migrate: { maxParallel: 0 } }] };
    assert.deepEqual(problems(bad), [
      {
        path: 'groups[0].migrate.maxParallel',
        message: 'expected a whole number of instances, 1 or more, got 0',
      },
    ]);
  });

  test("ephemeral.sizeMiB: the server's default when absent, validated when given", () => {
    assert.deepEqual(parseJobSpec(minimal).groups[0]!.ephemeral, { sizeMiB: 1024 });
    assert.deepEqual(parseJobSpec(minimal, { allocDiskMiB: 300 }).groups[0]!.ephemeral, { sizeMiB: 300 });
    const given = { ...minimal, groups: [{ ...minimal.groups[0]!, ephemeral: { sizeMiB: 20 } }] };
    assert.deepEqual(parseJobSpec(given, { allocDiskMiB: 300 }).groups[0]!.ephemeral, { sizeMiB: 20 });
    // Given or not, the same place in the group: versions are compared as JSON.
    assert.deepEqual(
      Object.keys(parseJobSpec(given).groups[0]!),
      Object.keys(parseJobSpec(minimal).groups[0]!),
    );
    const bad = (ephemeral: unknown) =>
      problems({ ...minimal, groups: [{ ...minimal.groups[0]!, ephemeral }] }).map(
        (p) => `${p.path}: ${p.message}`,
      );
    assert.deepEqual(bad({ sizeMiB: 0 }), [
      'groups[0].ephemeral.sizeMiB: expected a positive integer (MiB), got 0',
    ]);
    assert.deepEqual(bad({ sizeMiB: 1.5 }), [
      'groups[0].ephemeral.sizeMiB: expected a positive integer (MiB), got 1.5',
    ]);
    assert.deepEqual(bad({ sizeMiB: '1GB' }), [
      'groups[0].ephemeral.sizeMiB: expected a positive integer (MiB), got "1GB"',
    ]);
    assert.match(bad({ sizeMiB: 2 ** 40 })[0]!, /ephemeral.sizeMiB: at most 1073741824 MiB/);
    assert.deepEqual(bad({ sizeMb: 20 }), [
      'groups[0].ephemeral.sizeMiB: required: expected a positive integer (MiB)',
      'groups[0].ephemeral.sizeMb: unknown field "sizeMb"; did you mean "sizeMiB"? (known fields: sizeMiB)',
    ]);
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

  test('a regexp constraint must be RE2 syntax and at most 256 characters, named by its path', () => {
    const withConstraint = (c: object, level: 'job' | 'group') =>
      level === 'job'
        ? { ...minimal, constraints: [c] }
        : {
            ...minimal,
            groups: [{ ...minimal.groups[0], constraints: [{ attribute: 'os', value: 'linux' }, c] }],
          };
    const p1 = problems(withConstraint({ attribute: 'arch', operator: 'regexp', value: '(?=x)86' }, 'job'));
    assert.equal(p1[0]?.path, 'constraints[0].value');
    assert.match(p1[0]?.message ?? '', /RE2 syntax/);
    const p2 = problems(
      withConstraint({ attribute: 'arch', operator: 'regexp', value: 'a'.repeat(300) }, 'group'),
    );
    assert.equal(p2[0]?.path, 'groups[0].constraints[1].value');
    assert.match(p2[0]?.message ?? '', /at most 256 characters, got 300/);
    const p3 = problems(withConstraint({ attribute: 'arch', operator: 'regexp' }, 'job'));
    assert.deepEqual(p3, [
      { path: 'constraints[0].value', message: 'required: expected the regular expression to match' },
    ]);
    const ok = parseJobSpec(
      withConstraint({ attribute: 'arch', operator: 'regexp', value: '^(a+)+$' }, 'job'),
    );
    assert.equal(ok.constraints[0]?.value, '^(a+)+$');
  });

  test('durations have upper bounds, restart and reschedule delays a floor of 1s', () => {
    const group = (over: object) => ({ ...minimal, groups: [{ ...minimal.groups[0], ...over }] });
    const task = (over: object) => group({ tasks: [{ name: 'server', command: 'x', ...over }] });
    assert.deepEqual(problems(group({ restart: { delay: '0ms' } })), [
      {
        path: 'groups[0].restart.delay',
        message: 'expected a duration of at least 1s (a restart without a pause loops), got "0ms"',
      },
    ]);
    assert.equal(problems(group({ restart: { maxDelay: 10 } }))[0]?.path, 'groups[0].restart.maxDelay');
    assert.equal(problems(group({ reschedule: { delay: '100ms' } }))[0]?.path, 'groups[0].reschedule.delay');
    assert.deepEqual(problems(group({ restart: { interval: '8d' } })), [
      { path: 'groups[0].restart.interval', message: 'expected a duration of at most 7d, got "8d"' },
    ]);
    assert.equal(problems(group({ reschedule: { delay: '25h' } }))[0]?.path, 'groups[0].reschedule.delay');
    assert.equal(problems(task({ killTimeout: '2h' }))[0]?.path, 'groups[0].tasks[0].killTimeout');
    // A number too large to be a duration at all is out of bounds too, not Infinity.
    assert.equal(problems(task({ killTimeout: '9'.repeat(400) }))[0]?.path, 'groups[0].tasks[0].killTimeout');
    const check = (c: object) =>
      group({
        network: { ports: ['http'] },
        services: [{ name: 'web', port: 'http', check: { type: 'tcp', ...c } }],
      });
    assert.equal(problems(check({ interval: '2h' }))[0]?.path, 'groups[0].services[0].check.interval');
    assert.equal(problems(check({ timeout: '10m' }))[0]?.path, 'groups[0].services[0].check.timeout');
    const ok = parseJobSpec(group({ restart: { delay: '1s', maxDelay: '1h', interval: '7d' } }));
    assert.deepEqual(
      [ok.groups[0]!.restart.delay, ok.groups[0]!.restart.maxDelay, ok.groups[0]!.restart.interval],
      [1_000, 3_600_000, 7 * 86_400_000],
    );
  });

  test('NUL characters in the command, arguments, environment or user are refused with their path', () => {
    const task = (over: object) => ({
      ...minimal,
      groups: [{ ...minimal.groups[0], tasks: [{ name: 'server', command: 'x', ...over }] }],
    });
    const paths = (over: object) => problems(task(over)).map((p) => p.path);
    assert.deepEqual(paths({ command: 'sh\0-c' }), ['groups[0].tasks[0].command']);
    assert.deepEqual(paths({ args: ['ok', 'a\0b'] }), ['groups[0].tasks[0].args[1]']);
    assert.deepEqual(paths({ env: { A: 'x\0y' } }), ['groups[0].tasks[0].env.A']);
    assert.deepEqual(paths({ user: 'nobody\0root' }), ['groups[0].tasks[0].user']);
    assert.match(problems(task({ command: '\0' }))[0]?.message ?? '', /must not contain a NUL character/);
  });

  test('a job has at most 100 groups and 64 constraints at each level', () => {
    const g = (i: number) => ({ name: `g${i}`, tasks: [{ name: 't', command: 'x' }] });
    const groups = Array.from({ length: 101 }, (_, i) => g(i));
    assert.deepEqual(
      problems({ job: 'big', groups }).map((p) => p.path),
      ['groups'],
    );
    const c = Array.from({ length: 65 }, () => ({ attribute: 'os', value: 'linux' }));
    assert.deepEqual(
      problems({ ...minimal, constraints: c }).map((p) => p.path),
      ['constraints'],
    );
    assert.deepEqual(
      problems({ ...minimal, groups: [{ ...minimal.groups[0], constraints: c }] }).map((p) => p.path),
      ['groups[0].constraints'],
    );
    assert.equal(parseJobSpec({ job: 'big', groups: groups.slice(0, 100) }).groups.length, 100);
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
