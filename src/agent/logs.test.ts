import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, readdir, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test, type TestContext } from 'node:test';
import { waitFor } from '../testing/wait.ts';
import { buildAllocDir, taskDirPaths } from './runner/alloc-dir.ts';
import { shipLog, shipperGone, tempDir } from './fixtures.ts';
import { startLogShipper } from './log-shipper.ts';
import {
  gcAllocDirs,
  logBounds,
  markAllocDirEnded,
  MiB,
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

const numbered = (from: number, to: number): string =>
  Array.from({ length: to - from + 1 }, (_, i) => `${from + i}\n`).join('');

/** Sizes of the files of a stream (current and rotated), by name. */
async function sizes(logs: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of await readdir(logs)) {
    if (!name.startsWith('stdout.log')) continue;
    // A rotation may rename it between the listing and the look.
    const size = await stat(join(logs, name)).then(
      (st) => st.size,
      () => undefined,
    );
    if (size !== undefined) out[name] = size;
  }
  return out;
}

void describe('log rotation (through the log shipper)', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  before(async () => {
    dir = await tempDir('unum-logs-');
  });
  after(async () => {
    await dir.cleanup();
  });

  void test('keeps maxFiles files, none past its size, and offsets stay the same across rotations', async () => {
    const logs = join(dir.path, 'a');
    await mkdir(logs);
    const file = join(logs, 'stdout.log');
    const limits = { maxBytes: 400, maxFiles: 3 }; // a file holds 134 bytes
    let all = '';
    for (let round = 0; round < 6; round++) {
      // One write per line, as a shell's echo; each round a new task process (and shipper).
      const lines = numbered(round * 60 + 1, round * 60 + 60).split(/(?<=\n)/);
      await shipLog(file, limits, ...lines);
      all += lines.join('');
    }
    await shipLog(file, limits, 'tail\n');
    all += 'tail\n';

    const kept = await sizes(logs);
    assert.deepEqual(Object.keys(kept).sort(), ['stdout.log', 'stdout.log.1', 'stdout.log.2']);
    for (const [name, size] of Object.entries(kept)) assert.ok(size <= 134, `${name}: ${size} bytes`);
    assert.equal(kept['stdout.log.1'], 134, 'a rotated file is full');
    const { start, end } = await logBounds(file);
    assert.equal(end, Buffer.byteLength(all), 'end = everything ever written');
    // What is kept is the end of everything written, oldest first: nothing lost, nothing doubled.
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

  void test('a line cut by a rotation joins up with its end: nothing lost, nothing added', async () => {
    const logs = join(dir.path, 'partial');
    await mkdir(logs);
    const file = join(logs, 'stdout.log');
    const limits = { maxBytes: 100, maxFiles: 10 }; // a file holds 10 bytes
    await shipLog(file, limits, 'xxxxxxxx\n', 'password: ', 'hunter2\n');
    assert.equal(await readFile(`${file}.2`, 'utf8'), 'xxxxxxxx\np', 'cut at the size, inside a line');
    assert.equal(await readLog(file), 'xxxxxxxx\npassword: hunter2\n');
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

  void test('a writer far faster than the shipper: no file ever passes its size, and the end is kept whole', async () => {
    const logs = join(dir.path, 'flood');
    await mkdir(logs);
    const file = join(logs, 'stdout.log');
    const limits = { maxBytes: MiB, maxFiles: 2 };
    const pipes = await startLogShipper({ stdoutPath: file, stderrPath: join(logs, 'stderr.log') }, limits);
    // 64 MiB as fast as the kernel takes it, then numbered lines.
    const child = spawn('sh', ['-c', 'head -c 67108864 /dev/zero | tr "\\0" y; echo; seq 1 1000'], {
      stdio: ['ignore', pipes.stdout, 'ignore'],
    });
    pipes.close();
    const exited = new Promise((resolve) => child.once('exit', resolve));
    let done = false;
    void exited.then(() => (done = true));
    let looks = 0;
    while (!done) {
      // Looked at while it writes: never more than a file's size in any file.
      for (const [name, size] of Object.entries(await sizes(logs)))
        assert.ok(size <= MiB / 2, `${name}: ${size} bytes`);
      looks += 1;
      await new Promise((resolve) => setImmediate(resolve));
    }
    await shipperGone(pipes);
    const kept = await sizes(logs);
    assert.ok(looks >= 1);
    assert.deepEqual(Object.keys(kept).sort(), ['stdout.log', 'stdout.log.1']);
    assert.ok(kept['stdout.log']! + kept['stdout.log.1']! <= MiB, `kept ${JSON.stringify(kept)}`);
    const written = 67108864 + 1 + Buffer.byteLength(numbered(1, 1000));
    assert.equal((await logBounds(file)).end, written, 'every byte counted');
    assert.equal((await readLog(file, await tailOffset(file, 1000))).trim(), numbered(1, 1000).trim());
  });

  // What is kept, and what is dropped, depends on how far the shipper is behind the writer: the first
  // test checks that deterministically. Here: order, and following.
  void test('a task writing fast: what is read back is in order, and the stream is followed across rotations', async (t) => {
    const logs = join(dir.path, 'b');
    await mkdir(logs);
    const file = join(logs, 'stdout.log');
    // 20000 lines are 108,894 bytes: rotated three times, and all of it kept.
    const limits = { maxBytes: 256 * 1024, maxFiles: 8 };
    const follower = followLog(t, file);
    // One write per line (a shell's echo): what a task does.
    const pipes = await startLogShipper({ stdoutPath: file, stderrPath: join(logs, 'stderr.log') }, limits);
    const child = spawn('sh', ['-c', 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); echo $i; done'], {
      stdio: ['ignore', pipes.stdout, 'ignore'],
    });
    pipes.close();
    await new Promise((resolve) => child.once('exit', resolve));
    await shipperGone(pipes);

    assert.ok(existsSync(`${file}.3`), 'rotated');
    // Rotation loses nothing and cuts no line apart.
    assert.equal(await readLog(file), numbered(1, 20000));
    const size = Object.values(await sizes(logs)).reduce((a, b) => a + b, 0);
    assert.ok(size <= limits.maxBytes, 'bounded');

    await waitFor(() => follower.text().endsWith('20000\n'), {
      description: 'the follower to reach the end',
    });
    await follower.end();
    const seenText = follower.text().split('\n').slice(0, -1);
    const bad = seenText.findIndex((l, i) => i > 0 && !(Number(l) > Number(seenText[i - 1])));
    if (bad >= 0) assert.fail(`followed out of order: ${JSON.stringify(seenText.slice(bad - 3, bad + 3))}`);
    assert.equal(Number(seenText[0]), 1, 'the follower saw the start');
    assert.equal(seenText.length, 20000, 'and every line');
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

  void test('removes what a task nested deeper than a path can name', async () => {
    await buildAllocDir(dir.path, 'deep', ['t']);
    // Relative steps from inside, as a task would: each is short, the whole path is not.
    const script = `const fs = require('node:fs');
      for (let i = 0; i < 25; i++) { fs.mkdirSync('${'d'.repeat(200)}'); process.chdir('${'d'.repeat(200)}'); }
      fs.writeFileSync('data', 'x');`;
    execFileSync(process.execPath, ['-e', script], { cwd: taskDirPaths(dir.path, 'deep', 't').dir });
    const old = new Date(Date.now() - 2 * 24 * 60 * 60 * 1000);
    for (const p of ['t/logs/stdout.log', 't/logs/stderr.log', 't/logs', 't', 'alloc', '.'])
      await utimes(join(dir.path, 'deep', p), old, old);
    const removed = await gcAllocDirs(dir.path, { retentionMs: 60_000, now: Date.now(), keep: () => false });
    assert.ok(removed.includes('deep'));
    assert.ok(!(await readdir(dir.path)).includes('deep'));
  });
});
