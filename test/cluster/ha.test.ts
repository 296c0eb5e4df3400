/**
 * Several servers on one etcd, on test hosts: the leading server killed with `kill -9` → another
 * leads, jobs keep being scheduled, none lost and none placed twice, and no node is taken for dead
 * (agents fail over to a live server; a new leader gives every node a full grace). The servers share
 * the cluster CA through the Store, and a follower hands beats on to the leader over TLS.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { UnumClient } from '../../src/api/client.ts';
import { missingNetworkTools } from '../../src/testing/network.ts';
import { findTool, missingCgroups, missingTools } from '../../src/testing/tools.ts';
import { ETCD_MISSING } from '../../src/testing/etcd.ts';
import { waitFor } from '../../src/testing/wait.ts';
import { UnumCluster, nodeDownsSince } from './cluster.ts';

const skip = missingNetworkTools() ?? missingCgroups() ?? missingTools(['unshare', 'bwrap']) ?? false;
const SERVERS = ['h1', 'h2', 'h3'];
const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'unum.js');
const run = promisify(execFile);

describe('several servers on etcd', { skip, timeout: 300_000 }, () => {
  let c: UnumCluster;
  before(async () => {
    if (findTool('etcd') === undefined) throw new Error(ETCD_MISSING);
    c = await UnumCluster.start({ hosts: 4, servers: SERVERS, etcd: { members: 3 } });
  });
  after(() => c?.down());

  const job = (id: string, count: number) => ({
    job: id,
    groups: [
      {
        name: 'g',
        count,
        tasks: [{ name: 't', command: 'sleep', args: ['3600'], resources: { cpu: 20, memory: 16 } }],
      },
    ],
  });
  const clientOf = (host: string) => new UnumClient({ addr: c.serverUrl(host), ca: c.ca, token: c.token });
  const leaderOf = async (hosts: string[]) => {
    for (const h of hosts) {
      const client = clientOf(h);
      try {
        if ((await client.status()).leader) return h;
      } catch {
        // down, or not answering yet
      } finally {
        client.close();
      }
    }
    return undefined;
  };
  const running = async (client: UnumClient, id: string) =>
    (await client.jobAllocations(id)).items.filter((a) => a.clientStatus === 'running');

  test('every server shares one CA and answers; one leads; a follower takes writes', async () => {
    const leader = await waitFor(() => leaderOf(SERVERS), { timeoutMs: 30_000, description: 'a leader' });
    const follower = SERVERS.find((h) => h !== leader)!;
    const client = clientOf(follower);
    try {
      await client.submitJob(job('before', 3));
      await waitFor(async () => (await running(client, 'before')).length === 3, {
        timeoutMs: 60_000,
        description: 'the job submitted to a follower running',
      });
      assert.equal((await client.listNodes()).items.filter((n) => n.status === 'ready').length, 4);
    } finally {
      client.close();
    }
  });

  test("a follower hands a node's beat on to the leader over TLS, with its own server certificate", async () => {
    const leader = await waitFor(() => leaderOf(SERVERS), { timeoutMs: 30_000, description: 'a leader' });
    const follower = SERVERS.find((h) => h !== leader)!;
    const dir = c.nodeTlsDir('h4');
    const asNode = new UnumClient({
      addr: c.serverUrl(follower),
      ca: c.ca,
      cert: readFileSync(join(dir, 'node.pem'), 'utf8'),
      key: readFileSync(join(dir, 'node-key.pem'), 'utf8'),
      token: () => undefined,
    });
    try {
      const answer = await asNode.heartbeat(await c.nodeId('h4'));
      assert.ok(answer.intervalMs > 0, JSON.stringify(answer));
      // Another node's beat with h4's certificate is refused, forwarded or not.
      await assert.rejects(asNode.heartbeat(await c.nodeId('h3')), /may not act for node/);
    } finally {
      asNode.close();
    }
  });

  let killed = '';
  test('kill -9 of the leader: another leads, jobs keep being scheduled, nothing lost or placed twice, no node down', async () => {
    const leader = await waitFor(() => leaderOf(SERVERS), { timeoutMs: 30_000, description: 'a leader' });
    const others = SERVERS.filter((h) => h !== leader);
    const client = clientOf(others[0]!);
    try {
      const events = (await client.events({ limit: 1 })).index;
      const allocsBefore = (await client.jobAllocations('before')).items.map((a) => a.id).sort();
      const t0 = performance.now();
      c.killServer(leader);
      killed = leader;
      const next = await waitFor(() => leaderOf(others), { timeoutMs: 30_000, description: 'a new leader' });
      console.log(`# leadership moved from ${leader} to ${next} in ${Math.round(performance.now() - t0)} ms`);
      await client.submitJob(job('after', 2));
      await waitFor(async () => (await running(client, 'after')).length === 2, {
        timeoutMs: 60_000,
        description: 'a job submitted after the failover running',
      });
      const jobs = new Set((await client.listJobs()).items.map((j) => j.job.id));
      assert.ok(jobs.has('before') && jobs.has('after'), `jobs: ${[...jobs].join(', ')}`);
      assert.deepEqual(
        (await client.jobAllocations('before')).items.map((a) => a.id).sort(),
        allocsBefore,
        'the running job was not placed again',
      );
      // The agents keep beating through the servers still up; the new term gave each a full grace.
      await new Promise((r) => setTimeout(r, 6_000));
      const downs = await nodeDownsSince(client, events);
      assert.deepEqual(downs, [], 'no node was taken for dead');
      assert.equal((await client.listNodes()).items.filter((n) => n.status === 'ready').length, 4);
    } finally {
      client.close();
    }
  });

  test('the CLI given every server finds a live one; status --servers lists those that answer and the leader', async () => {
    assert.ok(killed, 'runs after the failover');
    const addrs = [killed, ...SERVERS.filter((h) => h !== killed)].map((h) => c.serverUrl(h)).join(',');
    const env = {
      ...process.env,
      UNUM_ADDR: addrs,
      UNUM_CACERT: c.caFile,
      UNUM_TOKEN: c.token,
      NO_COLOR: '1',
    };
    const status = await waitFor(
      async () => {
        const { stdout } = await run(process.execPath, [BIN, 'status', '--servers', '--json'], { env });
        const s = JSON.parse(stdout) as {
          servers: { id: string; leader: boolean }[];
          leader?: string;
          store: { backend?: string };
        };
        // The killed server drops out once its record's lease ends.
        return s.servers.length === 2 && s.leader !== undefined ? s : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 500, description: 'two servers listed, one leading' },
    );
    assert.equal(status.store.backend, 'etcd');
    assert.equal(status.servers.filter((x) => x.leader).length, 1);
    assert.equal(status.servers.find((x) => x.leader)?.id, status.leader);
    const { stdout } = await run(process.execPath, [BIN, 'status', '--servers'], { env });
    assert.match(stdout, /leader/);
    assert.match(stdout, /Store: etcd, revision \d+/);
  });

  test('an agent joins through the next server when the first it is given is down', async () => {
    assert.ok(killed, 'runs after the failover');
    c.killAgent('h4');
    rmSync(c.nodeTlsDir('h4'), { recursive: true, force: true });
    const argv = c.agentArgv('h4');
    const i = argv.indexOf('--join');
    argv[i + 1] = [killed, ...SERVERS.filter((h) => h !== killed)].map((h) => c.serverUrl(h)).join(',');
    c.hosts.spawn('h4', argv, { stdio: 'ignore', env: { ...process.env, UNUM_TOKEN: '' } });
    await waitFor(() => existsSync(join(c.nodeTlsDir('h4'), 'node.pem')), {
      timeoutMs: 60_000,
      description: 'h4 joined again (its new certificate on disk)',
    });
    const client = clientOf(SERVERS.find((h) => h !== killed)!);
    try {
      await waitFor(
        async () => (await client.listNodes()).items.find((n) => n.name === 'h4')?.status === 'ready',
        {
          timeoutMs: 30_000,
          description: 'h4 ready',
        },
      );
    } finally {
      client.close();
    }
  });

  test('one etcd member of three killed: the cluster keeps working', async () => {
    const member = c.etcd!.members[0]!;
    await member.kill();
    const live = SERVERS.find((h) => h !== killed)!;
    const client = clientOf(live);
    try {
      // A write caught by etcd's own leader change may time out (and may or may not have landed):
      // the submission is sent again with the same idempotency key until acknowledged, and lands once.
      const key = `one-member-down-${Date.now()}`;
      const answer = await waitFor(
        () => client.submitJob(job('one-member-down', 1), key).catch(() => undefined),
        {
          timeoutMs: 60_000,
          description: 'the submission acknowledged',
        },
      );
      assert.equal(answer.job.version, 0, 'submitted once');
      assert.equal((await client.getJob('one-member-down')).job.version, 0);
      await waitFor(async () => (await running(client, 'one-member-down')).length === 1, {
        timeoutMs: 60_000,
        description: 'a job placed and running with one etcd member down',
      });
    } finally {
      client.close();
      await member.start();
    }
  });

  test('the leader paused past its lease: another leads; resumed, it is a follower and commits nothing of its old term', async () => {
    c.startServer(killed);
    const all = await waitFor(
      async () => {
        const client = clientOf(SERVERS[0] === killed ? SERVERS[1]! : SERVERS[0]!);
        try {
          const s = await client.servers();
          return s.servers.length === 3 && s.leader !== undefined ? s : undefined;
        } finally {
          client.close();
        }
      },
      { timeoutMs: 60_000, description: 'three servers again, one leading' },
    );
    const leaderHost = await waitFor(() => leaderOf(SERVERS), { description: 'the leader' });
    const others = SERVERS.filter((h) => h !== leaderHost);
    const eventsBefore = await (async () => {
      const client = clientOf(others[0]!);
      try {
        return (await client.events({ limit: 1 })).index;
      } finally {
        client.close();
      }
    })();
    const t0 = performance.now();
    const phase = (what: string) =>
      console.log(`# ${what} ${Math.round(performance.now() - t0)} ms after the pause`);
    c.signalServer(leaderHost, 'SIGSTOP');
    try {
      const next = await waitFor(() => leaderOf(others), {
        timeoutMs: 30_000,
        description: 'another leader',
      });
      phase(`${next} leads`);
      const client = clientOf(next);
      try {
        await client.submitJob(job('while-paused', 1));
        await waitFor(async () => (await running(client, 'while-paused')).length === 1, {
          timeoutMs: 60_000,
          description: 'a job placed by the new leader',
        });
      } finally {
        client.close();
      }
      phase('its job placed');
    } finally {
      c.signalServer(leaderHost, 'SIGCONT');
    }
    // Back, the old leader finds its place in the line gone: it steps down; one leader remains.
    await waitFor(
      async () => {
        const leaders: string[] = [];
        for (const h of SERVERS) {
          const client = clientOf(h);
          try {
            if ((await client.status()).leader) leaders.push(h);
          } catch {
            // not answering yet
          } finally {
            client.close();
          }
        }
        return leaders.length === 1 && leaders[0] !== leaderHost;
      },
      { timeoutMs: 30_000, description: 'exactly one leader, not the paused one' },
    );
    phase('resumed, the old leader is a follower');
    const client = clientOf(leaderHost);
    try {
      assert.equal((await running(client, 'while-paused')).length, 1, 'placed once');
      // The agents left the paused server for another within their grace: no node was taken for dead.
      const downs = await nodeDownsSince(client, eventsBefore);
      assert.deepEqual(downs, [], 'no node down while the leader was paused');
      assert.ok(all.servers.length === 3);
    } finally {
      client.close();
    }
  });
});
