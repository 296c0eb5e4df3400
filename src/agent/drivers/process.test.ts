import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { checkReachable } from './process.ts';
import { ExecError } from './types.ts';

const root = process.getuid?.() === 0;
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test(
  'a task directory under a private one is refused at once, naming it and what to do',
  { skip: root ? false : 'needs root: only root can own a directory another uid cannot enter' },
  async () => {
    const top = await mkdtemp(join(tmpdir(), 'unum-reach-'));
    dirs.push(top);
    const task = join(top, 'data', 'allocs', 'a1', 'web');
    await mkdir(task, { recursive: true });
    await chmod(top, 0o700);
    const nobody = { uid: 65534, gid: 65534 };
    await assert.rejects(checkReachable(task, nobody), (err: unknown) => {
      assert.ok(err instanceof ExecError);
      assert.equal(err.code, 'invalid');
      assert.equal(err.errno, 'EACCES');
      assert.ok(err.message.includes(`${top} is mode 700`), err.message);
      assert.match(err.message, /apt-get install bubblewrap/);
      assert.match(err.message, /--data-dir/);
      return true;
    });
    await checkReachable(task, { uid: 0, gid: 0 });
    await chmod(top, 0o711);
    await checkReachable(task, nobody);
  },
);
