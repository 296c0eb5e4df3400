import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { findTool, missingTool, missingTools, requireExecDriverTools, requireTool } from './tools.ts';

void describe('test tool requirements', () => {
  // A PATH with one fake program in it, and one that has none.
  const dir = mkdtempSync(join(tmpdir(), 'unum-tools-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const fake = join(dir, 'python3');
  writeFileSync(fake, '#!/bin/sh\n');
  chmodSync(fake, 0o755);
  writeFileSync(join(dir, 'bwrap'), 'not executable');
  const withFake = { env: { PATH: dir }, pathOnly: true };
  const empty = { env: { PATH: join(dir, 'nothing-here') }, pathOnly: true };

  void test('an installed program is found on PATH, by its absolute path', () => {
    assert.equal(findTool('python3', withFake), fake);
    assert.equal(requireTool('python3', withFake), fake);
    assert.equal(missingTool('python3', withFake), undefined);
  });

  void test('a missing program fails at once, naming the Debian package to install', () => {
    assert.equal(missingTool('python3', empty), 'python3 is not installed: apt-get install python3');
    assert.equal(
      missingTool('bwrap', empty),
      'bwrap (bubblewrap) is not installed: apt-get install bubblewrap',
    );
    assert.throws(() => requireTool('setpriv', empty), {
      message: 'setpriv (util-linux) is not installed: apt-get install util-linux',
    });
    assert.equal(missingTool('ps', empty), 'ps (procps) is not installed: apt-get install procps');
  });

  void test('a file that can not be run does not count as installed', () => {
    assert.equal(findTool('bwrap', withFake), undefined);
  });

  void test('UNUM_TEST_MISSING hides installed programs', () => {
    const env = { PATH: dir, UNUM_TEST_MISSING: 'bwrap, python3' };
    assert.equal(findTool('python3', { env }), undefined);
    assert.match(missingTool('python3', { env }) ?? '', /apt-get install python3$/);
    assert.throws(() => requireTool('bwrap', { env }), /apt-get install bubblewrap/);
  });

  void test('the first missing program of several is the reason', () => {
    assert.equal(missingTools(['python3', 'bwrap'], withFake), missingTool('bwrap', withFake));
    assert.equal(missingTools(['python3'], withFake), undefined);
  });

  void test('without pathOnly, the system directories are searched too (as the agent does)', () => {
    assert.match(findTool('sh', { env: { PATH: '' } }) ?? 'not found', /^(\/usr)?\/bin\/sh$/);
    assert.equal(findTool('sh', { env: { PATH: '' }, pathOnly: true }), undefined);
  });

  void test('as root, tests of the exec driver need setpriv; as another user nothing', () => {
    const saved = process.env['UNUM_TEST_MISSING'];
    process.env['UNUM_TEST_MISSING'] = 'setpriv';
    try {
      if (process.getuid?.() === 0)
        assert.throws(() => requireExecDriverTools(), {
          message: 'setpriv (util-linux) is not installed: apt-get install util-linux',
        });
      else assert.doesNotThrow(() => requireExecDriverTools());
    } finally {
      if (saved === undefined) delete process.env['UNUM_TEST_MISSING'];
      else process.env['UNUM_TEST_MISSING'] = saved;
    }
  });
});
