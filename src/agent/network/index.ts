/**
 * The agent's allocation networks (README.md here): decides at start-up whether allocations get
 * their own network on this node, sets it up, and says in words for the operator when they do not.
 */
import { delimiter, join } from 'node:path';
import { HOST_NETWORK_ATTRIBUTE } from '../../core/job-spec.ts';
import type { Logger } from '../../core/log.ts';
import { findProgram } from '../drivers/exec/isolation.ts';
import type { AllocNetworks } from '../runner/network-hook.ts';
import { BridgeNetwork, checkBridgeName } from './bridge-network.ts';
import { parseSubnet } from './cidr.ts';

export { BridgeNetwork, checkBridgeName, type AllocNetwork } from './bridge-network.ts';
export { parseSubnet };

export const DEFAULT_BRIDGE = 'unum0';
/** 4,093 allocations per node; the range other orchestrators' bridges commonly leave free. */
export const DEFAULT_ALLOC_SUBNET = '172.26.64.0/20';

export interface NetworkOptions {
  /** Bridge name (default unum0). */
  bridge?: string;
  /** Allocation subnet of this node (default 172.26.64.0/20). */
  subnet?: string;
  /** `network: { mode: host }` may run here. */
  allowHost?: boolean;
  /** Namespaces kept ready (default 2). */
  poolSize?: number;
  /** `host`: no allocation networks (every task on the host's network). Default `bridge`. */
  mode?: 'bridge' | 'host';
}

/** What is wrong with the options, by field (for startAgent's InvalidError). */
export function networkOptionProblems(o: NetworkOptions | undefined): { path: string; message: string }[] {
  const out: { path: string; message: string }[] = [];
  const check = (path: string, fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      out.push({ path, message: err instanceof Error ? err.message : String(err) });
    }
  };
  if (o?.bridge !== undefined) check('network.bridge', () => checkBridgeName(o.bridge as string));
  if (o?.subnet !== undefined) check('network.subnet', () => parseSubnet(o.subnet as string, 'subnet'));
  if (o?.mode !== undefined && o.mode !== 'bridge' && o.mode !== 'host')
    out.push({ path: 'network.mode', message: `expected "bridge" or "host", got ${JSON.stringify(o.mode)}` });
  if (o?.poolSize !== undefined && (!Number.isInteger(o.poolSize) || o.poolSize < 0 || o.poolSize > 64))
    out.push({
      path: 'network.poolSize',
      message: `expected a whole number from 0 to 64, got ${o.poolSize}`,
    });
  return out;
}

const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export class AgentNetwork {
  private bridge: BridgeNetwork | undefined;
  /** What the operator should know, one line each (shown with the isolation warnings). */
  readonly warnings: string[] = [];
  private readonly opts: NetworkOptions;
  private nsenter = '';

  constructor(opts: NetworkOptions) {
    this.opts = opts;
  }

  /**
   * Sets up allocation networks when the node can have them (root, with isolation, iproute2,
   * nftables and nsenter). A subnet that overlaps the host's networks is an error (the operator
   * must choose); anything else missing leaves tasks on the host's network, with a warning.
   */
  async start(o: { root: boolean; isolated: boolean; dataDir: string; logger: Logger }): Promise<void> {
    if (this.opts.mode === 'host') {
      this.warnings.push(
        "allocation networks are turned off: tasks share the host's network and may bind any free port of it",
      );
      return;
    }
    if (!o.root || !o.isolated) {
      this.warnings.push(
        "tasks share the host's network: each allocation gets a network of its own only when unum runs as root with task isolation",
      );
      return;
    }
    const path = `${process.env['PATH'] ?? ''}${delimiter}${SYSTEM_PATH}`;
    const ip = findProgram('ip', path);
    const nft = findProgram('nft', path);
    const nsenter = findProgram('nsenter', path);
    const missing = [
      ...(ip === undefined ? ['ip (apt-get install iproute2)'] : []),
      ...(nft === undefined ? ['nft (apt-get install nftables)'] : []),
      ...(nsenter === undefined ? ['nsenter (apt-get install util-linux)'] : []),
    ];
    if (ip === undefined || nft === undefined || nsenter === undefined) {
      this.warnings.push(`tasks share the host's network: allocation networks need ${missing.join(', ')}`);
      return;
    }
    this.nsenter = nsenter;
    const bridge = new BridgeNetwork({
      bridge: this.opts.bridge ?? DEFAULT_BRIDGE,
      subnet: this.opts.subnet ?? DEFAULT_ALLOC_SUBNET,
      dir: join(o.dataDir, 'agent', 'network'),
      tools: { ip, nft },
      ...(this.opts.poolSize !== undefined ? { poolSize: this.opts.poolSize } : {}),
      logger: o.logger,
    });
    try {
      await bridge.init();
    } catch (err) {
      if (err instanceof Error && err.name === 'InvalidError') throw err;
      const why = err instanceof Error ? err.message : String(err);
      this.warnings.push(`tasks share the host's network: allocation networks could not be set up (${why})`);
      return;
    }
    this.bridge = bridge;
    o.logger.info(
      { bridge: bridge.bridge, subnet: bridge.subnet.cidr },
      'allocations get their own network namespace, on this bridge and subnet',
    );
  }

  /** What the allocation runners use; undefined when tasks share the host's network. */
  get forAllocs(): AllocNetworks | undefined {
    const bridge = this.bridge;
    if (bridge === undefined) return undefined;
    return {
      claim: (id, ports) => bridge.claim(id, ports),
      release: (id) => bridge.release(id),
      nsenter: this.nsenter,
      allowHost: this.opts.allowHost ?? false,
    };
  }

  /** For the node's attributes: `network.mode` (bridge|host) and `network.host` (allowed). */
  attributes(): Record<string, string> {
    return {
      'network.mode': this.bridge !== undefined ? 'bridge' : 'host',
      ...(this.opts.allowHost === true ? { [HOST_NETWORK_ATTRIBUTE]: 'allowed' } : {}),
    };
  }

  /** After the restore: networks of allocations that no longer run are given back. */
  async reconcile(running: ReadonlySet<string>): Promise<void> {
    await this.bridge?.reconcile(running);
  }

  /** `teardown`: the tasks were stopped too; what the networks made on the host goes as well. */
  async close(teardown = false): Promise<void> {
    await this.bridge?.close();
    if (teardown) await this.bridge?.teardown();
  }
}
