/**
 * A unum cluster on test hosts (./hosts.ts): `unum server` on some hosts, `unum agent` on others,
 * each with a data dir, a cgroup parent, a task uid range and a /run of its own, as on separate
 * machines. As in production: the servers serve TLS with the cluster CA the first one makes, and
 * agents join with a join token and the CA's hash. For tests and for `npm run cluster`.
 */
import type { ChildProcess } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { UnumClient } from '../../src/api/client.ts';
import { startEtcd, type EtcdCluster } from '../../src/testing/etcd.ts';
import { waitFor } from '../../src/testing/wait.ts';
import { TestHosts } from './hosts.ts';

const BIN = resolve(import.meta.dirname, '..', '..', 'bin', 'unum.js');
export const SERVER_PORT = 4646;

export interface ClusterOptions {
  hosts: number;
  /** Hosts that run a server (default: h1). */
  servers?: string[];
  /** Hosts that run an agent (default: every host). */
  agents?: string[];
  /** More flags for every agent / server, and for the agent of one host. */
  agentArgs?: string[];
  agentArgsFor?: Record<string, string[]>;
  serverArgs?: string[];
  /**
   * The servers' Store: an etcd on the hosts' bridge (every server on it, as an HA control plane;
   * `{ members: 3 }` for three members) instead of each server's own sqlite file.
   */
  etcd?: boolean | { members: number };
}

/** The messages of the node-down events after `index` (every page of them). */
export async function nodeDownsSince(client: UnumClient, index: number): Promise<string[]> {
  const downs: string[] = [];
  for (let at = index; ;) {
    const page = await client.events({ index: at, limit: 500 });
    if (page.events.length === 0) return downs;
    downs.push(...page.events.filter((e) => e.type === 'node-down').map((e) => e.message));
    at = page.index;
  }
}

export class UnumCluster {
  readonly hosts: TestHosts;
  readonly dir: string;
  /** The management token (bootstrapped on the first server). */
  token = '';
  /** The cluster CA (PEM), its file (clients' UNUM_CACERT) and hash (agents' --ca-hash). */
  ca = '';
  caHash = '';
  /** The join token agents started by start() and startAgent() join with. */
  joinToken = '';
  /** The servers' etcd (with `etcd: true`). */
  etcd: EtcdCluster | undefined;
  private readonly procs = new Map<string, ChildProcess>();
  private readonly opts: ClusterOptions;

  private constructor(hosts: TestHosts, dir: string, opts: ClusterOptions) {
    this.hosts = hosts;
    this.dir = dir;
    this.opts = opts;
  }

  /** Hosts, then servers (ACLs bootstrapped), then agents, each ready. Cleans up on failure. */
  static async start(opts: ClusterOptions): Promise<UnumCluster> {
    const hosts = TestHosts.up(opts.hosts);
    const dir = mkdtempSync(join(tmpdir(), `unum-${hosts.id}-`));
    // Tasks run as uids of their own and reach their directories by path.
    chmodSync(dir, 0o711);
    const c = new UnumCluster(hosts, dir, opts);
    // Removed also when the run is interrupted (Ctrl-C) or ends without calling down().
    process.once('exit', c.onExit);
    process.once('SIGINT', c.onSignal);
    process.once('SIGTERM', c.onSignal);
    try {
      if (opts.etcd)
        c.etcd = await startEtcd({
          host: hosts.gateway,
          members: typeof opts.etcd === 'object' ? opts.etcd.members : 1,
        });
      // The first server makes the CA; on a shared Store the others adopt it from there.
      for (const h of opts.servers ?? ['h1']) c.startServer(h);
      c.ca = await waitFor(() => (existsSync(c.caFile) ? readFileSync(c.caFile, 'utf8') : undefined), {
        timeoutMs: 30_000,
        description: `the cluster CA at ${c.caFile}`,
      });
      const anonymous = new UnumClient({ addr: c.addr, ca: c.ca, token: () => undefined });
      c.token = (
        await waitFor(() => anonymous.aclBootstrap(), {
          timeoutMs: 30_000,
          description: 'the server answering',
        })
      ).secret;
      anonymous.close();
      const made = await c.client().createJoinToken({ ttl: '2h', description: 'test cluster' });
      c.joinToken = made.secret;
      c.caHash = made.caHash;
      for (const h of opts.agents ?? hosts.hosts.map((x) => x.name)) c.startAgent(h);
      const want = (opts.agents ?? hosts.hosts).length;
      await waitFor(
        async () => (await c.client().listNodes()).items.filter((n) => n.status === 'ready').length === want,
        { timeoutMs: 60_000, description: `${want} nodes ready` },
      );
    } catch (err) {
      c.down();
      throw err;
    }
    return c;
  }

  /** The first server's API address. */
  get addr(): string {
    return this.serverUrl(this.opts.servers?.[0] ?? 'h1');
  }

  serverUrl(host: string): string {
    return `https://${this.hosts.host(host).ip}:${SERVER_PORT}`;
  }

  /** The CA file the first server keeps for clients (UNUM_CACERT). */
  get caFile(): string {
    return join(this.dir, this.opts.servers?.[0] ?? 'h1', 'server', 'ca.pem');
  }

  /** A client of the first server that trusts the cluster CA, with the management token (or `token`). */
  client(token?: string): UnumClient {
    return new UnumClient({ addr: this.addr, ca: this.ca, token: token ?? this.token });
  }

  /** Where a host's agent keeps its node certificate and key (join.ts). */
  nodeTlsDir(host: string): string {
    return join(this.dir, host, 'agent', 'agent', 'tls');
  }

  dataDir(host: string, role: string): string {
    const d = join(this.dir, host, role);
    mkdirSync(d, { recursive: true });
    return d;
  }

  /** A daemon's log (`<dir>/<host>/<role>.log`, appended across restarts): where to look when a test fails. */
  private logFile(host: string, role: string): number {
    mkdirSync(join(this.dir, host), { recursive: true });
    const fd = openSync(join(this.dir, host, `${role}.log`), 'a');
    // The child has its own copy once spawned.
    setImmediate(() => closeSync(fd));
    return fd;
  }

  startServer(host: string): ChildProcess {
    const h = this.hosts.host(host);
    const p = this.hosts.spawn(
      host,
      [
        process.execPath,
        BIN,
        'server',
        '--addr',
        `${h.ip}:${SERVER_PORT}`,
        '--data-dir',
        this.dataDir(host, 'server'),
        '--log-level',
        'warn',
        ...(this.etcd ? ['--store', this.etcd.url] : []),
        ...(this.opts.serverArgs ?? []),
      ],
      { stdio: ['ignore', 'ignore', this.logFile(host, 'server')], env: { ...process.env, NO_COLOR: '1' } },
    );
    this.procs.set(`${host}/server`, p);
    return p;
  }

  /** The command line of a host's agent: it joins with `join` (default: the cluster's join token and CA hash). */
  agentArgv(host: string, join: { token?: string; caHash?: string } = {}): string[] {
    const h = this.hosts.host(host);
    const index = Number(host.slice(1));
    const uidBase = 300_000 + index * 10_000;
    return [
      process.execPath,
      BIN,
      'agent',
      '--join',
      this.addr,
      '--token',
      join.token ?? this.joinToken,
      '--ca-hash',
      join.caHash ?? this.caHash,
      '--servers',
      (this.opts.servers ?? ['h1']).map((s) => this.serverUrl(s)).join(','),
      '--data-dir',
      this.dataDir(host, 'agent'),
      '--http-addr',
      `${h.ip}:0`,
      '--name',
      host,
      '--cgroup-parent',
      `${h.cgroup}/agent`,
      '--task-uid-range',
      `${uidBase}-${uidBase + 9_999}`,
      '--log-level',
      'warn',
      ...(this.opts.agentArgs ?? []),
      ...(this.opts.agentArgsFor?.[host] ?? []),
    ];
  }

  startAgent(host: string): ChildProcess {
    const p = this.hosts.spawn(host, this.agentArgv(host), {
      stdio: ['ignore', 'ignore', this.logFile(host, 'agent')],
      // No token of the operator's: the agent joins with the join token alone.
      env: { ...process.env, NO_COLOR: '1', UNUM_TOKEN: '' },
    });
    this.procs.set(`${host}/agent`, p);
    return p;
  }

  /** The end of a daemon's log, for the message of a failed wait. */
  logOf(host: string, role: string): string {
    try {
      return readFileSync(join(this.dir, host, `${role}.log`), 'utf8').slice(-2000);
    } catch {
      return '(no log)';
    }
  }

  /** kill -9 of a host's agent alone (its tasks go on). */
  killAgent(host: string): void {
    this.signalAgent(host, 'SIGKILL');
  }

  /** Sends `signal` to a host's agent process alone (SIGSTOP: a stalled agent whose tasks go on). */
  signalAgent(host: string, signal: NodeJS.Signals): void {
    const p = this.procs.get(`${host}/agent`);
    if (p?.pid !== undefined) process.kill(p.pid, signal);
  }

  /** kill -9 of a host's server process alone (its agent and tasks go on). */
  killServer(host: string): void {
    this.signalServer(host, 'SIGKILL');
  }

  /** Sends `signal` to a host's server process alone (SIGSTOP: a stalled server; SIGCONT resumes it). */
  signalServer(host: string, signal: NodeJS.Signals): void {
    // The wrapper execs nsenter, which execs node: the child's pid is the server's.
    const p = this.procs.get(`${host}/server`);
    if (p?.pid !== undefined) process.kill(p.pid, signal);
  }

  /** The node id of a host's agent (by its name). */
  async nodeId(host: string): Promise<string> {
    const n = (await this.client().listNodes()).items.find((x) => x.name === host);
    if (n === undefined) throw new Error(`no node named ${host}`);
    return n.id;
  }

  private readonly onExit = (): void => this.down();
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.down();
    process.kill(process.pid, signal);
  };

  /** Everything removed: processes, hosts, data. Never throws. Idempotent. */
  down(): void {
    process.off('exit', this.onExit);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    this.hosts.down();
    void this.etcd?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
