/**
 * Tasks on their own network, tried as a hostile tenant would on a real `unum up` as root: a task
 * binds the port numbers of another tenant's allocations (in its own namespace, which takes nothing
 * from them: the published port and the health check still reach the victim), and tries the host's
 * unum ports (server API, agent API) on every address it might use; it is refused everywhere. A group
 * that asks for the host's network is not placed where the operator has not allowed it.
 */
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UnumClient } from '../../src/api/client.ts';
import type { Allocation } from '../../src/core/types.ts';
import { upToken } from '../../src/testing/acl.ts';
import { freePort } from '../../src/testing/net.ts';
import { missingNetworkTools, removeTestNetwork, testNetwork } from '../../src/testing/network.ts';
import { missingTools } from '../../src/testing/tools.ts';
import { startUp } from '../../src/testing/unum-up.ts';
import { waitFor } from '../../src/testing/wait.ts';

const skip = missingNetworkTools() ?? missingTools(['python3', 'bwrap']) ?? false;

async function logsOf(client: UnumClient, alloc: Allocation, task: string): Promise<string> {
  const chunks: string[] = [];
  try {
    for await (const chunk of client.allocLogs(alloc.id, { task })) chunks.push(chunk);
  } catch {
    // not yet there
  }
  return chunks.join('');
}

function get(url: string): Promise<string> {
  return fetch(url, { signal: AbortSignal.timeout(5_000) }).then(
    async (r) => `${r.status} ${(await r.text()).trim()}`,
    (err: Error) => `error ${err.name}`,
  );
}

describe('tasks on their own network', { skip, timeout: 240_000 }, () => {
  const network = testNetwork();
  let dir: string;
  let port: number;
  let up: ChildProcess | undefined;
  let client: UnumClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'unum-net-'));
    port = await freePort();
    client = new UnumClient({ addr: `http://127.0.0.1:${port}`, token: upToken(dir) });
    up = await startUp({ port, dataDir: dir, client, network });
  });
  after(async () => {
    if (up && up.exitCode === null) {
      up.kill('SIGINT');
      await new Promise((r) => up!.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
    removeTestNetwork(network);
  });

  const runningAlloc = (job: string, namespace = 'default') =>
    waitFor(
      async () =>
        (await client.jobAllocations(job, { namespace })).items.find((a) => a.clientStatus === 'running'),
      { timeoutMs: 60_000, description: `${job} running` },
    );

  test("a squatter takes neither another tenant's port nor its health; the host's unum ports are closed to it", async () => {
    const serve = (text: string) => `echo ${text} > who && exec python3 -m http.server "$UNUM_PORT_HTTP"`;
    const service = (job: string, namespace: string, command: string) => ({
      job,
      namespace,
      groups: [
        {
          name: job,
          network: { ports: ['http'] },
          services: [{ name: job, port: 'http', check: { type: 'http', path: '/who', interval: '1s' } }],
          tasks: [{ name: 'web', command: 'sh', args: ['-c', command], resources: { cpu: 100, memory: 64 } }],
        },
      ],
    });
    await client.submitJob(service('victim', 'team-a', serve('victim')));
    await client.submitJob(service('silent', 'team-a', 'exec sleep 3600'));
    const victim = await runningAlloc('victim', 'team-a');
    const silent = await runningAlloc('silent', 'team-a');
    const victimPort = victim.resources.ports[0]!.value;
    const silentPort = silent.resources.ports[0]!.value;
    await waitFor(async () => (await get(`http://127.0.0.1:${victimPort}/who`)) === '200 victim', {
      timeoutMs: 30_000,
      description: 'the victim answering on its published port',
    });

    const node = (await client.listNodes()).items[0]!;
    const agentPort = Number(new URL(node.address).port);
    const hostIps = Object.values(networkInterfaces())
      .flat()
      .filter((i) => i !== undefined && i.family === 'IPv4' && !i.internal)
      .map((i) => i!.address)
      .filter((ip) => !ip.startsWith(network.subnet.split('.').slice(0, 3).join('.')));
    const gateway = network.subnet.replace(/\.0\/24$/, '.1');
    const targets = ['127.0.0.1', gateway, ...hostIps].flatMap((h) => [`${h}:${port}`, `${h}:${agentPort}`]);
    const script = `
import socket, threading, http.server, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b'squatter')
    def log_message(self, *a): pass
for p in (${victimPort}, ${silentPort}):
    s = http.server.HTTPServer(('0.0.0.0', p), H)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    print('BOUND', p, flush=True)
for t in ${JSON.stringify(targets)}:
    h, p = t.rsplit(':', 1)
    try:
        socket.create_connection((h, int(p)), timeout=3).close()
        print('REACHED', t, flush=True)
    except OSError as e:
        print('CLOSED', t, type(e).__name__, flush=True)
print('DONE', flush=True)
time.sleep(3600)
`;
    await client.submitJob({
      job: 'squatter',
      namespace: 'team-b',
      groups: [{ name: 'squat', tasks: [{ name: 'squat', command: 'python3', args: ['-c', script] }] }],
    });
    const squatter = await runningAlloc('squatter', 'team-b');
    const out = await waitFor(
      async () => {
        const text = await logsOf(client, squatter, 'squat');
        return text.includes('DONE') ? text : undefined;
      },
      { timeoutMs: 60_000, description: "the squatter's report" },
    );

    // It could bind the numbers (its namespace is its own)…
    assert.match(out, new RegExp(`BOUND ${victimPort}`));
    assert.match(out, new RegExp(`BOUND ${silentPort}`));
    // …but reached none of the host's unum ports, on any address.
    assert.doesNotMatch(out, /REACHED/, out);
    assert.equal(out.match(/CLOSED/g)?.length, targets.length, out);

    // The victim's published port still leads to the victim.
    assert.equal(await get(`http://127.0.0.1:${victimPort}/who`), '200 victim');
    // The silent service stays unhealthy: its checks go to its own address, where nothing listens.
    // (Three check intervals after the squatter bound its port.)
    await new Promise((r) => setTimeout(r, 3_500));
    const [silentNow] = (await client.jobAllocations('silent', { namespace: 'team-a' })).items.filter(
      (a) => a.id === silent.id,
    );
    assert.equal(silentNow?.healthy, false, JSON.stringify(silentNow));
    assert.match(await get(`http://127.0.0.1:${silentPort}/who`), /^error/);
  });

  test('a group that asks for the host network is not placed where the operator did not allow it', async () => {
    await client.submitJob({
      job: 'hostnet',
      groups: [
        { name: 'g', network: { mode: 'host' }, tasks: [{ name: 't', command: 'sleep', args: ['60'] }] },
      ],
    });
    const why = await waitFor(
      async () => {
        const evals = await client.jobEvaluations('hostnet');
        const blocked = evals.items.find((e) => e.failedGroups !== undefined);
        return blocked === undefined ? undefined : JSON.stringify(blocked.failedGroups);
      },
      { timeoutMs: 30_000, description: 'the placement failure' },
    );
    assert.match(why, /host network not allowed/);
    assert.equal((await client.jobAllocations('hostnet')).items.length, 0);
  });

  test('Ctrl-C of unum up stops the tasks and leaves no namespace, bridge or nftables table behind', async () => {
    assert.ok(existsSync(`/sys/class/net/${network.bridge}`), 'the bridge exists while unum runs');
    up!.kill('SIGINT');
    await new Promise((r) => (up!.exitCode !== null ? r(undefined) : up!.once('exit', r)));
    const left = existsSync('/run/netns')
      ? readdirSync('/run/netns').filter((n) => n.startsWith(`${network.bridge}-`))
      : [];
    assert.deepEqual(left, [], 'network namespaces left');
    assert.equal(existsSync(`/sys/class/net/${network.bridge}`), false, 'the bridge is left');
    const tables = spawnSync('nft', ['list', 'tables'], { encoding: 'utf8' }).stdout;
    assert.doesNotMatch(tables, new RegExp(`unum_${network.bridge}\\b`));
  });
});
