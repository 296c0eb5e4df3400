/**
 * `npm run bench`: every benchmark, one after the other (they would disturb each other in
 * parallel on a small machine). Each prints its figures and writes bench/results/<name>.json.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const benches = [
  'store.ts',
  'etcd-store.ts',
  'latency.ts',
  'isolation.ts',
  'network.ts',
  'api-auth.ts',
  'heartbeats.ts',
  'node-loss.ts',
  'false-downs.ts',
  'failover.ts',
];
let failed = 0;
for (const b of benches) {
  console.log(`\n=== bench/${b} ===`);
  const r = spawnSync(process.execPath, [join(import.meta.dirname, b), ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  if (r.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;
