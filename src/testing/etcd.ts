/**
 * Real etcd clusters on loopback for tests: `startEtcd({ members: 3 })` starts etcd processes with
 * free ports and fresh data directories (in /dev/shm when there is one: etcd fsyncs every commit,
 * and tests need speed, not durability), waits until the cluster has a leader, and gives
 * `etcd://…` URLs for the Store. A member can be killed (SIGKILL), restarted on its data
 * directory, paused (SIGSTOP) and resumed.
 *
 * Always cleaned up: `stop()` in the test's `after`, and, whatever happens to the test (a failed
 * assertion, an uncaught error), every process still running is killed and every directory removed
 * when the test process exits.
 *
 * If etcd is not installed, `startEtcd` fails at once naming the package (`etcd (etcd-server) is not
 * installed: apt-get install etcd-server`); `UNUM_TEST_MISSING=etcd` pretends it is missing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './net.ts';
import { findTool } from './tools.ts';
import { waitFor } from './wait.ts';

export const ETCD_MISSING = 'etcd (etcd-server) is not installed: apt-get install etcd-server';

/** The etcd binary; throws at once, naming the Debian package, when it is missing. */
export function requireEtcd(): string {
  const path = findTool('etcd');
  if (path === undefined) throw new Error(ETCD_MISSING);
  return path;
}

export interface StartEtcdOptions {
  /** 1 (default) or 3 members. */
  members?: number;
  /** etcd's --max-request-bytes (default 1.5 MiB). */
  maxRequestBytes?: number;
  /** The address clients reach the members on (default 127.0.0.1; test hosts reach their bridge's). */
  host?: string;
}

export interface EtcdMember {
  readonly name: string;
  /** `127.0.0.1:PORT`, the client address. */
  readonly endpoint: string;
  readonly dataDir: string;
  /** Whether the process is running (possibly paused). */
  readonly running: boolean;
  /** SIGKILL, and waits for the process to be gone. The data directory stays. */
  kill(): Promise<void>;
  /** Starts the member again on its data directory; waits until it answers /health. */
  start(): Promise<void>;
  /** SIGSTOP / SIGCONT: the member stops answering without closing its connections. */
  pause(): void;
  resume(): void;
  /** The last lines etcd wrote to stderr, for failure messages. */
  log(): string;
}

export interface EtcdCluster {
  readonly members: EtcdMember[];
  /** Every member's client address. */
  readonly endpoints: string[];
  /** `etcd://127.0.0.1:P1,127.0.0.1:P2,…` for `createStore`. */
  readonly url: string;
  /** A running member that is not the leader (for tests that kill one without an election). */
  follower(): Promise<EtcdMember>;
  /** Kills every member and removes the data directories. Idempotent. */
  stop(): Promise<void>;
}

/** Whether the member is the raft leader, from its status (etcd's JSON gateway). */
async function isLeader(member: EtcdMember): Promise<boolean> {
  const response = await fetch(`http://${member.endpoint}/v3/maintenance/status`, {
    method: 'POST',
    body: '{}',
    signal: AbortSignal.timeout(2000),
  });
  const status = (await response.json()) as { header?: { member_id?: string }; leader?: string };
  return status.leader !== undefined && status.leader === status.header?.member_id;
}

const live = new Set<Member>();
const dirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const member of live) member.killNow();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
}

function scratchRoot(): string {
  return existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
}

class Member implements EtcdMember {
  readonly name: string;
  readonly endpoint: string;
  readonly dataDir: string;
  private readonly args: string[];
  private readonly binary: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stderr: string[] = [];

  constructor(binary: string, name: string, endpoint: string, dataDir: string, args: string[]) {
    this.binary = binary;
    this.name = name;
    this.endpoint = endpoint;
    this.dataDir = dataDir;
    this.args = args;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Spawns the process; does not wait for it to be healthy. */
  spawn(): void {
    if (this.child !== undefined) return;
    const child = spawn(this.binary, this.args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    live.add(this);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      this.stderr.push(chunk);
      if (this.stderr.length > 50) this.stderr.splice(0, this.stderr.length - 50);
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', () => {
        if (this.child === child) this.child = undefined;
        live.delete(this);
        resolve();
      });
    });
  }

  async waitHealthy(timeoutMs = 20_000): Promise<void> {
    await waitFor(
      async () => {
        if (this.child === undefined) {
          throw new Error(`etcd member ${this.name} exited while starting:\n${this.log()}`);
        }
        const response = await fetch(`http://${this.endpoint}/health`, { signal: AbortSignal.timeout(1000) });
        const body = (await response.json()) as { health?: string };
        return body.health === 'true';
      },
      {
        timeoutMs,
        intervalMs: 20,
        description: `etcd member ${this.name} at ${this.endpoint} healthy`,
      },
    );
  }

  async start(): Promise<void> {
    this.spawn();
    await this.waitHealthy();
  }

  async kill(): Promise<void> {
    this.killNow();
    await this.exited;
  }

  killNow(): void {
    const child = this.child;
    if (child === undefined) return;
    try {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }

  /** SIGSTOP, and returns once every thread of the process has stopped (a request already being handled finishes first). */
  pause(): void {
    const pid = this.child?.pid;
    this.child?.kill('SIGSTOP');
    if (pid === undefined) return;
    const nap = new Int32Array(new SharedArrayBuffer(4));
    for (let i = 0; i < 200 && !allThreadsStopped(pid); i++) Atomics.wait(nap, 0, 0, 10);
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  log(): string {
    return this.stderr.join('').split('\n').slice(-20).join('\n');
  }
}

/** Whether every thread of `pid` is stopped (state T in /proc); true when it is gone. */
function allThreadsStopped(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).every((t) => {
      const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
    });
  } catch {
    return true;
  }
}

/** Starts an etcd cluster of `members` members on loopback; resolves once it has a leader. */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdCluster> {
  const binary = requireEtcd();
  installExitHook();
  const count = options.members ?? 1;
  const root = mkdtempSync(join(scratchRoot(), 'unum-etcd-'));
  dirs.add(root);
  const ports = await Promise.all(Array.from({ length: count * 2 }, () => freePort()));
  const names = Array.from({ length: count }, (_, i) => `m${i}`);
  const peer = (i: number): string => `http://127.0.0.1:${ports[count + i]}`;
  const initialCluster = names.map((name, i) => `${name}=${peer(i)}`).join(',');
  // Short raft timers: elections in a fraction of a second, on a loaded machine still stable.
  const timers =
    count === 1
      ? ['--heartbeat-interval=10', '--election-timeout=100']
      : ['--heartbeat-interval=50', '--election-timeout=500'];
  const members = names.map((name, i) => {
    const client = `${options.host ?? '127.0.0.1'}:${ports[i]}`;
    const dataDir = join(root, name);
    return new Member(binary, name, client, dataDir, [
      `--name=${name}`,
      `--data-dir=${dataDir}`,
      `--listen-client-urls=http://${client}`,
      `--advertise-client-urls=http://${client}`,
      `--listen-peer-urls=${peer(i)}`,
      `--initial-advertise-peer-urls=${peer(i)}`,
      `--initial-cluster=${initialCluster}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=${root}`,
      ...timers,
      ...(options.maxRequestBytes === undefined ? [] : [`--max-request-bytes=${options.maxRequestBytes}`]),
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
    ]);
  });
  let stopped = false;
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.endpoint),
    url: `etcd://${members.map((m) => m.endpoint).join(',')}`,
    async follower() {
      return waitFor(
        async () => {
          for (const member of members) {
            if (member.running && !(await isLeader(member))) return member;
          }
          return undefined;
        },
        { description: 'a running follower' },
      );
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.all(members.map((m) => m.kill()));
      rmSync(root, { recursive: true, force: true });
      dirs.delete(root);
    },
  };
  try {
    for (const member of members) member.spawn();
    await Promise.all(members.map((m) => m.waitHealthy()));
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/**
 * Fresh clusters one after another, the next one started while the current one is in use: for a
 * suite that wants a new etcd per test (revisions start at 0 only on an empty etcd). `take()` stops
 * the clusters handed out before; `close()` stops everything.
 */
export function etcdPool(options: StartEtcdOptions = {}): {
  take(): Promise<EtcdCluster>;
  close(): Promise<void>;
} {
  const handedOut: EtcdCluster[] = [];
  let next: Promise<EtcdCluster> | undefined;
  const spare = (): Promise<EtcdCluster> => {
    const started = startEtcd(options);
    started.catch(() => undefined);
    return started;
  };
  return {
    async take() {
      await Promise.all(handedOut.splice(0).map((c) => c.stop()));
      const cluster = await (next ?? spare());
      handedOut.push(cluster);
      next = spare();
      return cluster;
    },
    async close() {
      const pending = next;
      next = undefined;
      await Promise.all(handedOut.splice(0).map((c) => c.stop()));
      if (pending !== undefined)
        await pending.then(
          (c) => c.stop(),
          () => undefined,
        );
    },
  };
}
