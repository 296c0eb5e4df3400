/**
 * Test hosts: N separate machines on one kernel, for tests and by hand (`npm run cluster`).
 *
 *   root namespace: bridge uc<id> 10.A.B.1/24 (the test runner reaches the hosts through it)
 *     ├─ veth uc<id>h1 ── netns uc<id>-h1: eth0 10.A.B.11/24, its own mount namespace (/run its own),
 *     ├─ veth uc<id>h2 ── netns uc<id>-h2: eth0 10.A.B.12/24   its own cgroup (unum-hosts/<id>/h2)
 *     └─ …
 *
 * Every process of a host runs in its network and mount namespaces and in its cgroup (pids and
 * freezer on cgroup v1, the unified tree on v2); its agent's task cgroups go under that cgroup
 * (`--cgroup-parent`). So a host can be killed (every process in its cgroup, tasks included),
 * paused (frozen) and resumed, partitioned (nftables inside its namespace drops what crosses eth0)
 * and healed. `down()` removes everything; `sweep()` removes what an interrupted run left (by
 * name prefix), so nothing stays behind: namespaces, veths, the bridge, cgroups, mounts, processes.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Where the hosts' mount namespaces are kept (a private bind mount, so that they can be pinned). */
const MNT_DIR = '/run/unum-hosts';
const CGROUP_ROOT = '/sys/fs/cgroup';
const CGROUP_PREFIX = 'unum-hosts';
const V1_HIERARCHIES = ['pids', 'freezer'] as const;

export interface TestHost {
  /** h1, h2, … */
  name: string;
  ip: string;
  /** The network namespace's name (`ip netns`) and file. */
  netns: string;
  netnsPath: string;
  /** The file that pins its mount namespace. */
  mntPath: string;
  /** Its cgroup, relative to each hierarchy's root. */
  cgroup: string;
}

function sh(
  cmd: string,
  args: readonly string[],
  input?: string,
): { code: number; out: string; err: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, timeout: 30_000 });
  return { code: r.status ?? 1, out: r.stdout ?? '', err: r.stderr ?? '' };
}

function must(cmd: string, args: readonly string[], input?: string): string {
  const r = sh(cmd, args, input);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.err.trim() || r.out.trim()}`);
  return r.out;
}

const cgroupV2 = (): boolean => existsSync(join(CGROUP_ROOT, 'cgroup.controllers'));

/** Every hierarchy directory of a cgroup path that exists (v1: each controller mount; v2: one). */
function cgroupDirs(rel: string): string[] {
  if (cgroupV2()) return [join(CGROUP_ROOT, rel)];
  let mounts: string[] = [];
  try {
    mounts = readdirSync(CGROUP_ROOT).map((m) => join(CGROUP_ROOT, m));
  } catch {
    // none
  }
  return mounts.map((m) => join(m, rel)).filter((d) => existsSync(d));
}

/** Pids of every process in a cgroup and its descendants. */
function cgroupPids(dir: string): number[] {
  const out: number[] = [];
  const walk = (d: string) => {
    try {
      for (const l of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (l) out.push(Number(l));
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    } catch {
      // gone meanwhile
    }
  };
  walk(dir);
  return out;
}

/** Removes a cgroup tree, deepest first (only empty cgroups can be removed). */
function removeCgroupTree(dir: string): void {
  try {
    for (const e of readdirSync(dir, { withFileTypes: true }))
      if (e.isDirectory()) removeCgroupTree(join(dir, e.name));
    rmdirSync(dir);
  } catch {
    // busy or gone
  }
}

export class TestHosts {
  readonly id: string;
  readonly hosts: TestHost[] = [];
  readonly bridge: string;
  readonly subnet: string;
  private readonly children = new Set<ChildProcess>();

  /** What `attach` needs to act on these hosts from another process (`npm run cluster`). */
  state(): { id: string; subnet: string; hosts: TestHost[] } {
    return { id: this.id, subnet: this.subnet, hosts: this.hosts };
  }

  /** The hosts another process made (their state()): kill, pause, partition, heal, down. */
  static attach(state: { id: string; subnet: string; hosts: TestHost[] }): TestHosts {
    const t = new TestHosts(state.id, state.subnet.replace(/\.0\/24$/, ''));
    t.hosts.push(...state.hosts);
    return t;
  }

  private constructor(id: string, subnetPrefix: string) {
    this.id = id;
    this.bridge = id;
    this.subnet = `${subnetPrefix}.0/24`;
  }

  get gateway(): string {
    return this.subnet.replace(/\.0\/24$/, '.1');
  }

  host(name: string): TestHost {
    const h = this.hosts.find((x) => x.name === name);
    if (h === undefined)
      throw new Error(`no host ${name} (hosts: ${this.hosts.map((x) => x.name).join(', ')})`);
    return h;
  }

  /** Makes `count` hosts. On failure, what was made is removed before the error is thrown. */
  static up(count: number, id = `uc${randomInt(0x10000).toString(16).padStart(4, '0')}`): TestHosts {
    const prefix = `10.${150 + randomInt(50)}.${randomInt(256)}`;
    const t = new TestHosts(id, prefix);
    try {
      t.setUp(count);
    } catch (err) {
      t.down();
      throw err;
    }
    return t;
  }

  private setUp(count: number): void {
    // A private bind mount of the directory that pins the mount namespaces (a namespace can be
    // pinned only on a mount that does not propagate).
    mkdirSync(MNT_DIR, { recursive: true });
    if (
      !readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .some((l) => l.split(' ')[4] === MNT_DIR)
    ) {
      must('mount', ['--bind', MNT_DIR, MNT_DIR]);
      must('mount', ['--make-private', MNT_DIR]);
    }
    must(
      'ip',
      ['-batch', '-'],
      `link add ${this.bridge} type bridge\naddr add ${this.gateway}/24 dev ${this.bridge}\nlink set ${this.bridge} up\n`,
    );
    for (let i = 1; i <= count; i++) {
      const name = `h${i}`;
      const netns = `${this.id}-${name}`;
      const ip = this.subnet.replace(/\.0\/24$/, `.${10 + i}`);
      const host: TestHost = {
        name,
        ip,
        netns,
        netnsPath: `/run/netns/${netns}`,
        mntPath: join(MNT_DIR, `${netns}.mnt`),
        cgroup: `${CGROUP_PREFIX}/${this.id}/${name}`,
      };
      this.hosts.push(host);
      const veth = `${this.id}${name}`;
      must(
        'ip',
        ['-batch', '-'],
        `netns add ${netns}\nlink add ${veth} type veth peer name eth0 netns ${netns}\nlink set ${veth} master ${this.bridge} up\n`,
      );
      must(
        'ip',
        ['-n', netns, '-batch', '-'],
        `addr add ${ip}/24 dev eth0\nlink set eth0 up\nlink set lo up\nroute add default via ${this.gateway}\n`,
      );
      // Its own mount namespace, pinned, with a /run of its own.
      writeFileSync(host.mntPath, '');
      must('nsenter', [
        `--net=${host.netnsPath}`,
        '--',
        'unshare',
        `--mount=${host.mntPath}`,
        '--propagation',
        'private',
        '--',
        'mount',
        '-t',
        'tmpfs',
        '-o',
        'mode=0755',
        `${netns}-run`,
        '/run',
      ]);
      for (const dir of this.hostCgroupDirs(host)) mkdirSync(dir, { recursive: true });
    }
  }

  private hostCgroupDirs(h: TestHost): string[] {
    if (cgroupV2()) return [join(CGROUP_ROOT, h.cgroup)];
    return V1_HIERARCHIES.filter((c) => existsSync(join(CGROUP_ROOT, c))).map((c) =>
      join(CGROUP_ROOT, c, h.cgroup),
    );
  }

  /**
   * The command line that runs `argv` on the host: its cgroup joined first, then its network and
   * mount namespaces (cwd kept).
   */
  private wrap(h: TestHost, argv: readonly string[], cwd: string): string[] {
    const joins = this.hostCgroupDirs(h)
      .map((d) => `echo $$ > ${d}/cgroup.procs`)
      .join(' && ');
    return [
      '/bin/sh',
      '-c',
      `${joins} && exec nsenter --net=${h.netnsPath} --mount=${h.mntPath} --wd=${cwd} -- "$@"`,
      'sh',
      ...argv,
    ];
  }

  /** Starts `argv` on host `name` (its process is killed by `kill`, `down`). */
  spawn(name: string, argv: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    const h = this.host(name);
    const [cmd, ...args] = this.wrap(h, argv, typeof opts.cwd === 'string' ? opts.cwd : process.cwd());
    const child = spawn(cmd as string, args, { stdio: 'ignore', ...opts });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Runs `argv` on host `name` to completion. */
  run(name: string, argv: readonly string[], input?: string): { code: number; out: string; err: string } {
    const [cmd, ...args] = this.wrap(this.host(name), argv, process.cwd());
    return sh(cmd as string, args, input);
  }

  /** Every process of the host (its daemons and their tasks). */
  pids(name: string): number[] {
    const h = this.host(name);
    const dirs = cgroupDirs(h.cgroup);
    return [...new Set(dirs.flatMap(cgroupPids))];
  }

  /**
   * Kills every process of the host, tasks included, as a power cut would. A process in the middle
   * of a disk write dies when the write is done: on a busy machine that takes seconds.
   */
  kill(name: string): void {
    // Thawed first: a frozen process does not die until it is thawed.
    this.resume(name);
    for (let round = 0; round < 300; round++) {
      const pids = this.pids(name);
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      spawnSync('sleep', ['0.05']);
    }
    throw new Error(`host ${name} still has processes: ${this.pids(name).join(', ')}`);
  }

  /** Freezes every process of the host (a stalled machine: nothing runs, nothing answers). */
  pause(name: string): void {
    this.setFrozen(this.host(name), true);
  }

  resume(name: string): void {
    this.setFrozen(this.host(name), false);
  }

  /**
   * Freezes or thaws the host's cgroup. Thawing also thaws every cgroup below that froze itself (an
   * agent freezes a task's cgroup while it kills it: killed in between, it leaves it frozen, and
   * nothing frozen dies).
   */
  private setFrozen(h: TestHost, frozen: boolean): void {
    const v2 = cgroupV2();
    const [file, on, off] = v2 ? ['cgroup.freeze', '1', '0'] : ['freezer.state', 'FROZEN', 'THAWED'];
    const top = v2 ? join(CGROUP_ROOT, h.cgroup) : join(CGROUP_ROOT, 'freezer', h.cgroup);
    const write = (dir: string) => {
      try {
        if (existsSync(join(dir, file))) writeFileSync(join(dir, file), frozen ? on : off);
      } catch {
        // gone meanwhile
      }
    };
    write(top);
    if (frozen) return;
    const walk = (dir: string) => {
      let entries: string[] = [];
      try {
        entries = readdirSync(dir, { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => e.name);
      } catch {
        return;
      }
      for (const e of entries) {
        write(join(dir, e));
        walk(join(dir, e));
      }
    };
    walk(top);
  }

  /** Drops everything that crosses the host's link, both ways (its own loopback keeps working). */
  partition(name: string): void {
    const h = this.host(name);
    must(
      'nsenter',
      [`--net=${h.netnsPath}`, '--', 'nft', '-f', '-'],
      [
        'table inet unum_partition {}',
        'delete table inet unum_partition',
        'table inet unum_partition {',
        '  chain incoming { type filter hook input priority -300; policy accept; iifname "eth0" drop; }',
        '  chain outgoing { type filter hook output priority -300; policy accept; oifname "eth0" drop; }',
        '  chain forwarded { type filter hook forward priority -300; policy accept; iifname "eth0" drop; oifname "eth0" drop; }',
        '}',
        '',
      ].join('\n'),
    );
  }

  /** Ends a partition of `name` (of every host without a name). */
  heal(name?: string): void {
    for (const h of name === undefined ? this.hosts : [this.host(name)])
      sh('nsenter', [`--net=${h.netnsPath}`, '--', 'nft', 'delete', 'table', 'inet', 'unum_partition']);
  }

  /** Removes everything: processes, mounts, namespaces, links, cgroups. Never throws. */
  down(): void {
    for (const c of this.children) c.kill('SIGKILL');
    for (const h of this.hosts) {
      try {
        this.kill(h.name);
      } catch {
        // what is left is swept below
      }
    }
    TestHosts.sweep(this.id);
  }

  /**
   * Removes what hosts of cluster `id` (of every test cluster without one) left: processes in their
   * cgroups, pinned mount namespaces, network namespaces, veths, the bridge, cgroups.
   */
  static sweep(id?: string): void {
    const match = (n: string) => (id === undefined ? /^uc[0-9a-f]{4}/.test(n) : n.startsWith(id));
    // Processes first: in every host cgroup of the cluster(s).
    for (const base of cgroupDirs(CGROUP_PREFIX)) {
      let clusters: string[] = [];
      try {
        clusters = readdirSync(base).filter(match);
      } catch {
        // none
      }
      for (const c of clusters) {
        for (let round = 0; round < 50; round++) {
          const pids = cgroupPids(join(base, c));
          if (pids.length === 0) break;
          const freezer = join(base, c, 'freezer.state');
          if (existsSync(freezer)) writeFileSync(freezer, 'THAWED');
          for (const pid of pids) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // gone
            }
          }
          spawnSync('sleep', ['0.05']);
        }
      }
    }
    let pinned: string[] = [];
    try {
      pinned = readdirSync(MNT_DIR).filter(match);
    } catch {
      // none
    }
    for (const f of pinned) {
      sh('umount', ['-l', join(MNT_DIR, f)]);
      rmSync(join(MNT_DIR, f), { force: true });
    }
    let netns: string[] = [];
    try {
      netns = readdirSync('/run/netns').filter(match);
    } catch {
      // none
    }
    for (const n of netns) sh('ip', ['netns', 'del', n]);
    const links = sh('ip', ['-o', 'link', 'show']).out.split('\n');
    for (const l of links) {
      const name = /^\d+:\s+([^:@]+)/.exec(l)?.[1];
      if (name !== undefined && match(name)) sh('ip', ['link', 'del', name]);
    }
    for (const base of cgroupDirs(CGROUP_PREFIX)) {
      let clusters: string[] = [];
      try {
        clusters = readdirSync(base).filter(match);
      } catch {
        // none
      }
      for (const c of clusters) removeCgroupTree(join(base, c));
      try {
        rmdirSync(base); // when no other cluster is left in it
      } catch {
        // in use
      }
    }
  }
}
