import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { JobFileError, jobFileFormat, parseJobText, readJobFile } from './job-file.ts';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'unum-job-file-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function write(name: string, text: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, text);
  return p;
}

function failsWith(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof JobFileError, `expected a JobFileError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

test('reads a YAML job file into the raw document', async () => {
  const file = await write('web.yaml', 'job: web\ngroups:\n  - name: web\n    count: 3\n');
  assert.deepEqual(await readJobFile(file), { job: 'web', groups: [{ name: 'web', count: 3 }] });
});

test('reads a JSON job file', async () => {
  const file = await write('web.json', '{ "job": "web", "groups": [] }');
  assert.deepEqual(await readJobFile(file), { job: 'web', groups: [] });
});

test('a YAML syntax error points at FILE:LINE:COL', () => {
  const text = 'job: web\ngroups:\n  - name: [web\n  count: 3\n';
  failsWith(() => parseJobText(text, 'web.yaml', 'yaml'), /^web\.yaml:4:3: \S/);
});

test('a duplicate YAML key is an error at its line', () => {
  failsWith(() => parseJobText('job: a\njob: b\n', 'j.yaml', 'yaml'), /^j\.yaml:2:1: .*unique/i);
});

test('a JSON syntax error points at FILE:LINE:COL, whatever V8 says', () => {
  failsWith(() => parseJobText('{\n  "job": "web",\n}', 'j.json', 'json'), /^j\.json:3:1: /);
  // V8 gives no position for this one; the position still comes out.
  failsWith(
    () => parseJobText('{\n "job": tru\n}', 'j.json', 'json'),
    /^j\.json:2:9: unexpected token "\\n"$/,
  );
  failsWith(() => parseJobText('{"job": "web"', 'j.json', 'json'), /^j\.json:1:\d+: /);
});

test('unknown extensions are refused with the ones that work', () => {
  failsWith(
    () => jobFileFormat('job.toml'),
    /job\.toml: unknown job file type "\.toml": use \.yaml, \.yml or \.json/,
  );
  failsWith(() => jobFileFormat('job'), /no extension/);
  assert.equal(jobFileFormat('a.YML'), 'yaml');
  assert.equal(jobFileFormat('-'), 'yaml');
});

test('empty files, lists and several documents are not jobs', () => {
  failsWith(() => parseJobText('\n# nothing\n', 'e.yaml', 'yaml'), /^e\.yaml: the file holds no document/);
  failsWith(() => parseJobText('  \n', 'e.yaml', 'yaml'), /^e\.yaml: the file is empty/);
  failsWith(() => parseJobText('- a\n- b\n', 'l.yaml', 'yaml'), /^l\.yaml: expected a job .* got a list/);
  failsWith(() => parseJobText('job: a\n---\njob: b\n', 'm.yaml', 'yaml'), /^m\.yaml:2:1: one job per file/);
});

test('a missing file says so in one line', async () => {
  await assert.rejects(readJobFile(join(dir, 'nope.yaml')), (err: unknown) => {
    assert.ok(err instanceof JobFileError);
    assert.match(err.message, /nope\.yaml: no such file$/);
    return true;
  });
});

test('"-" reads the job from stdin', async () => {
  assert.deepEqual(await readJobFile('-', async () => '{"job": "x"}'), { job: 'x' });
});

test('another kind of document is named in the errors: a policy file is not called a job', () => {
  const policy = { noun: 'policy', shape: 'a mapping with "rules"' };
  assert.throws(
    () => parseJobText('- a\n', 'p.yaml', 'yaml', policy),
    /p\.yaml: expected a policy \(a mapping with "rules"\), got a list/,
  );
  assert.throws(
    () => parseJobText('  \n', 'p.yaml', 'yaml', policy),
    /the file is empty; expected a policy document/,
  );
});
