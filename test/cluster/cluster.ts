/**
 * A unum cluster on test hosts (./hosts.ts): `unum server` on some hosts, `unum agent` on others,
 * each with a data dir, a cgroup parent, a task uid range and a /run of its own, as on separate
 * machines. For tests and for `npm run cluster`.
 */
import type { ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { UnumClient } from '../../src/api/client.ts';
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
}

export class UnumCluster {
  readonly hosts: TestHosts;
  readonly dir: string;
  /** The management token (bootstrapped on the first server). */
  token = '';
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
      for (const h of opts.servers ?? ['h1']) c.startServer(h);
      const client = new UnumClient({ addr: c.addr });
      // Answering at all (401 before the bootstrap is an answer).
      await waitFor(
        () =>
          fetch(`${c.addr}/v1/jobs`).then(
            () => true,
            () => false,
          ),
        {
          timeoutMs: 30_000,
          description: 'the server answering',
        },
      );
      c.token = (await client.aclBootstrap()).secret;
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
    const first = this.opts.servers?.[0] ?? 'h1';
    return `http://${this.hosts.host(first).ip}:${SERVER_PORT}`;
  }

  client(token?: string): UnumClient {
    return new UnumClient({ addr: this.addr, token: token ?? this.token });
  }

  private dataDir(host: string, role: string): string {
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
        ...(this.opts.serverArgs ?? []),
      ],
      { stdio: ['ignore', 'ignore', this.logFile(host, 'server')], env: { ...process.env, NO_COLOR: '1' } },
    );
    this.procs.set(`${host}/server`, p);
    return p;
  }

  startAgent(host: string): ChildProcess {
    const h = this.hosts.host(host);
    const index = Number(host.slice(1));
    const uidBase = 300_000 + index * 10_000;
    const p = this.hosts.spawn(
      host,
      [
        process.execPath,
        BIN,
        'agent',
        '--servers',
        (this.opts.servers ?? ['h1']).map((s) => `http://${this.hosts.host(s).ip}:${SERVER_PORT}`).join(','),
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
      ],
      {
        stdio: ['ignore', 'ignore', this.logFile(host, 'agent')],
        env: { ...process.env, NO_COLOR: '1', UNUM_TOKEN: this.token },
      },
    );
    this.procs.set(`${host}/agent`, p);
    return p;
  }

  /** kill -9 of a host's server process alone (its agent and tasks go on). */
  killServer(host: string): void {
    const p = this.procs.get(`${host}/server`);
    // The wrapper execs nsenter, which execs node: the child's pid is the server's.
    if (p?.pid !== undefined) process.kill(p.pid, 'SIGKILL');
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
    rmSync(this.dir, { recursive: true, force: true });
  }
}
