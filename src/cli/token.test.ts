import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { UsageError } from './context.ts';
import { cliToken } from './token.ts';

test('the token comes from UNUM_TOKEN, else the named file, else unum up’s file in the data dir', () => {
  const dir = mkdtempSync(join(tmpdir(), 'unum-token-'));
  try {
    writeFileSync(join(dir, 'management-token'), 'unum-token-local\n');
    writeFileSync(join(dir, 'mine'), 'unum-token-named\n');
    assert.equal(cliToken({ UNUM_TOKEN: 'unum-token-env', UNUM_DATA_DIR: dir }), 'unum-token-env');
    assert.equal(cliToken({ UNUM_TOKEN_FILE: join(dir, 'mine'), UNUM_DATA_DIR: dir }), 'unum-token-named');
    assert.equal(cliToken({ UNUM_DATA_DIR: dir }), 'unum-token-local');
    assert.equal(cliToken({ UNUM_DATA_DIR: join(dir, 'nowhere') }), undefined, 'no unum up here: no token');
    assert.throws(
      () => cliToken({ UNUM_TOKEN_FILE: join(dir, 'missing') }),
      (err: unknown) =>
        err instanceof UsageError && /cannot read UNUM_TOKEN_FILE .*missing: ENOENT/.test(err.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
