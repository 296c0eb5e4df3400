/** The shared /dev of sandboxes (./sandbox-dev.ts): real tmpfs and devpts mounts, as root. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, readlinkSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { newId } from '../../../core/ids.ts';
import { requireTool } from '../../../testing/tools.ts';
import { ensureSandboxDev, sandboxDevReady } from './sandbox-dev.ts';

const root = process.getuid?.() === 0;
const skip = root ? false : 'needs root (mounts)';

void describe('shared sandbox /dev', () => {
  const base = `/run/unum-test-${newId().slice(0, 8)}`;
  const dir = join(base, 'sandbox-dev');

  after(async () => {
    if (!root) return;
    for (const m of [join(dir, 'pts'), dir])
      try {
        execFileSync('umount', [m], { stdio: 'ignore' });
      } catch {
        // not mounted
      }
    await rm(base, { recursive: true, force: true });
  });

  void test('is made once and whole, also by agents starting together', { skip }, async () => {
    requireTool('findmnt');
    assert.equal(sandboxDevReady(dir), false);
    const results = await Promise.all([ensureSandboxDev(dir), ensureSandboxDev(dir), ensureSandboxDev(dir)]);
    assert.deepEqual(results, [undefined, undefined, undefined]);
    assert.equal(sandboxDevReady(dir), true);
    // One tmpfs and one devpts, not three of each.
    const mounts = execFileSync('findmnt', ['-rn', '-o', 'TARGET,FSTYPE', '-R', dir], { encoding: 'utf8' });
    assert.deepEqual(mounts.trim().split('\n').sort(), [`${dir} tmpfs`, `${join(dir, 'pts')} devpts`]);
    for (const name of ['null', 'zero', 'full', 'random', 'urandom', 'tty']) {
      const st = statSync(join(dir, name));
      assert.ok(st.isCharacterDevice(), name);
      assert.equal(st.mode & 0o777, 0o666, name);
    }
    assert.equal(readlinkSync(join(dir, 'ptmx')), 'pts/ptmx');
    assert.ok(lstatSync(join(dir, 'fd')).isSymbolicLink());
    assert.equal(statSync(dir).mode & 0o777, 0o755, 'tasks can not change it');
  });

  void test('an unmounted part is noticed and made again', { skip }, async () => {
    execFileSync('umount', [join(dir, 'pts')]);
    assert.equal(sandboxDevReady(dir), false);
    assert.equal(await ensureSandboxDev(dir), undefined);
    assert.equal(sandboxDevReady(dir), true);
  });

  void test('a problem is said, not thrown', async () => {
    // Its parent is a file.
    const problem = await ensureSandboxDev('/etc/hostname/unum/dev');
    assert.equal(typeof problem, 'string');
  });
});
