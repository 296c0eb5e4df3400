/**
 * A task cannot exhaust the server's descriptors: a hostile task of a real `unum up` opens far more
 * connections to the API than it should hold. The server refuses what passes its per-source cap
 * (503, then closed), its own open descriptors stay bounded, and once the task is gone the API
 * answers as before. (Before, a task opened 19,990 connections and took the API down.)
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UnumClient } from '../../src/api/client.ts';
import { upToken } from '../../src/testing/acl.ts';
import { freePort } from '../../src/testing/net.ts';
import { missingTools } from '../../src/testing/tools.ts';
import { startUp } from '../../src/testing/unum-up.ts';
import { waitFor } from '../../src/testing/wait.ts';

const skip = missingTools(['python3']) ?? false;

describe('a task cannot exhaust the server', { skip, timeout: 180_000 }, () => {
  let dir: string;
  let port: number;
  let up: ChildProcess | undefined;
  let client: UnumClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'unum-conn-'));
    port = await freePort();
    client = new UnumClient({ addr: `http://127.0.0.1:${port}`, token: upToken(dir) });
    up = await startUp({ port, dataDir: dir, client });
  });
  after(async () => {
    if (up && up.exitCode === null) {
      up.kill('SIGTERM');
      await new Promise((r) => up!.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('connections past the cap are refused; the server stays within bounds and answers afterwards', async () => {
    // The task holds every connection it gets, counts the 503s, and exits after a while.
    const script = `
import socket, time
socks, failed = [], 0
for i in range(1500):
    try:
        socks.append(socket.create_connection(('127.0.0.1', ${port}), timeout=5))
    except OSError:
        failed += 1
time.sleep(3)
held = refused = 0
for s in socks:
    s.setblocking(False)
    try:
        data = s.recv(64)
        refused += 1
    except BlockingIOError:
        held += 1
    except OSError:
        refused += 1
print('HELD', held, 'REFUSED', refused, 'FAILED', failed, flush=True)
time.sleep(3)
`;
    const job = {
      job: 'hog',
      type: 'batch',
      groups: [
        {
          name: 'hog',
          tasks: [
            {
              name: 'hog',
              command: 'python3',
              args: ['-c', script],
              resources: { cpu: 100, memory: 128 },
            },
          ],
        },
      ],
    };
    await client.submitJob(job);
    const upPid = up!.pid!;
    let peakFds = 0;
    const out = await waitFor(
      async () => {
        peakFds = Math.max(peakFds, readdirSync(`/proc/${upPid}/fd`).length);
        const allocs = await client.jobAllocations('hog');
        const a = allocs.items[0];
        if (!a) return undefined;
        const text = await (async () => {
          const chunks: string[] = [];
          for await (const chunk of client.allocLogs(a.id, { task: 'hog' })) chunks.push(chunk);
          return chunks.join('');
        })().catch(() => '');
        return /HELD \d+/.test(text) ? text : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 200, description: "the hog's report" },
    );
    const [, held, refused] = /HELD (\d+) REFUSED (\d+)/.exec(out) ?? [];
    assert.ok(Number(held) <= 512, `the task held ${held} connections: at most the per-source cap`);
    assert.ok(Number(refused) > 0, 'connections past the cap were refused with 503');
    assert.ok(peakFds < 2000, `the server's descriptors stayed bounded (peak ${peakFds})`);
    // Once the task is done, everyone is served again.
    await waitFor(async () => (await client.jobAllocations('hog')).items[0]?.clientStatus === 'complete', {
      timeoutMs: 60_000,
      description: 'the hog to finish',
    });
    assert.ok((await client.listNodes()).items.length >= 1);
  });
});
