/**
 * Joining, on test hosts: a server with TLS on h1, agents on h1 and h2 that joined with a join
 * token, and h3, a new machine. Joined agents run a job whose logs come back through the server over
 * mutual TLS; a wrong or revoked token, or a wrong CA hash, leaves the cluster as it was; the
 * agent's API answers only servers' certificates; the CLI reaches the server with UNUM_CACERT; a node
 * that joins again keeps its id.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { TlsFetcher } from '../../src/api/https.ts';
import { missingNetworkTools } from '../../src/testing/network.ts';
import { missingCgroups, missingTools } from '../../src/testing/tools.ts';
import { waitFor } from '../../src/testing/wait.ts';
import { UnumCluster } from './cluster.ts';

const skip = missingNetworkTools() ?? missingCgroups() ?? missingTools(['unshare', 'bwrap']) ?? false;
const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'unum.js');
const run = promisify(execFile);

describe('joining a cluster with TLS', { skip, timeout: 300_000 }, () => {
  let c: UnumCluster;
  let empty: string;
  before(async () => {
    c = await UnumCluster.start({ hosts: 3, agents: ['h1', 'h2'] });
    empty = mkdtempSync(join(tmpdir(), 'unum-cli-'));
  });
  after(() => {
    c?.down();
    if (empty) rmSync(empty, { recursive: true, force: true });
  });

  const joinedEvents = async () =>
    (await c.client().events({ limit: 1000 })).events.filter((e) => e.type === 'node-joined');
  const nodeNamed = async (name: string) => (await c.client().listNodes()).items.find((n) => n.name === name);

  test('agents that joined with a token run a job; its logs come through the server', async () => {
    const nodes = (await c.client().listNodes()).items;
    assert.deepEqual(nodes.map((n) => n.name).sort(), ['h1', 'h2']);
    for (const n of nodes) assert.match(n.address, /^https:\/\//, `${n.name} serves TLS`);
    await c.client().submitJob({
      job: 'hello',
      type: 'batch',
      groups: [
        {
          name: 'g',
          count: 2,
          tasks: [
            {
              name: 't',
              command: 'sh',
              args: ['-c', 'echo hello from $UNUM_NODE_ID'],
              resources: { cpu: 900, memory: 16 },
            },
          ],
        },
      ],
    });
    const done = await waitFor(
      async () => {
        const allocs = (await c.client().jobAllocations('hello')).items;
        return allocs.length === 2 && allocs.every((a) => a.clientStatus === 'complete') ? allocs : undefined;
      },
      { timeoutMs: 60_000, description: 'both instances of hello complete' },
    );
    for (const a of done) {
      let text = '';
      for await (const chunk of c.client().allocLogs(a.id, { task: 't' })) text += chunk;
      assert.equal(text, `hello from ${a.nodeId}\n`);
    }
  });

  test('a wrong or revoked token, or a wrong CA hash, is refused and registers nothing', async () => {
    const before = await joinedEvents();
    const attempt = (join: { token?: string; caHash?: string }) => c.hosts.run('h3', c.agentArgv('h3', join));

    const wrong = attempt({ token: `${c.joinToken.slice(0, -4)}AAAA` });
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.err, /join token is not known to the cluster/);

    const made = await c.client().createJoinToken({ ttl: '1h' });
    await c.client().revokeJoinToken(made.token.id);
    const revoked = attempt({ token: made.secret });
    assert.notEqual(revoked.code, 0);
    assert.match(revoked.err, /join token is not known to the cluster/);

    const pinned = attempt({ caHash: `sha256:${'0'.repeat(64)}` });
    assert.notEqual(pinned.code, 0);
    assert.match(pinned.err, /presented no CA certificate with hash sha256:0{64}/);

    assert.equal(await nodeNamed('h3'), undefined, 'no node h3');
    assert.deepEqual(await joinedEvents(), before, 'no join recorded');
  });

  test("the agent's API answers the servers only: not a client without a certificate, nor a node", async () => {
    const [a] = (await c.client().jobAllocations('hello')).items;
    assert.ok(a, 'an allocation of hello');
    const node = await c.client().getNode(a.nodeId);
    const other = node.name === 'h1' ? 'h2' : 'h1';
    const logs = `${node.address}/v1/agent/allocations/${a.id}/logs?task=t`;
    // The agent's certificate names its node id, not its address: the client checks that name.
    const ask = async (client: TlsFetcher) => {
      try {
        const res = await client.fetch(logs, { expectName: node.id });
        return { status: res.status, text: await res.text() };
      } finally {
        client.close();
      }
    };
    const anonymous = await ask(new TlsFetcher({ ca: c.ca }));
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.text, /no client certificate/);
    const dir = c.nodeTlsDir(other);
    const asNode = await ask(
      new TlsFetcher({
        ca: c.ca,
        cert: readFileSync(join(dir, 'node.pem'), 'utf8'),
        key: readFileSync(join(dir, 'node-key.pem'), 'utf8'),
      }),
    );
    assert.equal(asNode.status, 403);
    assert.match(asNode.text, /answers only the cluster's servers/);
    assert.ok(!anonymous.text.includes('hello') && !asNode.text.includes('hello'), 'no log line leaked');
  });

  test('the CLI reaches the server with UNUM_CACERT (nodes, join tokens), and says what to do without it', async () => {
    const env = {
      ...process.env,
      UNUM_ADDR: c.addr,
      UNUM_TOKEN: c.token,
      UNUM_DATA_DIR: empty,
      NO_COLOR: '1',
    };
    const ok = await run(process.execPath, [BIN, 'nodes', '--json'], {
      env: { ...env, UNUM_CACERT: c.caFile },
    });
    const names = (JSON.parse(ok.stdout) as { items: { name: string }[] }).items.map((n) => n.name).sort();
    assert.deepEqual(names, ['h1', 'h2']);
    // unum token: made with the join command to run on a new machine, listed, revoked.
    const made = await run(process.execPath, [BIN, 'token', 'create', '--ttl', '10m'], {
      env: { ...env, UNUM_CACERT: c.caFile },
    });
    const command = /unum agent --join (\S+) --token (unum-join-([0-9a-f]{8})\.\S+) --ca-hash (\S+)/.exec(
      made.stdout,
    );
    assert.ok(command, made.stdout);
    assert.deepEqual([command[1], command[4]], [c.addr, c.caHash]);
    const listed = await run(process.execPath, [BIN, 'token', 'list'], {
      env: { ...env, UNUM_CACERT: c.caFile },
    });
    assert.match(listed.stdout, new RegExp(`^${command[3]}\\s`, 'm'));
    assert.ok(!listed.stdout.includes(command[2]!), 'no secret listed');
    await run(process.execPath, [BIN, 'token', 'revoke', command[3]!], {
      env: { ...env, UNUM_CACERT: c.caFile },
    });
    assert.equal(
      (await c.client().joinTokens()).items.find((t) => t.id === command[3]),
      undefined,
    );
    const refused = await run(process.execPath, [BIN, 'nodes'], { env }).then(
      () => assert.fail('the CLI trusted a server whose CA it was not given'),
      (err: { code: number; stderr: string }) => err,
    );
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /does not trust .*UNUM_CACERT/);
  });

  test('a new machine joins; joining again keeps its node id; the same command restarts it', async () => {
    const first = await c.client().createJoinToken({ ttl: '1h' });
    c.joinToken = first.secret;
    c.startAgent('h3');
    const joined = await waitFor(
      async () => ((await nodeNamed('h3'))?.status === 'ready' ? nodeNamed('h3') : undefined),
      {
        timeoutMs: 60_000,
        description: 'h3 joined and ready',
      },
    );

    const registrations = async () =>
      (await c.client().events({ limit: 10_000 })).events.filter(
        (e) => e.type === 'node-reregistered' && e.nodeId === joined.id,
      ).length;

    // Its certificate lost: it joins again with another token, as the same node.
    c.killAgent('h3');
    rmSync(c.nodeTlsDir('h3'), { recursive: true, force: true });
    await c.client().revokeJoinToken(first.token.id);
    const second = await c.client().createJoinToken({ ttl: '1h' });
    c.joinToken = second.secret;
    const beforeJoin = await registrations();
    c.startAgent('h3');
    // Joined again, and registered since: its new certificate is on its disk.
    await waitFor(
      async () =>
        (await joinedEvents()).some((e) => e.nodeId === joined.id && /joined again/.test(e.message)) &&
        (await registrations()) > beforeJoin,
      { timeoutMs: 60_000, description: 'h3 joined again and registered' },
    );

    // Restarted with the same command after its token was revoked: it has its certificate, it does not join.
    await c.client().revokeJoinToken(second.token.id);
    const before = await registrations();
    c.killAgent('h3');
    c.startAgent('h3');
    await waitFor(async () => (await registrations()) > before, {
      timeoutMs: 60_000,
      description: 'h3 registered again after its restart',
    }).catch((err: Error) => {
      throw new Error(`${err.message}; its log:\n${c.logOf('h3', 'agent')}`);
    });
    const h3 = (await c.client().listNodes()).items.filter((n) => n.name === 'h3');
    assert.deepEqual(
      h3.map((n) => n.id),
      [joined.id],
      'one node h3, with its first id',
    );
  });
});
