import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../core/log.ts';
import { findTool, requireTool } from '../../testing/tools.ts';
import { missingNetworkTools, removeTestNetwork, testNetwork } from '../../testing/network.ts';
import { BridgeNetwork, checkBridgeName, type AllocNetwork } from './bridge-network.ts';
import { runTool } from './commands.ts';

const skip = missingNetworkTools();

/** A TCP echo of "hello" on `port`, run inside the namespace (python3: the host's tools, no Node needed). */
function serveIn(net: AllocNetwork, port: number): Promise<ChildProcess> {
  const py = `import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',${port}))\ns.listen(8)\nprint('ready',flush=True)\nwhile True:\n  c,a=s.accept()\n  c.sendall(('hello from '+a[0]).encode())\n  c.close()\n`;
  const child = spawn(
    requireTool('nsenter'),
    [`--net=${net.netnsPath}`, '--', requireTool('python3'), '-c', py],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return new Promise((resolve, reject) => {
    child.stdout?.once('data', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
}

/**
 * What a TCP connection to host:port reads, or the error's code. A SYN lost while a fresh namespace's
 * link settles is sent again after 1 s and 3 s: the timeout leaves room for both.
 */
function readFrom(host: string, port: number, netnsPath?: string): Promise<string> {
  const py = `import socket,sys\ntry:\n  s=socket.create_connection(('${host}',${port}),timeout=5)\n  print(s.recv(100).decode())\nexcept Exception as e:\n  print('error', type(e).__name__)\n`;
  const argv =
    netnsPath === undefined
      ? ['python3', '-c', py]
      : [requireTool('nsenter'), `--net=${netnsPath}`, '--', 'python3', '-c', py];
  return runTool(argv[0] as string, argv.slice(1)).then((s) => s.trim());
}

describe('bridge network (real namespaces, veth, nftables)', { skip }, () => {
  const n = skip === undefined ? testNetwork() : { bridge: 'x', subnet: '10.0.0.0/24' };
  let dir: string;
  let net: BridgeNetwork;
  const tools = { ip: findTool('ip') ?? 'ip', nft: findTool('nft') ?? 'nft' };
  const children: ChildProcess[] = [];
  let hostListener: Server;
  let hostPort = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'unum-net-'));
    net = new BridgeNetwork({
      bridge: n.bridge,
      subnet: n.subnet,
      dir,
      tools,
      poolSize: 1,
      logger: silentLogger(),
    });
    await net.init();
    hostListener = createServer((s) => s.end('host service'));
    await new Promise<void>((r) => hostListener.listen(0, '0.0.0.0', r));
    hostPort = (hostListener.address() as { port: number }).port;
  });
  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    hostListener?.close();
    await net?.close();
    removeTestNetwork(n);
    rmSync(dir, { recursive: true, force: true });
  });

  it('publishes an allocation port on the host, keeps the host out of reach, and releases it all', async () => {
    const port = 20000 + Math.floor(Math.random() * 10000);
    const a = await net.claim('alloc-a', [port]);
    await a.publish();
    assert.ok(existsSync(a.netnsPath));
    children.push(await serveIn(a, port));

    // From the host: through 127.0.0.1 (DNAT + route_localnet) and straight to the allocation.
    assert.match(await readFrom('127.0.0.1', port), /^hello from /);
    assert.match(await readFrom(a.ip, port), /^hello from /);

    // From another allocation: through the host's published port (hairpin NAT).
    const b = await net.claim('alloc-b', []);
    assert.notEqual(b.ip, a.ip);
    assert.match(await readFrom(a.gateway, port, b.netnsPath), /^hello from /);
    // …but not to a program of the host, neither on the bridge's address nor on 127.0.0.1 (its own).
    assert.match(await readFrom(a.gateway, hostPort, b.netnsPath), /^error ConnectionRefusedError/);
    assert.match(await readFrom('127.0.0.1', hostPort, b.netnsPath), /^error ConnectionRefusedError/);

    // A port a host program listens on is never published (it would take the host's connections).
    await assert.rejects(net.claim('alloc-c', [hostPort]), /in use on this node by a program outside unum/);
    assert.equal(net.held().has('alloc-c'), false);

    await net.release('alloc-a');
    assert.equal(existsSync(a.netnsPath), false);
    assert.match(await readFrom('127.0.0.1', port), /^error/);
    const table = await runTool(tools.nft, ['list', 'table', 'ip', net.table.name]);
    assert.doesNotMatch(table, new RegExp(`${port} :`));
  });

  it('a restarted agent keeps the networks of running allocations and removes the others', async () => {
    const port = 20000 + Math.floor(Math.random() * 10000);
    const kept = await net.claim('kept', [port]);
    await kept.publish();
    const gone = await net.claim('gone', []);
    children.push(await serveIn(kept, port));
    await net.close();

    const again = new BridgeNetwork({
      bridge: n.bridge,
      subnet: n.subnet,
      dir,
      tools,
      poolSize: 1,
      logger: silentLogger(),
    });
    await again.init();
    assert.deepEqual((await again.claim('kept', [port])).ip, kept.ip);
    await again.reconcile(new Set(['kept']));
    assert.equal(existsSync(gone.netnsPath), false);
    assert.equal(existsSync(kept.netnsPath), true);
    // The table was rebuilt with the running allocation's port in it.
    assert.match(await readFrom('127.0.0.1', port), /^hello from /);
    net = again;
    const leases = readdirSync(dir).filter((f) => f.endsWith('.json'));
    assert.equal(leases.length, 2, `one held lease and one in the pool: ${leases.join(', ')}`);
  });

  it('refuses a subnet that overlaps a network of the host, before changing anything', async () => {
    const other = testNetwork();
    const clash = new BridgeNetwork({
      bridge: other.bridge,
      subnet: n.subnet,
      dir: join(dir, 'x'),
      tools,
      logger: silentLogger(),
    });
    await assert.rejects(clash.init(), /overlaps .* choose another with --alloc-subnet/);
    assert.equal(existsSync(`/sys/class/net/${other.bridge}`), false);
  });
});

describe('bridge names', () => {
  it('are short enough for the interface names made from them', () => {
    checkBridgeName('unum0');
    assert.throws(() => checkBridgeName('toolongbridge'), /1 to 9 lowercase/);
    assert.throws(() => checkBridgeName('0abc'), /starting with a letter/);
  });
});
