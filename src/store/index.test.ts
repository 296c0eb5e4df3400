import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, describe, test } from 'node:test';
import { InvalidError } from '../core/errors.ts';
import { SqliteStore, createStore, storeSchemes } from './index.ts';

const root = mkdtempSync(join(tmpdir(), 'unum-create-store-'));
after(() => rmSync(root, { recursive: true, force: true }));

void describe('createStore', () => {
  void test('sqlite: with an absolute path opens (and creates) that file, which keeps its data', async () => {
    const url = `sqlite:${join(root, 'nested', 'dir', 'state.db')}`;
    const store = await createStore(url);
    assert.equal(store.backend, 'sqlite');
    await store.put('k', 'v');
    await store.close();
    const again = await createStore(url, { synchronous: 'full' });
    assert.equal((await again.get('k'))?.value, 'v');
    await again.close();
  });

  void test('sqlite: with a relative path resolves it from the working directory', async () => {
    const path = relative(process.cwd(), join(root, 'relative.db'));
    assert.ok(!path.startsWith('/'));
    const store = await createStore(`sqlite:${path}`);
    await store.put('k', 'v');
    await store.close();
    const again = await createStore(`sqlite:${join(root, 'relative.db')}`);
    assert.equal((await again.get('k'))?.value, 'v');
    await again.close();
  });

  void test('sqlite:PATH?synchronous=full chooses the durability level', async () => {
    const store = await createStore(`sqlite:${join(root, 'full.db')}?synchronous=full`);
    assert.ok(store instanceof SqliteStore);
    assert.equal(store.synchronous, 'full');
    await store.close();
    const normal = await createStore(`sqlite:${join(root, 'full.db')}`);
    assert.equal((normal as SqliteStore).synchronous, 'normal');
    await normal.close();
    await assert.rejects(createStore(`sqlite:${join(root, 'full.db')}?synchronous=off`), InvalidError);
  });

  void test('memory: is a fresh empty store each time', async () => {
    const first = await createStore('memory:');
    assert.equal(first.backend, 'memory');
    await first.put('k', 'v');
    const second = await createStore('memory:');
    assert.equal(await second.get('k'), undefined);
    await first.close();
    await second.close();
  });

  void test('an unknown scheme is InvalidError naming the supported ones', async () => {
    for (const url of ['postgres://db/unum', '/var/lib/unum/state.db', '', 'toString:x']) {
      await assert.rejects(createStore(url), (err) => {
        assert.ok(err instanceof InvalidError);
        for (const scheme of storeSchemes) assert.match(err.message, new RegExp(scheme));
        return true;
      });
    }
  });

  void test('etcd:// opens the etcd backend (connecting lazily); a malformed etcd URL is InvalidError', async () => {
    const store = await createStore('etcd://127.0.0.1:2379,127.0.0.1:22379');
    assert.equal(store.backend, 'etcd');
    await store.close();
    await assert.rejects(createStore('etcd://'), InvalidError);
    await assert.rejects(createStore('etcd://host:2379?ca=/ca.pem'), /needs TLS: use etcds/);
  });

  void test('bad sqlite options are InvalidError', async () => {
    await assert.rejects(createStore('sqlite:'), InvalidError);
    await assert.rejects(
      createStore(`sqlite:${join(root, 'x.db')}`, { synchronous: 'off' as unknown as 'full' }),
      InvalidError,
    );
  });
});
