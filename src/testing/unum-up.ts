/** `unum up` as its own process, as a user runs it, for tests that crash and restart it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { UnumClient } from '../api/client.ts';
import { waitFor } from './wait.ts';

export const UNUM_BIN = join(import.meta.dirname, '..', '..', 'bin', 'unum.js');

/**
 * Starts `unum up` on `port` with `dataDir` (and `args`, more flags) and resolves once its node is
 * ready (as `client` sees it).
 */
export async function startUp(o: {
  port: number;
  dataDir: string;
  client: UnumClient;
  args?: string[];
}): Promise<ChildProcess> {
  const up = spawn(
    process.execPath,
    [UNUM_BIN, 'up', '--addr', `127.0.0.1:${o.port}`, '--data-dir', o.dataDir, ...(o.args ?? [])],
    {
      stdio: 'ignore',
      env: { ...process.env, NO_COLOR: '1' },
    },
  );
  await waitFor(async () => (await o.client.listNodes()).items.some((n) => n.status === 'ready'), {
    timeoutMs: 30_000,
    intervalMs: 100,
    description: 'unum up ready',
  });
  return up;
}
