import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { appendFile, mkdir, open, readFile, readdir, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test, type TestContext } from 'node:test';
import { waitFor } from '../testing/wait.ts';
import { buildAllocDir, taskDirPaths } from './runner/alloc-dir.ts';
import { tempDir } from './fixtures.ts';
import {
  gcAllocDirs,
  logBounds,
  markAllocDirEnded,
  rotateLog,
  rotationHooks,
  streamLog,
  tailOffset,
  type StreamLogOptions,
} from './logs.ts';

/** Everything the log holds from logical `offset`, as streamLog serves it. */
async function readLog(path: string, offset = 0): Promise<string> {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => (text += c.toString()));
  await streamLog(out, { path, offset, follow: false, isLive: () => false });
  return text;
}

/**
 * Follows the log from offset 0 as the endpoint does for a live task; `end()` says the task can
 * write no more and waits for the drain. A failed assertion must not leave the follower polling
 * (the test file would never end): the test's cleanup ends it too.
 */
function followLog(
  t: TestContext,
  path: string,
  extra: Partial<StreamLogOptions> = {},
): { text: () => string; end: () => Promise<void> } {
  const out = new PassThrough();
  let text = '';
  out.on('data', (c: Buffer) => (text += c.toString()));
  let live = true;
  const following = streamLog(out, {
    path,
    offset: 0,
    follow: true,
    isLive: () => live,
    pollMs: 5,
    ...extra,
  });
  const end = async (): Promise<void> => {
    live = false;
    await following;
  };
  t.after(end);
  return { text: () => text, end };
}

/** Rotates `file` once, with `lost` written by the task in the copy-truncate window. */
async function rotateLosing(file: string, lost: string): Promise<void> {
  rotationHooks.beforeTruncate = (path) => {
    if (path === file) appendFileSync(file, lost);
  };
  try {
    assert.equal(await rotateLog(file, { maxBytes: 1000, maxFiles: 10 }), true);
  } finally {
    rotationHooks.beforeTruncate = undefined;
  }
}

const numbered = (from: number, to: number): string =>
  Array.from({ length: to - from + 1 }, (_, i) => `${from + i}\n`).join('');

void describe('log rotation', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  before(async () => {
    dir = await tempDir('unum-logs-');
  });
  after(async () => {
    await dir.cleanup();
  });

  void test('copy-truncate keeps maxFiles files, and offsets stay the same across rotations', async () => {
    const logs = join(dir.path, 'a');
    await mkdir(logs);
    const file = join(logs, 'stdout.log');
    const limits = { maxBytes: 400, maxFiles: 3 }; // a file rotates past 134 bytes
    // The writer keeps its descriptor (append mode) across rotations, as a task does.
    const fh = await open(file, 'a');
    let all = '';
    let line = 0;
    for (let round = 0; round < 6; round++) {
      const chunk = numbered(line + 1, line + 60);
      line += 60;
      await fh.write(chunk);
      all += chunk;
      assert.equal(await rotateLog(file, limits), true, `round ${round} rotates`);
    }
    await fh.write('tail\n');
    all += 'tail\n';
    await fh.close();
    assert.equal(await rotateLog(file, limits), false, 'a small file is left alone');

    assert.deepEqual((await readdir(logs)).sort(), [
      '.stdout.log.base',
      'stdout.log',
      'stdout.log.1',
      'stdout.log.2',
    ]);
    // The current file restarted at zero after the last rotation: the task's writes land at its end.
    assert.equal(await readFile(file, 'utf8'), 'tail\n');
    const { start, end } = await logBounds(file);
    assert.equal(end, Buffer.byteLength(all), 'end = everything ever written');
    // What is kept is the end of everything written, oldest first.
    assert.equal(await readLog(file), all.slice(start));
    assert.ok(start > 0, 'the oldest files were dropped');
    // An offset means the same bytes as before the rotations; one older than what is kept starts there.
    const at = all.indexOf('300\n');
    assert.equal(await readLog(file, at), all.slice(at));
    assert.equal(await readLog(file, 0), all.slice(start));
    // The last lines, across files.
    assert.equal(all.slice(await tailOffset(file, 3)), '359\n360\ntail\n');
    assert.equal(await tailOffset(file, 100_000), start);
  });

  void test('a line the task has not finished yet is kept whole across a rotation', async () => {
    const logs = join(dir.path, 'partial');
    await mkdir(logs);
    const file = join(logs, 'stdout.log');
    const fh = await open(file, 'a');
    await fh.write(`${numbered(1, 40)}password: `);
    assert.equal(await rotateLog(file, { maxBytes: 1000, maxFiles: 10 }), true);
    await fh.write('hunter2\n');
    await fh.close();
    assert.equal(
      await readFile(`${file}.1`, 'utf8'),
      `${numbered(1, 40)}password: `,
      'nothing lost, nothing added',
    );
    assert.equal(await readLog(file), `${numbered(1, 40)}password: hunter2\n`);
  });

  void test('writes lost in the copy-truncate window do not glue two lines together', async () => {
    const logs = join(dir.path, 'window');
    await mkdir(logs);
    const file = join(logs, 'stdout.log');
    const fh = await open(file, 'a');
    // The copy sees a write half done ("12" of "1234\n"); the rest, and more, lands before the truncate.
    await fh.write(`${numbered(1, 40)}12`);
    await rotateLosing(file, '34\n41\n');
    await fh.write('42\n');
    await fh.close();
    const text = await readLog(file);
    assert.equal(text, `${numbered(1, 40)}42\n`, 'the cut line is dropped with what was lost');
    const { start, end } = await logBounds(file);
    assert.equal(end - start, Buffer.byteLength(text), 'offsets do not count the dropped part');
    assert.equal(await readLog(file, end - 3), '42\n');
    assert.equal(await readLog(file, start + numbered(1, 40).length), '42\n');
  });

  void test('a copy without a single newline that loses its end is ended with one', async () => {
    const logs = join(dir.path, 'oneline');
    await mkdir(logs);
    const file = join(logs, 'stdout.log');
    const fh = await open(file, 'a');
    await fh.write('x'.repeat(150));
    await rotateLosing(file, 'yy\n');
    await fh.write('next\n');
    await fh.close();
    assert.equal(await readLog(file), `${'x'.repeat(150)}\nnext\n`);
  });

  void test('a follower holds back a line until its newline: a line cut by a rotation is never shown', async (t) => {
    const logs = join(dir.path, 'held');
    await mkdir(logs);
    const file = join(logs, 'stdout.log');
    const fh = await open(file, 'a');
    t.after(() => fh.close());
    const follower = followLog(t, file, { holdPartialLineMs: 10 * 60_000 });
    await fh.write(`${numbered(1, 40)}12`);
    await waitFor(() => follower.text().endsWith('\n40\n'), { description: 'the follower at line 40' });
    // The rest of "1234" and a whole line land in the copy-truncate window.
    await rotateLosing(file, '34\n41\n');
    await fh.write('42\nprompt: ');
    await waitFor(() => follower.text().endsWith('\n42\n'), { description: 'the follower at line 42' });
    // The task ends without a newline: what it wrote last goes out whole.
    await follower.end();
    assert.equal(follower.text(), `${numbered(1, 40)}42\nprompt: `);
  });

  void test('a line without its newline is shown once it has waited', async (t) => {
    const logs = join(dir.path, 'prompt');
    await mkdir(logs);
    const file = join(logs, 'stdout.log');
    await writeFile(file, 'hello\npassword: ');
    const follower = followLog(t, file, { holdPartialLineMs: 20 });
    await waitFor(() => follower.text() === 'hello\npassword: ', { description: 'the prompt shown' });
    await appendFile(file, 'ok\n');
    await waitFor(() => follower.text() === 'hello\npassword: ok\n', {
      description: 'the rest of the line',
    });
  });

  void test('of a file that grew far past the limit, what is kept starts at a line', async () => {
    const logs = join(dir.path, 'grown');
    await mkdir(logs);
    const file = join(logs, 'stdout.log');
    const all = numbered(1, 1000);
    await writeFile(file, all);
    assert.equal(await rotateLog(file, { maxBytes: 1000, maxFiles: 2 }), true);
    const kept = await readFile(`${file}.1`, 'utf8');
    assert.ok(kept.length <= 1000 && kept.length > 900, `kept ${kept.length} bytes`);
    assert.ok(
      all.endsWith(kept) && all.at(-kept.length - 1) === '\n',
      `kept starts at a line: ${kept.slice(0, 10)}`,
    );
    const { start, end } = await logBounds(file);
    assert.equal(end, Buffer.byteLength(all), 'the end is everything written');
    assert.equal(start, end - kept.length);
  });

  // What is kept, and what is dropped, depends on when the rotations happen to run against the writer:
  // the first test checks that deterministically. Here: order, and following.
  void test('a task writing fast: what is read back is in order, and the stream is followed across rotations', async (t) => {
    const logs = join(dir.path, 'b');
    await mkdir(logs);
    const file = join(logs, 'stdout.log');
    const limits = { maxBytes: 64 * 1024, maxFiles: 4 };
    const follower = followLog(t, file);
    // One write per line (a shell's echo), into an append-mode descriptor: what a task does.
    const fd = await open(file, 'a');
    const child = spawn('sh', ['-c', 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); echo $i; done'], {
      stdio: ['ignore', fd.fd, 'ignore'],
    });
    await fd.close();
    const exited = new Promise((resolve) => child.once('exit', resolve));
    let rotations = 0;
    let done = false;
    void exited.then(() => (done = true));
    while (!done) if (await rotateLog(file, limits)) rotations += 1;
    await exited;
    if (await rotateLog(file, limits)) rotations += 1;
    // Usually many; one when the machine is so busy that the task wrote everything before the first.
    assert.ok(rotations >= 1, `rotated ${rotations} times`);

    const kept = (await readLog(file)).split('\n').slice(0, -1).map(Number);
    assert.equal(kept.at(-1), 20000, 'ends with the last line');
    for (let i = 1; i < kept.length; i++)
      assert.ok(kept[i]! > kept[i - 1]!, `in order at ${i}: ${kept[i - 1]} then ${kept[i]}`);
    const size = (await stat(file)).size + (await stat(`${file}.1`)).size;
    assert.ok(size <= 2 * limits.maxBytes, 'bounded');

    await waitFor(() => follower.text().endsWith('20000\n'), {
      description: 'the follower to reach the end',
    });
    await follower.end();
    const seenText = follower.text().split('\n').slice(0, -1);
    const bad = seenText.findIndex((l, i) => i > 0 && !(Number(l) > Number(seenText[i - 1])));
    if (bad >= 0) assert.fail(`followed out of order: ${JSON.stringify(seenText.slice(bad - 3, bad + 3))}`);
    const seen = seenText.map(Number);
    assert.equal(seen[0], 1, 'the follower saw the start');
    for (let i = 1; i < seen.length; i++)
      assert.ok(seen[i]! > seen[i - 1]!, `followed in order at ${i}: ${seen[i - 1]} then ${seen[i]}`);
  });
});

void describe('allocation directory retention', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  before(async () => {
    dir = await tempDir('unum-gc-');
  });
  after(async () => {
    await dir.cleanup();
  });

  void test('removes finished allocations older than the retention, keeps recent and running ones', async () => {
    const day = 24 * 60 * 60 * 1000;
    const now = Date.now();
    for (const id of ['old', 'recent', 'running', 'quiet-but-just-ended'])
      await buildAllocDir(dir.path, id, ['t']);
    const age = async (id: string, ms: number): Promise<void> => {
      const t = new Date(now - ms);
      const task = taskDirPaths(dir.path, id, 't');
      for (const p of [
        task.stdout,
        task.stderr,
        task.logs,
        task.dir,
        join(dir.path, id, 'alloc'),
        join(dir.path, id),
      ])
        await utimes(p, t, t);
    };
    await age('old', 2 * day);
    await age('recent', day / 2);
    await age('running', 3 * day);
    // A task that logged nothing for days but ended an hour ago: its end time is what counts.
    await age('quiet-but-just-ended', 5 * day);
    await markAllocDirEnded(join(dir.path, 'quiet-but-just-ended'), now - 60 * 60 * 1000);
    await writeFile(join(dir.path, 'not-a-dir'), '');

    const removed = await gcAllocDirs(dir.path, { retentionMs: day, now, keep: (id) => id === 'running' });
    assert.deepEqual(removed, ['old']);
    assert.deepEqual((await readdir(dir.path)).sort(), [
      'not-a-dir',
      'quiet-but-just-ended',
      'recent',
      'running',
    ]);
  });
});
