import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CompactedError, UnavailableError } from '../../core/errors.ts';
import { silentLogger } from '../../core/log.ts';
import { waitFor } from '../../testing/wait.ts';
import type { KeySelector, WatchEvent, WatchOptions } from '../types.ts';
import { selectorMatches, tombstone } from './keys.ts';
import { WatchHub, type HistoryReader, type RevisionEvents } from './watch-hub.ts';

/**
 * A history kept in an array, read at most `step` revisions at a time so that catching up takes
 * several steps. `commit` appends a revision and publishes it, as a backend does after its commit.
 */
class MemoryHistory implements HistoryReader {
  readonly revisions: RevisionEvents[] = [];
  compacted = 0;
  reads = 0;
  hub: WatchHub | undefined;
  /** Called after each read: a test acts between two catch-up steps. */
  afterRead: ((reads: number) => void) | undefined;
  private readonly step: number;

  constructor(step: number) {
    this.step = step;
  }

  currentRevision(): number {
    return this.revisions.length;
  }

  compactRevision(): number {
    return this.compacted;
  }

  readHistory(selector: KeySelector, from: number, to: number, withPrevKv: boolean) {
    this.reads++;
    const upTo = Math.min(to, from + this.step - 1);
    const events = this.revisions
      .slice(from - 1, upTo)
      .flatMap((r) => r.events)
      .filter((e) => selectorMatches(selector, e.kv.key))
      .map((e) => (withPrevKv || e.prevKv === undefined ? e : { type: e.type, kv: e.kv }));
    this.afterRead?.(this.reads);
    return { events, upTo };
  }

  /** One revision putting each of `keys` (a key starting with `-` is deleted instead). */
  commit(...keys: string[]): number {
    const revision = this.revisions.length + 1;
    const events: WatchEvent[] = keys.map((k) =>
      k.startsWith('-')
        ? { type: 'delete', kv: tombstone(k.slice(1), revision) }
        : {
            type: 'put',
            kv: {
              key: k,
              value: `${k}@${revision}`,
              createRevision: revision,
              modRevision: revision,
              version: 1,
              lease: 0,
            },
            prevKv: { key: k, value: 'before', createRevision: 1, modRevision: 1, version: 1, lease: 0 },
          },
    );
    const committed = { revision, events };
    this.revisions.push(committed);
    this.hub?.publish([committed]);
    return revision;
  }
}

function setup(step = 1000): { history: MemoryHistory; hub: WatchHub } {
  const history = new MemoryHistory(step);
  const hub = new WatchHub(history, silentLogger());
  history.hub = hub;
  return { history, hub };
}

interface Recorded {
  batches: WatchEvent[][];
  errors: Error[];
  /** `put k@3` per event. */
  seen(): string[];
}

function watch(hub: WatchHub, options: WatchOptions) {
  const recorded: Recorded = {
    batches: [],
    errors: [],
    seen: () => recorded.batches.flat().map((e) => `${e.type} ${e.kv.key}@${e.kv.modRevision}`),
  };
  const watcher = hub.watch(options, {
    onEvents: (events) => recorded.batches.push(events),
    onError: (err) => recorded.errors.push(err),
  });
  return { recorded, watcher };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

void describe('watch hub', () => {
  void test('catches up from history in steps, then goes live with no gap and no duplicate', async () => {
    const { history, hub } = setup(2);
    for (let i = 0; i < 7; i++) history.commit(`a/${i}`);
    const { recorded } = watch(hub, { prefix: 'a/', fromRevision: 3 });
    assert.deepEqual(recorded.batches, [], 'nothing from inside watch()');
    // Keep committing while it catches up: each step reads up to the revision current then.
    let commits = 0;
    while (hub.hasLiveWatches === false && commits < 50) {
      history.commit(`a/x${commits++}`);
      await turn();
    }
    assert.ok(history.reads > 2, `caught up in ${history.reads} steps`);
    history.commit('a/last');
    const last = history.currentRevision();
    await waitFor(() => recorded.seen().length === last - 2);
    const revisions = recorded.seen().map((s) => Number(s.split('@')[1]));
    assert.deepEqual(
      revisions,
      Array.from({ length: last - 2 }, (_, i) => i + 3),
    );
    assert.deepEqual(recorded.errors, []);
  });

  void test('delivers whole revisions, in order, filtered by key or prefix', async () => {
    const { history, hub } = setup(1);
    history.commit('p/a', 'q/a', 'p/b'); // 1
    history.commit('p/a'); // 2
    const prefix = watch(hub, { prefix: 'p/', fromRevision: 1 });
    const key = watch(hub, { key: 'p/a', fromRevision: 1 });
    await waitFor(() => hub.hasLiveWatches && prefix.recorded.seen().length === 3);
    history.commit('q/b', '-p/b', 'p/c'); // 3
    await waitFor(() => prefix.recorded.seen().length === 5 && key.recorded.seen().length === 2);
    assert.deepEqual(prefix.recorded.seen(), [
      'put p/a@1',
      'put p/b@1',
      'put p/a@2',
      'delete p/b@3',
      'put p/c@3',
    ]);
    assert.deepEqual(key.recorded.seen(), ['put p/a@1', 'put p/a@2']);
    for (const batch of prefix.recorded.batches) {
      const revision = batch[0]!.kv.modRevision;
      const all = history.revisions[revision - 1]!.events.filter((e) => e.kv.key.startsWith('p/'));
      assert.equal(
        batch.filter((e) => e.kv.modRevision === revision).length,
        all.length,
        `revision ${revision} is not split`,
      );
    }
  });

  void test('a live watch gets prevKv only when it asked for it', async () => {
    const { history, hub } = setup();
    const plain = watch(hub, { key: 'k' });
    const withPrev = watch(hub, { key: 'k', prevKv: true });
    history.commit('k');
    await waitFor(() => plain.recorded.seen().length === 1 && withPrev.recorded.seen().length === 1);
    assert.equal(plain.recorded.batches[0]![0]!.prevKv, undefined);
    assert.equal(withPrev.recorded.batches[0]![0]!.prevKv?.value, 'before');
  });

  void test('a watch from a compacted revision ends with CompactedError', async () => {
    const { history, hub } = setup();
    for (let i = 0; i < 5; i++) history.commit('k');
    history.compacted = 4;
    const old = watch(hub, { key: 'k', fromRevision: 3 });
    const ok = watch(hub, { key: 'k', fromRevision: 4 });
    await waitFor(() => old.recorded.errors.length > 0 && ok.recorded.seen().length === 2);
    const err = old.recorded.errors[0];
    assert.ok(err instanceof CompactedError, `got ${String(err)}`);
    assert.equal(err.details?.['compactRevision'], 4);
    assert.deepEqual(old.recorded.batches, []);
    assert.deepEqual(ok.recorded.seen(), ['put k@4', 'put k@5']);
    assert.equal(hub.size, 1, 'the ended watch is gone');
  });

  void test('compaction during catch-up ends the watch after the events already delivered', async () => {
    const { history, hub } = setup(2);
    for (let i = 0; i < 10; i++) history.commit('k');
    history.afterRead = (reads) => {
      if (reads === 2) history.compacted = 8;
    };
    const { recorded } = watch(hub, { key: 'k', fromRevision: 1 });
    await waitFor(() => recorded.errors.length > 0);
    assert.ok(recorded.errors[0] instanceof CompactedError);
    assert.deepEqual(recorded.seen(), ['put k@1', 'put k@2', 'put k@3', 'put k@4']);
    assert.equal(hub.hasLiveWatches, false);
  });

  void test('cancel stops delivery at once, while catching up or live, and is idempotent', async () => {
    const { history, hub } = setup(1);
    for (let i = 0; i < 20; i++) history.commit('k');
    history.afterRead = (reads) => {
      // Between two steps, as a caller reacting to the second batch would.
      if (reads === 2) queueMicrotask(() => catchingUp.watcher.cancel());
    };
    const catchingUp = watch(hub, { key: 'k', fromRevision: 1 });
    const live = watch(hub, { prefix: '' });
    await waitFor(() => history.reads >= 2);
    const seen = catchingUp.recorded.seen().length;
    history.commit('k');
    await waitFor(() => live.recorded.seen().length === 1);
    live.watcher.cancel();
    live.watcher.cancel();
    history.commit('k');
    for (let i = 0; i < 5; i++) await turn();
    assert.equal(catchingUp.recorded.seen().length, seen);
    assert.equal(seen, 2, 'no step after the cancel');
    assert.equal(history.reads, 2);
    assert.equal(live.recorded.seen().length, 1);
    assert.deepEqual([...catchingUp.recorded.errors, ...live.recorded.errors], []);
    assert.equal(hub.size, 0);
    assert.equal(hub.hasLiveWatches, false, 'a commit builds no events for cancelled watches');
  });

  void test('cancel right after a commit drops its undelivered events', async () => {
    const { history, hub } = setup();
    const { recorded, watcher } = watch(hub, { key: 'k' });
    history.commit('k');
    watcher.cancel();
    for (let i = 0; i < 3; i++) await turn();
    assert.deepEqual(recorded.batches, []);
  });

  void test('close ends every watch with the error, and later watches too, never from inside watch()', async () => {
    const { history, hub } = setup();
    history.commit('k');
    const live = watch(hub, { key: 'k' });
    const catchingUp = watch(hub, { key: 'k', fromRevision: 1 });
    hub.close(new UnavailableError('store is closed'));
    let inside = true;
    const late = watch(hub, { key: 'k' });
    inside = false;
    assert.equal(late.recorded.errors.length, 0, `not from inside watch() (inside: ${inside})`);
    await waitFor(() => [live, catchingUp, late].every((w) => w.recorded.errors.length === 1));
    for (const w of [live, catchingUp, late]) assert.ok(w.recorded.errors[0] instanceof UnavailableError);
    assert.equal(hub.size, 0);
  });

  void test('a listener that throws keeps its watch', async () => {
    const { history, hub } = setup();
    let calls = 0;
    hub.watch(
      { key: 'k' },
      {
        onEvents() {
          calls++;
          throw new Error('listener bug');
        },
      },
    );
    history.commit('k');
    await waitFor(() => calls === 1);
    history.commit('k');
    await waitFor(() => calls === 2);
  });
});
