/**
 * The allocation's network (../network/README.md): an allocation hook that takes its network
 * namespace before any task starts and gives it back once every task is dead, and a task hook that
 * puts exec tasks into it. raw_exec tasks stay on the host's network (that driver isolates nothing).
 *
 *   network.mode bridge   its own namespace and address, ports published on the node (as root);
 *                         on a node without allocation networks (rootless) the host's network
 *   network.mode host     the node's network, only where the operator allows it
 */
import type { Allocation } from '../../core/types.ts';
import type { AllocNetwork } from '../network/bridge-network.ts';
import type { AllocHook, AllocHookContext, TaskHook } from './hooks.ts';

/** What the agent offers allocations: absent on a node where they share the host's network. */
export interface AllocNetworks {
  claim(allocId: string, ports: readonly number[]): Promise<AllocNetwork>;
  release(allocId: string): Promise<void>;
  /** nsenter's path: how a task's wrapper joins the namespace. */
  readonly nsenter: string;
  /** Whether `network: { mode: host }` may run here (--allow-host-network). */
  readonly allowHost: boolean;
}

export class NetworkHook implements AllocHook {
  readonly name = 'network';
  private net: AllocNetwork | undefined;
  private readonly alloc: Allocation;
  private readonly networks: AllocNetworks | undefined;

  constructor(alloc: Allocation, networks: AllocNetworks | undefined) {
    this.alloc = alloc;
    this.networks = networks;
  }

  /** The allocation's address, once it has its network. */
  get address(): string | undefined {
    return this.net?.ip;
  }

  async prestart(): Promise<void> {
    if (this.alloc.groupSpec.network.mode === 'host') {
      // The scheduler places such groups only on nodes that allow them; this holds if that changed.
      if (this.networks !== undefined && !this.networks.allowHost)
        throw new Error(
          'this node does not allow network mode "host" (the agent needs --allow-host-network)',
        );
      return;
    }
    if (this.networks === undefined) return;
    const net = await this.networks.claim(
      this.alloc.id,
      this.alloc.resources.ports.map((p) => p.value),
    );
    this.net = net;
  }

  /** Its tasks are on their way: the ports are published (an allocation whose ports could not be stops). */
  poststart(ctx: AllocHookContext): void {
    this.net?.publish().catch((err: unknown) => {
      ctx.logger.error({ err }, 'could not publish the ports of the allocation');
      ctx.stop(err instanceof Error ? err.message : String(err));
    });
  }

  finished(): void {
    if (this.net === undefined || this.networks === undefined) return;
    this.net = undefined;
    void this.networks.release(this.alloc.id);
  }

  /** Puts each exec task into the namespace; every task learns the allocation's address. */
  taskHook(): TaskHook {
    return {
      name: 'network',
      prestart: (ctx) => {
        const net = this.net;
        if (net === undefined || this.networks === undefined) return;
        ctx.config.env['UNUM_ALLOC_IP'] = net.ip;
        if (ctx.task.driver === 'exec')
          ctx.config.network = { netnsPath: net.netnsPath, nsenter: this.networks.nsenter };
      },
    };
  }
}
