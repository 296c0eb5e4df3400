/**
 * Test fixture for sqlite-store.test.ts: writes keys `crash/<n>` = `value-<n>` from 8 concurrent
 * writers and prints `<revision> <key>` on stdout once each write is acknowledged, until it is killed
 * (the test sends SIGKILL) or has written `limit` keys.
 *
 * Usage: node src/store/sqlite/crash-writer.ts FILE [normal|full] [limit]
 */
import { SqliteStore, type SynchronousLevel } from './sqlite-store.ts';

const [path, synchronous = 'normal', limitArg = '1000000'] = process.argv.slice(2);
if (path === undefined) {
  process.stderr.write('usage: crash-writer.ts FILE [normal|full] [limit]\n');
  process.exit(2);
}
const limit = Number(limitArg);
// A parent that went away closes the pipe: stop instead of writing forever.
process.stdout.on('error', () => process.exit(0));

const store = new SqliteStore({ path, synchronous: synchronous as SynchronousLevel });
let next = 0;
await Promise.all(
  Array.from({ length: 8 }, async () => {
    while (next < limit) {
      const n = next++;
      const key = `crash/${n}`;
      const { revision } = await store.put(key, `value-${n}`);
      // Pipes are written synchronously on Linux: once this returns the parent can read the line.
      process.stdout.write(`${revision} ${key}\n`);
    }
  }),
);
await store.close();
