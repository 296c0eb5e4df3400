import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { COMMANDS, main } from './main.ts';

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function unum(argv: string[], env: Record<string, string> = {}): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    stdout: { write: (t) => void (stdout += t), isTTY: false },
    stderr: { write: (t) => void (stderr += t), isTTY: false },
    env,
  });
  return { code, stdout, stderr };
}

/** A local port nothing listens on (taken, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return address.port;
}

test('every verb prints its usage for --help and -h, and exits 0', async () => {
  for (const name of Object.keys(COMMANDS)) {
    for (const flag of ['--help', '-h']) {
      const r = await unum([name, flag]);
      assert.equal(r.code, 0, `unum ${name} ${flag}`);
      assert.match(r.stdout, new RegExp(`^Usage: unum ${name}\\b`), `unum ${name} ${flag}`);
      assert.match(r.stdout, /Examples?:/, `unum ${name} ${flag} shows examples`);
      assert.equal(r.stderr, '');
    }
  }
});

test('--help wins over other flags and arguments, and "unum help VERB" is the same text', async () => {
  const direct = await unum(['logs', 'web', '-f', '--help']);
  assert.equal(direct.code, 0);
  const viaHelp = await unum(['help', 'logs']);
  assert.equal(viaHelp.code, 0);
  assert.equal(viaHelp.stdout, direct.stdout);
  assert.equal((await unum(['--help', 'logs'])).stdout, direct.stdout);
});

test("each verb's usage documents each of its flags", () => {
  for (const command of Object.values(COMMANDS))
    for (const flag of Object.keys(command.flags ?? {}))
      assert.ok(
        command.usage.includes(`--${flag}`),
        `unum ${command.name} --help does not mention --${flag}`,
      );
});

test('unum, unum --help and unum help list every verb', async () => {
  for (const argv of [[], ['--help'], ['help']]) {
    const r = await unum(argv);
    assert.equal(r.code, 0);
    for (const name of Object.keys(COMMANDS)) assert.match(r.stdout, new RegExp(`^  ${name} `, 'm'));
  }
});

test('an unknown flag is one clear line, a hint to --help, and exit 2', async () => {
  const r = await unum(['status', '--bogus']);
  assert.equal(r.code, 2);
  assert.deepEqual(r.stderr.trimEnd().split('\n'), [
    'error: unknown flag --bogus for "unum status"',
    'Run "unum status --help" for usage.',
  ]);
  assert.equal(r.stdout, '');
});

test('a near miss of a flag or verb is suggested', async () => {
  const flag = await unum(['logs', 'web', '--folow']);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /^error: unknown flag --folow for "unum logs"; did you mean --follow\?$/m);
  const verb = await unum(['stauts']);
  assert.equal(verb.code, 2);
  assert.match(verb.stderr, /^error: unknown command "stauts"; did you mean "status"\?$/m);
  assert.match(verb.stderr, /Run "unum --help" for usage\./);
});

test('bad flag values and arguments are usage errors (exit 2) before any request', async () => {
  const cases: [string[], RegExp][] = [
    [['status', '--addr'], /^error: flag --addr needs a value$/m],
    [['logs', 'web', '--tail', 'ten'], /^error: --tail expects a whole number, got "ten"$/m],
    [['run', 'web.yaml', '--timeout', 'soon'], /^error: --timeout expects a duration/m],
    [['ps', 'extra'], /^error: unexpected argument "extra"$/m],
    [['stop'], /^error: missing the job to stop$/m],
    [['status', '-n', 'Not_A_Name'], /^error: --namespace "Not_A_Name" is not a valid name/m],
    [['run', 'web.yaml', '--', 'echo'], /^error: give either a job file or "-- CMD ARGS", not both/m],
    [['run', '--'], /^error: missing the command to run after --$/m],
    [['run', 'web.yaml', '--cpu', '100'], /^error: --cpu is for "unum run -- CMD"/m],
    [['up', '--addr', 'nowhere'], /^error: --addr expects host:port/m],
    [['up', '--log-level', 'loud'], /^error: --log-level expects one of/m],
  ];
  for (const [argv, pattern] of cases) {
    const r = await unum(argv, { UNUM_ADDR: 'http://127.0.0.1:1' });
    assert.equal(r.code, 2, `unum ${argv.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, pattern, `unum ${argv.join(' ')}`);
  }
});

test('global flags work before and after the verb', async () => {
  const port = await closedPort();
  for (const argv of [
    ['--addr', `127.0.0.1:${port}`, 'status'],
    ['status', '--addr', `http://127.0.0.1:${port}`],
  ]) {
    const r = await unum(argv);
    assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${port}`), argv.join(' '));
  }
});

test('a server that cannot be reached is one clear line and exit 1, without a stack trace', async () => {
  const port = await closedPort();
  for (const argv of [
    ['status'],
    ['ps'],
    ['nodes'],
    ['logs', 'web'],
    ['run', 'examples/web.yaml'],
    ['stop', 'web'],
  ]) {
    const r = await unum([...argv, '--addr', `http://127.0.0.1:${port}`]);
    assert.equal(r.code, 1, argv.join(' '));
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line for unum ${argv.join(' ')}: ${r.stderr}`);
    assert.match(
      lines[0]!,
      new RegExp(
        `^error: cannot reach the unum server at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)\\. Is it running\\?`,
      ),
    );
  }
});

test('UNUM_ADDR is used when --addr is not given, and UNUM_DEBUG=1 adds the stack', async () => {
  const port = await closedPort();
  const r = await unum(['status'], { UNUM_ADDR: `127.0.0.1:${port}`, UNUM_DEBUG: '1' });
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    new RegExp(`^error: cannot reach the unum server at http://127\\.0\\.0\\.1:${port} `),
  );
  assert.match(r.stderr, /\n\s+at /, 'a stack trace with UNUM_DEBUG=1');
});

test('bin/unum.js: an unreachable server gives one line on stderr and exit code 1', async () => {
  const port = await closedPort();
  const bin = fileURLToPath(new URL('../../bin/unum.js', import.meta.url));
  const env: NodeJS.ProcessEnv = { ...process.env, UNUM_ADDR: `http://127.0.0.1:${port}` };
  delete env['UNUM_DEBUG'];
  const r = spawnSync(process.execPath, [bin, 'status'], { env, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 1, r.stderr);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /^error: cannot reach the unum server at /);
});

test('a job file that cannot be read is reported before any request', async () => {
  const r = await unum(['plan', 'src/cli/no-such-job.yaml'], { UNUM_ADDR: 'http://127.0.0.1:1' });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'error: src/cli/no-such-job.yaml: no such file\n');
});
