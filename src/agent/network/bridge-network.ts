/**
 * Allocations on their own network (README.md here): each allocation gets a network namespace with
 * one interface, `eth0`, the far end of a veth pair whose near end is a port of the agent's bridge;
 * an address of the node's allocation subnet; a default route through the bridge; and its ports
 * published on the host's addresses by the agent's nftables table (./nft.ts).
 *
 *   host:  bridge unum0 172.26.64.1/20 ── veth unum0-7 ─┐
 *   alloc:                        netns unum0-7: eth0 172.26.64.7/20, lo, default via .1
 *
 * Making a namespace costs two `ip` processes; a few are kept ready (`poolSize`) so that an
 * allocation usually starts on one made earlier, in the background. Every namespace has a lease
 * file (`<dir>/<index>.json`: the allocation that holds it, its published ports), written before the
 * namespace is made and removed after it is deleted: a restarted agent finds what it made, keeps
 * what its running allocations hold and removes the rest (`reconcile`).
 */
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidError, UnavailableError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import {
  addressAt,
  allocationIndexes,
  gatewayOf,
  formatIPv4,
  overlaps,
  parseSubnet,
  type Subnet,
} from './cidr.ts';
import { ipBatch, nftApply, type NetTools } from './commands.ts';
import { hostPortsInUse } from './host-ports.ts';
import { deleteTableCommand, portsCommand, tableName, tableRuleset, type NftTable } from './nft.ts';

/** How long the pool waits after a claim before it is refilled. */
const REFILL_DELAY_MS = 100;

/** Where `ip netns` keeps its namespaces. */
export const NETNS_DIR = '/run/netns';

export interface BridgeNetworkOptions {
  /** The bridge's name: at most 9 characters (its ports are named `<bridge>-<index>`). */
  bridge: string;
  /** The allocation subnet, e.g. `172.26.64.0/20`. */
  subnet: string;
  /** Lease files (`<dataDir>/agent/network`). */
  dir: string;
  tools: NetTools;
  /** Namespaces kept ready (default 2; 0: each is made when an allocation starts). */
  poolSize?: number;
  logger: Logger;
}

/** What an allocation's tasks run in. */
export interface AllocNetwork {
  /** The allocation's address. */
  ip: string;
  gateway: string;
  /** The namespace's name and its file (what a task's process joins). */
  netns: string;
  netnsPath: string;
  /**
   * Publishes its ports (one nft run; the same promise on every call). Called once its tasks are
   * on their way: spawning nft blocks the agent's thread for a moment, which would otherwise delay
   * them. Rejects when the ports could not be published.
   */
  publish(): Promise<void>;
}

interface Lease {
  index: number;
  /** Absent while the namespace waits in the pool. */
  allocId?: string;
  ports: number[];
}

const BRIDGE_NAME = /^[a-z][a-z0-9]{0,8}$/;

export function checkBridgeName(name: string): void {
  if (!BRIDGE_NAME.test(name))
    throw new InvalidError(
      `bridge: expected 1 to 9 lowercase letters and digits, starting with a letter (e.g. unum0), got "${name}"`,
    );
}

export class BridgeNetwork {
  readonly subnet: Subnet;
  readonly table: NftTable;
  private readonly opts: BridgeNetworkOptions;
  private readonly logger: Logger;
  private readonly leases = new Map<number, Lease>();
  private readonly pool: number[] = [];
  /** Releases under way (teardown waits for them). */
  private readonly releasing = new Set<Promise<void>>();
  /** Held namespaces whose ports were not published (yet). */
  private readonly unpublished = new Set<number>();
  private filling: Promise<void> | undefined;
  private refill: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(opts: BridgeNetworkOptions) {
    checkBridgeName(opts.bridge);
    this.opts = opts;
    this.subnet = parseSubnet(opts.subnet, 'subnet');
    this.table = { name: tableName(opts.bridge), bridge: opts.bridge, subnet: this.subnet.cidr };
    this.logger = opts.logger.child({ component: 'network' });
  }

  get bridge(): string {
    return this.opts.bridge;
  }

  /**
   * Sets the host up (bridge, forwarding, the nftables table with the ports of allocations that are
   * still running) and takes over the namespaces an earlier agent process left. Throws with what to
   * do when the subnet overlaps a network of the host.
   */
  async init(): Promise<void> {
    await mkdir(this.opts.dir, { recursive: true, mode: 0o700 });
    await this.checkSubnetFree();
    await this.loadLeases();
    const gw = gatewayOf(this.subnet);
    // /proc/sys/net shows the caller's network namespace (a sysfs mounted elsewhere may not).
    const bridgeExists = existsSync(`/proc/sys/net/ipv4/conf/${this.opts.bridge}`);
    await ipBatch(this.opts.tools, [
      ...(bridgeExists ? [] : [`link add ${this.opts.bridge} type bridge`]),
      `addr replace ${gw}/${this.subnet.prefix} dev ${this.opts.bridge}`,
      `link set ${this.opts.bridge} up`,
    ]);
    await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
    // Lets connections to 127.0.0.1:<published port> from the host be sent on to an allocation.
    await writeFile(`/proc/sys/net/ipv4/conf/${this.opts.bridge}/route_localnet`, '1\n');
    const published = [...this.leases.values()]
      .filter((l) => l.allocId !== undefined && l.ports.length > 0)
      .map((l) => ({ ip: this.ipOf(l.index), ports: l.ports }));
    await nftApply(this.opts.tools, tableRuleset(this.table, published));
    this.fill();
  }

  /** The allocation's network: the one it holds already (a restored allocation), else a new one. */
  async claim(allocId: string, ports: readonly number[]): Promise<AllocNetwork> {
    if (this.closed) throw new UnavailableError('the agent is shutting down');
    const held = [...this.leases.values()].find((l) => l.allocId === allocId);
    if (held !== undefined) return { ...this.describe(held.index), publish: () => Promise.resolve() };
    const inUse = await hostPortsInUse(ports);
    if (inUse.length > 0)
      throw new UnavailableError(
        `port${inUse.length > 1 ? 's' : ''} ${inUse.join(', ')} ${inUse.length > 1 ? 'are' : 'is'} in use on this node by a program outside unum: not published (choose another static port)`,
      );
    let index = this.pool.shift();
    if (index === undefined) {
      index = this.reserve();
      await this.create(index);
    }
    const lease: Lease = { index, allocId, ports: [...ports] };
    this.leases.set(index, lease);
    try {
      // Before the ports are published: a restarted agent rebuilds its table from the leases.
      await this.writeLease(lease);
    } catch (err) {
      await this.destroy(index);
      throw err;
    }
    let published: Promise<void> | undefined;
    const at = index;
    this.unpublished.add(at);
    const publish = (): Promise<void> => {
      this.unpublished.delete(at);
      published ??= nftApply(
        this.opts.tools,
        portsCommand(this.table, { ip: this.ipOf(at), ports }, 'add'),
      ).then(
        // The allocation is started: the pool may be refilled now, for the next one.
        () => this.fill(),
        (err: unknown) => {
          this.fill();
          throw new UnavailableError(
            `could not publish the ports of the allocation: ${err instanceof Error ? err.message : String(err)}`,
            { cause: err },
          );
        },
      );
      return published;
    };
    this.fillLater();
    return { ...this.describe(index), publish };
  }

  /** Gives the allocation's network back: its ports unpublished, its namespace deleted. */
  release(allocId: string): Promise<void> {
    const p = this.releaseNow(allocId).finally(() => this.releasing.delete(p));
    this.releasing.add(p);
    return p;
  }

  private async releaseNow(allocId: string): Promise<void> {
    const lease = [...this.leases.values()].find((l) => l.allocId === allocId);
    if (lease === undefined) return;
    delete lease.allocId;
    // Ports never published (the tasks never got going) have nothing to remove.
    if (!this.unpublished.delete(lease.index))
      await nftApply(
        this.opts.tools,
        portsCommand(this.table, { ip: this.ipOf(lease.index), ports: lease.ports }, 'delete'),
      ).catch((err: unknown) =>
        this.logger.warn({ err, allocId }, 'could not unpublish the ports of an allocation'),
      );
    await this.destroy(lease.index);
  }

  /** After a restart: the networks of allocations not in `running` are released. */
  async reconcile(running: ReadonlySet<string>): Promise<void> {
    const stale = [...this.leases.values()].filter((l) => l.allocId !== undefined && !running.has(l.allocId));
    for (const l of stale) await this.release(l.allocId as string);
  }

  /** The networks held by allocations (allocation id → address). */
  held(): Map<string, string> {
    const out = new Map<string, string>();
    for (const l of this.leases.values()) if (l.allocId !== undefined) out.set(l.allocId, this.ipOf(l.index));
    return out;
  }

  /** Stops filling the pool. Namespaces stay: running allocations keep theirs, the pool is reused. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.refill);
    await this.filling;
  }

  /**
   * After close, when no allocation holds a network any more (`unum up` stopped its tasks): the
   * pool's namespaces, the nftables table and the bridge are removed, and the machine is as it was.
   * Returns false, changing nothing, while a network is held.
   */
  async teardown(): Promise<boolean> {
    await Promise.all(this.releasing);
    if ([...this.leases.values()].some((l) => l.allocId !== undefined)) return false;
    for (const index of [...this.leases.keys()]) await this.destroy(index);
    await nftApply(this.opts.tools, deleteTableCommand(this.table)).catch(() => undefined);
    await ipBatch(this.opts.tools, [`link del ${this.opts.bridge}`], { force: true }).catch(() => undefined);
    return true;
  }

  // --- internals --------------------------------------------------------------------------------

  private ipOf(index: number): string {
    return addressAt(this.subnet, index);
  }

  private nameOf(index: number): string {
    return `${this.opts.bridge}-${index}`;
  }

  private describe(index: number): Omit<AllocNetwork, 'publish'> {
    const netns = this.nameOf(index);
    return {
      ip: this.ipOf(index),
      gateway: gatewayOf(this.subnet),
      netns,
      netnsPath: join(NETNS_DIR, netns),
    };
  }

  /** The lowest free index, marked taken (in memory; its lease file follows). */
  private reserve(): number {
    const { first, last } = allocationIndexes(this.subnet);
    for (let i = first; i <= last; i++) {
      if (!this.leases.has(i)) {
        this.leases.set(i, { index: i, ports: [] });
        return i;
      }
    }
    throw new UnavailableError(
      `no address left in the allocation subnet ${this.subnet.cidr}: give the agent a larger one (--alloc-subnet)`,
    );
  }

  /** Makes the namespace of a reserved index; on failure the index is free again. */
  private async create(index: number): Promise<void> {
    const name = this.nameOf(index);
    const lease = this.leases.get(index) ?? { index, ports: [] };
    try {
      await this.writeLease(lease);
      await ipBatch(this.opts.tools, [
        `netns add ${name}`,
        `link add ${name} type veth peer name eth0 netns ${name}`,
        `link set ${name} master ${this.opts.bridge} up`,
      ]);
      await ipBatch(
        this.opts.tools,
        [
          `addr add ${this.ipOf(index)}/${this.subnet.prefix} dev eth0`,
          'link set lo up',
          'link set eth0 up',
          `route add default via ${gatewayOf(this.subnet)}`,
        ],
        { netns: name },
      );
    } catch (err) {
      await this.destroy(index);
      throw err;
    }
  }

  /** Deletes the namespace (its veth pair goes with it) and the lease. Never throws. */
  private async destroy(index: number): Promise<void> {
    const name = this.nameOf(index);
    await ipBatch(this.opts.tools, [`netns del ${name}`, `link del ${name}`], { force: true }).catch(
      () => undefined,
    );
    await rm(this.leasePath(index), { force: true }).catch(() => undefined);
    this.leases.delete(index);
    const at = this.pool.indexOf(index);
    if (at >= 0) this.pool.splice(at, 1);
  }

  /** Keeps `poolSize` namespaces ready, one at a time, in the background. */
  /**
   * Refills the pool once the allocation that took a namespace has started (its ports published,
   * `publish`), or REFILL_DELAY_MS after the claim at the latest: making a namespace spawns two
   * processes, which would compete with that start.
   */
  private fillLater(): void {
    clearTimeout(this.refill);
    this.refill = setTimeout(() => this.fill(), REFILL_DELAY_MS);
    this.refill.unref();
  }

  private fill(): void {
    const size = this.opts.poolSize ?? 2;
    if (this.filling !== undefined || this.closed || this.pool.length >= size) return;
    this.filling = (async () => {
      while (!this.closed && this.pool.length < size) {
        let index: number;
        try {
          index = this.reserve();
          await this.create(index);
        } catch (err) {
          this.logger.warn({ err }, 'could not make a network namespace ahead of time');
          return;
        }
        this.pool.push(index);
      }
    })().finally(() => (this.filling = undefined));
  }

  private leasePath(index: number): string {
    return join(this.opts.dir, `${index}.json`);
  }

  /** Written in place (a small file, no sync): it must name the allocation before its task starts. */
  private async writeLease(l: Lease): Promise<void> {
    const tmp = `${this.leasePath(l.index)}.tmp`;
    writeFileSync(tmp, JSON.stringify(l) + '\n', { mode: 0o600 });
    renameSync(tmp, this.leasePath(l.index));
    return Promise.resolve();
  }

  /**
   * Reads the lease files: a lease whose namespace is gone is dropped, a namespace of this bridge
   * without a lease (a crash between the two) is deleted, pool leases go back to the pool.
   */
  private async loadLeases(): Promise<void> {
    const names = await readdir(this.opts.dir).catch(() => [] as string[]);
    for (const file of names) {
      const m = /^(\d+)\.json$/.exec(file);
      if (m === null) {
        if (file.endsWith('.tmp')) await rm(join(this.opts.dir, file), { force: true });
        continue;
      }
      const index = Number(m[1]);
      let lease: Lease | undefined;
      try {
        const raw = JSON.parse(await readFile(join(this.opts.dir, file), 'utf8')) as Partial<Lease>;
        if (raw.index === index && Array.isArray(raw.ports))
          lease = {
            index,
            ports: raw.ports.filter((p) => Number.isInteger(p)),
            ...(typeof raw.allocId === 'string' ? { allocId: raw.allocId } : {}),
          };
      } catch {
        // unreadable: treated as absent
      }
      if (lease === undefined || !existsSync(join(NETNS_DIR, this.nameOf(index)))) {
        await this.destroy(index);
        continue;
      }
      this.leases.set(index, lease);
      if (lease.allocId === undefined) this.pool.push(index);
    }
    const prefix = `${this.opts.bridge}-`;
    const present = await readdir(NETNS_DIR).catch(() => [] as string[]);
    for (const ns of present) {
      if (!ns.startsWith(prefix)) continue;
      const index = Number(ns.slice(prefix.length));
      if (Number.isInteger(index) && !this.leases.has(index)) await this.destroy(index);
    }
  }

  /** Refuses a subnet that overlaps a route of the host on another interface. */
  private async checkSubnetFree(): Promise<void> {
    const table = await readFile('/proc/net/route', 'utf8').catch(() => '');
    for (const line of table.split('\n').slice(1)) {
      const [iface, dest, , , , , , mask] = line.trim().split(/\s+/);
      if (iface === undefined || dest === undefined || mask === undefined || iface === this.opts.bridge)
        continue;
      const base = swapHex(dest);
      const m = swapHex(mask);
      if (m === 0) continue; // the default route
      const prefix = 32 - Math.log2(2 ** 32 - m);
      if (!Number.isInteger(prefix)) continue;
      if (overlaps(this.subnet, { base, prefix }))
        throw new InvalidError(
          `the allocation subnet ${this.subnet.cidr} overlaps ${formatIPv4(base)}/${prefix} on ${iface}: choose another with --alloc-subnet`,
        );
    }
  }
}

/** /proc/net/route's little-endian hex address → a number. */
function swapHex(hex: string): number {
  const n = parseInt(hex, 16);
  return (((n & 0xff) << 24) | ((n & 0xff00) << 8) | ((n >>> 8) & 0xff00) | (n >>> 24)) >>> 0;
}
