import assert from 'node:assert/strict';
import { writeFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import {
  CgroupFileError,
  makeCgroupDir,
  makeCgroupDirSync,
  readControlSync,
  writeControlSync,
  parseKeyedValues,
  parsePidList,
  parseSingleValue,
  readControl,
  readOptionalControl,
  removeCgroupDir,
  writeControl,
} from './files.ts';
import { tempDir } from './fixtures.ts';

let tmp: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ path: tmp, cleanup } = await tempDir()));
afterEach(() => cleanup());

test('flat keyed files are parsed to numbers; other lines are skipped', () => {
  const values = parseKeyedValues('oom_kill_disable 0\nunder_oom 0\noom_kill 2\nweird\nmax max\n\n');
  assert.deepEqual(
    [...values],
    [
      ['oom_kill_disable', 0],
      ['under_oom', 0],
      ['oom_kill', 2],
    ],
  );
});

test('single values, "max" and pid lists', () => {
  assert.equal(parseSingleValue('33554432\n'), 33_554_432);
  assert.equal(parseSingleValue('max\n'), Infinity);
  assert.throws(() => parseSingleValue('', 'pids.current'), /pids.current: expected a number/);
  assert.deepEqual(parsePidList('12\n345\n\n'), [12, 345]);
  assert.deepEqual(parsePidList(''), []);
});

test('a failed write names the file, the value and the errno', async () => {
  const file = join(tmp, 'no-such-cgroup', 'pids.max');
  await assert.rejects(writeControl(file, '20'), (err: unknown) => {
    assert.ok(err instanceof CgroupFileError);
    assert.equal(err.errno, 'ENOENT');
    assert.equal(err.path, file);
    assert.match(err.message, /^cannot write "20" to .*pids\.max: ENOENT/);
    return true;
  });
});

test('the synchronous forms fail alike: file, value and errno named', () => {
  const file = join(tmp, 'no-such-cgroup', 'pids.max');
  assert.throws(
    () => writeControlSync(file, '20'),
    (err: unknown) => err instanceof CgroupFileError && err.errno === 'ENOENT' && err.path === file,
  );
  assert.throws(() => readControlSync(file), /^CgroupFileError: cannot read .*pids\.max: ENOENT/);
});

test('writes go as exact strings; reads of missing files are errors or undefined', async () => {
  const file = join(tmp, 'cpu.max');
  await writeFile(file, 'max 100000\n');
  await writeControl(file, '5000 100000');
  assert.equal(await readControl(file), '5000 100000');
  assert.equal(await readOptionalControl(join(tmp, 'memory.peak')), undefined);
  await assert.rejects(readControl(join(tmp, 'memory.peak')), CgroupFileError);
});

test('cgroup dirs: made once, re-opened after, gone is fine to remove, a file is not a cgroup', async () => {
  const dir = join(tmp, 'task');
  assert.equal(await makeCgroupDir(dir), true);
  assert.equal(await makeCgroupDir(dir), false);
  await removeCgroupDir(dir);
  assert.equal(existsSync(dir), false);
  await removeCgroupDir(dir);
  await writeFile(join(tmp, 'tasks'), '');
  await assert.rejects(makeCgroupDir(join(tmp, 'tasks')), /a file of that name exists/);
  // Synchronously: the same, and a missing parent (removed by hand since detection) is made again.
  const nested = join(tmp, 'parent', 'task');
  assert.equal(makeCgroupDirSync(nested), true);
  assert.equal(makeCgroupDirSync(nested), false);
  assert.throws(() => makeCgroupDirSync(join(tmp, 'tasks')), /a file of that name exists/);
  writeControlSync(join(nested, 'pids.max'), '7');
  assert.equal(readControlSync(join(nested, 'pids.max')), '7');
  // Not empty (ENOTEMPTY) is not retried like EBUSY: it fails at once, naming the dir.
  await mkdir(join(tmp, 'full', 'child'), { recursive: true });
  await assert.rejects(removeCgroupDir(join(tmp, 'full')), (err: unknown) => {
    assert.ok(err instanceof CgroupFileError);
    assert.equal(err.path, join(tmp, 'full'));
    return true;
  });
});
