import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createStore } from '../store/index.ts';
import { eventOp } from './events.ts';
import { prefixes } from './keys.ts';

test('10,000 events appended in one transaction, in the same millisecond, all get their own key', async () => {
  const store = await createStore('memory:');
  try {
    const now = Date.now();
    const ops = Array.from({ length: 10_000 }, (_, i) =>
      eventOp({ topic: 'allocation', type: 'placed', message: `instance ${i} placed` }, now),
    );
    assert.equal(new Set(ops.map((op) => op.key)).size, 10_000);
    const result = await store.txn({ success: ops });
    assert.equal(result.succeeded, true);
    const stored = await store.range({ prefix: prefixes.events }, { countOnly: true });
    assert.equal(stored.count, 10_000);
  } finally {
    await store.close();
  }
});
