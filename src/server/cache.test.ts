import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { mock } from '../testing/mock.ts';
import { startServerCore, type ServerCore } from '../testing/server-core.ts';
import type { CacheChange } from './cache.ts';
import { keys } from './keys.ts';

describe('state cache', () => {
  let core: ServerCore;
  beforeEach(async () => {
    core = await startServerCore();
  });
  afterEach(() => core.close());

  test('follows the store: objects, indexes per job and node, liveness from liveness keys', async () => {
    const node = mock.node();
    const job = mock.job();
    const a = mock.alloc(job, node);
    await core.seed({ nodes: [node], jobs: [job], allocs: [a] });
    const rev = (await core.store.status()).revision;
    assert.equal(core.cache.index, rev);
    assert.equal(core.cache.job(job.namespace, job.id)?.id, job.id);
    assert.deepEqual(
      core.cache.allocsOnNode(node.id).map((x) => x.id),
      [a.id],
    );
    assert.equal(core.cache.indexOfJob(job.namespace, job.id), rev);
    assert.equal(core.cache.indexOfNodeAllocs(node.id), rev);
    assert.equal(core.cache.revisionOf(keys.alloc(a.id)), rev);
    assert.equal(core.cache.isAlive(node.id), false);
    assert.equal(core.cache.readyNodes().length, 0, 'a node without a heartbeat takes no work');
    await core.heartbeat(node);
    assert.equal(core.cache.isAlive(node.id), true);
    assert.equal(core.cache.readyNodes().length, 1);
    await core.silence(node);
    assert.equal(core.cache.isAlive(node.id), false);
  });

  test('listeners get each change with its previous value', async () => {
    const changes: CacheChange[] = [];
    const unsubscribe = core.cache.subscribe((c) => changes.push(...c));
    const node = mock.node();
    await core.seed({ nodes: [node] });
    await core.seed({ nodes: [{ ...node, drain: true }] });
    unsubscribe();
    await core.seed({ nodes: [{ ...node, drain: false }] });
    const nodeChanges = changes.filter((c) => c.kind === 'node');
    assert.equal(nodeChanges.length, 2, 'nothing after unsubscribe');
    const second = nodeChanges[1];
    assert.ok(second?.kind === 'node' && second.prev?.drain === false && second.node?.drain === true);
  });

  test('a wait for an index it never reaches times out with false, not silently true', async () => {
    const target = (await core.store.status()).revision + 5;
    assert.equal(await core.cache.waitForIndex(target, 20), false);
    await core.seed({ nodes: [mock.node()] });
    assert.equal(await core.cache.waitForIndex(target - 5, 20), true);
  });
});
