import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { watchDisconnect } from './disconnect.ts';

describe('--max-disconnect', () => {
  it('stops the tasks once per disconnection, after the limit, and again after a new contact', async () => {
    let now = 0;
    let last = 0;
    const reasons: string[] = [];
    const ac = new AbortController();
    const done = watchDisconnect(
      { maxMs: 5_000, lastContact: () => last, onExceeded: (r) => reasons.push(r), now: () => now },
      ac.signal,
      1,
    );
    const tick = () => new Promise((r) => setTimeout(r, 5));
    now = 4_000;
    await tick();
    assert.deepEqual(reasons, [], 'within the limit');
    now = 6_000;
    await tick();
    await tick();
    assert.equal(reasons.length, 1);
    assert.match(reasons[0]!, /no server reachable for 5s \(--max-disconnect\)/);
    // A server answered, then went away again.
    last = 7_000;
    now = 8_000;
    await tick();
    assert.equal(reasons.length, 1);
    now = 13_000;
    await tick();
    await tick();
    assert.equal(reasons.length, 2);
    ac.abort();
    await done;
  });
});
