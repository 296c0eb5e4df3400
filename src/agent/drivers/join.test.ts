/**
 * Moving a sandbox into its cgroup (launch.ts joinCgroup): synchronous while moves are quick,
 * through the thread pool once one was slow. Its own file: the switch is per process.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { tempDir } from '../fixtures.ts';
import { joinCgroup } from './launch.ts';

let dir: { path: string; cleanup: () => Promise<void> };
before(async () => {
  dir = await tempDir('unum-join-');
});
after(() => dir.cleanup());

test('moves are synchronous until one is slow; then asynchronous, said once in the log', async () => {
  const lines: string[] = [];
  const logger = pino(
    {},
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    }),
  );
  // Stand-ins for cgroup.procs files (the kernel's are tested in sandbox.test.ts, with real cgroups).
  const procsFiles = ['memory', 'pids'].map((c) => join(dir.path, `${c}.procs`));
  await Promise.all(procsFiles.map((f) => writeFile(f, '')));
  const cgroup = { procsFiles };

  // No timing is asserted: a threshold no move reaches, then one every move passes.
  assert.equal(await joinCgroup(cgroup, 101, logger, Infinity), 'sync');
  assert.deepEqual(lines, [], 'a quick move says nothing');
  // A move that took longer than the threshold (here: any).
  assert.equal(await joinCgroup(cgroup, 102, logger, -1), 'sync');
  assert.equal(await joinCgroup(cgroup, 103, logger), 'async');
  assert.equal(await joinCgroup(cgroup, 104, logger), 'async');
  for (const f of procsFiles) assert.equal(await readFile(f, 'utf8'), '104\n');
  assert.equal(lines.length, 1);
  assert.match(JSON.parse(lines[0]!).msg as string, /slow on this kernel: done off the event loop/);
});

test('a move that fails is an error naming the file', async () => {
  const missing = { procsFiles: [join(dir.path, 'gone', 'cgroup.procs')] };
  await assert.rejects(
    joinCgroup(missing, 1, pino({ level: 'silent' })),
    /cannot write "1\\n" to .*cgroup\.procs/,
  );
});
