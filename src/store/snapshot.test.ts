import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidError } from '../core/errors.ts';
import { createStore } from './index.ts';
import { restoreSnapshot, snapshotLines } from './snapshot.ts';
import type { Store } from './types.ts';

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const l of it) out.push(l);
  return out;
}

async function* from(lines: string[]): AsyncGenerator<string> {
  yield* lines;
}

async function filled(): Promise<Store> {
  const s = await createStore('memory:');
  for (let i = 0; i < 1_234; i++) await s.put(`/unum/jobs/ns/j${String(i).padStart(4, '0')}`, `{"v":${i}}`);
  await s.put('/unum/big', 'x'.repeat(300_000));
  await s.put('/other/key', 'not in the snapshot');
  const lease = await s.grantLease(60);
  await s.put('/unum/leaders/1', 'a server', { lease: lease.id });
  return s;
}

test('a snapshot restores every key under its prefix, at one revision, leased keys left out', async () => {
  const source = await filled();
  const lines = await collect(snapshotLines(source, '/unum/'));
  // Written after the snapshot began: not in it.
  await source.put('/unum/jobs/ns/late', '{}');
  const header = JSON.parse(lines[0]!) as { revision: number; prefix: string };
  assert.equal(header.prefix, '/unum/');
  assert.deepEqual(JSON.parse(lines.at(-1)!), { end: true, keys: 1_235 });
  const target = await createStore('memory:');
  const progress: number[] = [];
  const r = await restoreSnapshot(target, from(lines), (n) => progress.push(n));
  assert.equal(r.keys, 1_235);
  assert.equal(progress.at(-1), 1_235);
  assert.ok(progress.length > 5, 'written in batches');
  const got = await target.range({ prefix: '' });
  assert.equal(got.count, 1_235);
  assert.equal((await target.get('/unum/jobs/ns/j0042'))?.value, '{"v":42}');
  assert.equal((await target.get('/unum/big'))?.value.length, 300_000);
  assert.equal(await target.get('/unum/leaders/1'), undefined, 'a leased key is left out');
  assert.equal(await target.get('/unum/jobs/ns/late'), undefined);
  await source.close();
  await target.close();
});

test('a snapshot cut short, miscounted, malformed or of another format restores nothing; nor into a store in use', async () => {
  const source = await filled();
  const lines = await collect(snapshotLines(source, '/unum/'));
  const cases: [string, string[], RegExp][] = [
    ['cut short', lines.slice(0, 500), /cut short; nothing restored/],
    ['miscounted', [...lines.slice(0, -2), lines.at(-1)!], /says 1235 keys but holds 1234/],
    ['not JSON', [lines[0]!, '{oops', ...lines.slice(1)], /line 2 is not JSON/],
    [
      'another format',
      [lines[0]!.replace('"unumSnapshot":1', '"unumSnapshot":9'), ...lines.slice(1)],
      /format 9/,
    ],
    ['not a snapshot', ['{"hello":1}'], /not a unum snapshot/],
    [
      'outside its prefix',
      [lines[0]!, '{"k":"/etc/passwd","v":"x"}', '{"end":true,"keys":1}'],
      /not under \/unum\//,
    ],
  ];
  for (const [what, bad, message] of cases) {
    const target = await createStore('memory:');
    await assert.rejects(restoreSnapshot(target, from(bad)), (err: unknown) => {
      assert.ok(err instanceof InvalidError, what);
      assert.match(err.message, message, what);
      return true;
    });
    assert.equal((await target.status()).revision, 0, `${what}: nothing written`);
    await target.close();
  }
  const used = await createStore('memory:');
  await used.put('/unum/jobs/ns/x', '{}');
  await assert.rejects(restoreSnapshot(used, from(lines)), /already has 1 keys under \/unum\//);
  assert.equal((await used.status()).revision, 1);
  await used.close();
  await source.close();
});
