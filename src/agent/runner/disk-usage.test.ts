/** The disk walker (disk-usage.ts) on real trees: what it counts, and what it refuses to. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { link, mkdir, symlink, truncate, writeFile } from 'node:fs/promises';
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tempDir } from '../fixtures.ts';
import { measureDisk } from './disk-usage.ts';

const MiB = 1024 * 1024;
const blocksOf = (path: string): number => lstatSync(path).blocks * 512;

void describe('measureDisk', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let n = 0;
  /** A fresh directory for one test. */
  async function tree(): Promise<string> {
    const root = join(dir.path, `t${++n}`);
    await mkdir(root);
    return root;
  }
  before(async () => {
    dir = await tempDir('unum-disk-');
  });
  after(async () => {
    await dir.cleanup();
  });

  void test('counts the blocks of every file and directory, as du does', async () => {
    const root = await tree();
    await mkdir(join(root, 'a', 'b'), { recursive: true });
    await writeFile(join(root, 'a', 'one'), Buffer.alloc(MiB, 1));
    await writeFile(join(root, 'a', 'b', 'two'), Buffer.alloc(2 * MiB, 1));
    const usage = await measureDisk(root, { maxEntries: 1000 });
    assert.equal(usage.entries, 5);
    assert.equal(usage.truncated, undefined);
    assert.ok(usage.bytes >= 3 * MiB, `${usage.bytes}`);
    const du = Number(execFileSync('du', ['-s', '-B1', root], { encoding: 'utf8' }).split('\t')[0]);
    assert.equal(usage.bytes, du);
  });

  void test('a hard-linked file is counted once, however many names it has', async () => {
    const root = await tree();
    await writeFile(join(root, 'data'), Buffer.alloc(4 * MiB, 1));
    for (let i = 0; i < 5; i++) await link(join(root, 'data'), join(root, `name${i}`));
    const usage = await measureDisk(root, { maxEntries: 1000 });
    assert.equal(usage.entries, 7);
    assert.equal(usage.bytes, blocksOf(root) + blocksOf(join(root, 'data')));
    assert.ok(usage.bytes < 5 * MiB, `${usage.bytes}`);
  });

  void test('symlinks are counted as themselves, never followed', async () => {
    const root = await tree();
    const outside = await tree();
    await writeFile(join(outside, 'big'), Buffer.alloc(8 * MiB, 1));
    await symlink(outside, join(root, 'to-dir'));
    await symlink(join(outside, 'big'), join(root, 'to-file'));
    await symlink('/', join(root, 'to-root'));
    const usage = await measureDisk(root, { maxEntries: 1000 });
    assert.equal(usage.entries, 4);
    assert.ok(usage.bytes < MiB, `the 8 MiB behind the links were counted: ${usage.bytes}`);
    assert.equal(
      usage.bytes,
      [root, 'to-dir', 'to-file', 'to-root'].reduce(
        (s, p) => s + blocksOf(p === root ? p : join(root, p)),
        0,
      ),
    );
  });

  void test('a sparse file counts the blocks it holds, not its length', async () => {
    const root = await tree();
    await writeFile(join(root, 'sparse'), '');
    await truncate(join(root, 'sparse'), 10 * 1024 * MiB); // 10 GiB long, nothing written
    const usage = await measureDisk(root, { maxEntries: 1000 });
    assert.ok(usage.bytes < MiB, `${usage.bytes}`);
  });

  void test('the walk stops after maxEntries and says so', async () => {
    const root = await tree();
    await mkdir(join(root, 'many'));
    await Promise.all(Array.from({ length: 300 }, (_, i) => writeFile(join(root, 'many', `f${i}`), 'x')));
    const capped = await measureDisk(root, { maxEntries: 100, yieldEvery: 7 });
    assert.equal(capped.truncated, 'entries');
    assert.equal(capped.entries, 100);
    const whole = await measureDisk(root, { maxEntries: 1000 });
    assert.equal(whole.truncated, undefined);
    assert.equal(whole.entries, 302);
  });

  void test('excluded paths are neither counted nor entered', async () => {
    const root = await tree();
    await mkdir(join(root, 'task', 'logs'), { recursive: true });
    await writeFile(join(root, 'task', 'logs', 'stdout.log'), Buffer.alloc(4 * MiB, 1));
    const usage = await measureDisk(root, { maxEntries: 1000, exclude: [join(root, 'task', 'logs')] });
    assert.equal(usage.entries, 2);
    assert.ok(usage.bytes < MiB, `${usage.bytes}`);
  });

  void test('a name that is not UTF-8 hides nothing', async () => {
    const root = await tree();
    const name = Buffer.concat([Buffer.from(`${root}/`), Buffer.from([0x66, 0xff, 0xfe])]);
    await writeFile(name, Buffer.alloc(2 * MiB, 1));
    const usage = await measureDisk(root, { maxEntries: 1000 });
    assert.equal(usage.entries, 2);
    assert.ok(usage.bytes >= 2 * MiB, `${usage.bytes}`);
  });

  void test('a path too long to stat ends the walk, said so', async () => {
    const root = await tree();
    // Made with relative steps from inside, as a task would: each is short, the whole path is not.
    const script = `const fs = require('node:fs');
      for (let i = 0; i < 25; i++) { fs.mkdirSync('${'d'.repeat(200)}'); process.chdir('${'d'.repeat(200)}'); }
      fs.writeFileSync('hidden', Buffer.alloc(1 << 20, 1));`;
    execFileSync(process.execPath, ['-e', script], { cwd: root });
    const usage = await measureDisk(root, { maxEntries: 1000 });
    assert.equal(usage.truncated, 'path-length');
  });

  void test('nothing on another file system is counted', async (t) => {
    // Needs a mount: root, and a tmpfs of our own.
    if (process.getuid?.() !== 0) return t.skip('needs root to mount a tmpfs');
    const root = await tree();
    const mnt = join(root, 'mnt');
    await mkdir(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mnt]);
    } catch {
      return t.skip('could not mount a tmpfs');
    }
    try {
      await writeFile(join(mnt, 'elsewhere'), Buffer.alloc(8 * MiB, 1));
      const usage = await measureDisk(root, { maxEntries: 1000 });
      assert.equal(usage.entries, 2, 'the mount point is looked at, not entered');
      assert.equal(usage.bytes, blocksOf(root));
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  void test('a missing root takes nothing', async () => {
    assert.deepEqual(await measureDisk(join(dir.path, 'nope'), { maxEntries: 10 }), { bytes: 0, entries: 0 });
  });

  void test('an aborted walk stops at its next yield', async () => {
    const root = await tree();
    await Promise.all(Array.from({ length: 50 }, (_, i) => writeFile(join(root, `f${i}`), 'x')));
    const abort = new AbortController();
    abort.abort();
    const usage = await measureDisk(root, { maxEntries: 1000, yieldEvery: 10, signal: abort.signal });
    assert.equal(usage.truncated, 'aborted');
    assert.equal(usage.entries, 11);
  });
});
