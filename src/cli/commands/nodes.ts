/** `unum nodes`: the machines of the cluster, whether they take new work, how full they are. */
import type { Allocation, Node } from '../../core/types.ts';
import { shortId } from '../../core/ids.ts';
import { eligibilityOf } from '../../core/node.ts';
import { positionals, type Command } from '../context.ts';
import { formatAgo, formatCores, formatMemory, json, statusColor, table, type Colors } from '../output.ts';

export const nodesCommand: Command = {
  name: 'nodes',
  summary: 'List the nodes (machines): status, eligibility, free and total resources',
  usage: `Usage: unum nodes

Lists the nodes: ID, NAME, ADDRESS, STATUS (ready, down, initializing),
ELIGIBILITY (eligible; ineligible: nothing new is placed there; draining: its
allocations are moving away, see "unum node drain"), CPU (free/total cores),
MEMORY (free/total), DISK (free/total), ALLOCS (running allocations) and
HEARTBEAT (when its agent last reported). Totals are what the scheduler may
hand out (the machine minus what is reserved for the host; for disk, what was
free in the agent's data dir when it started); free is the total minus what
running allocations hold (disk: their ephemeral.sizeMiB).

Flags:
  --json   the nodes as the API returns them, plus "allocated" per node id

Examples:
  unum nodes
  unum nodes --json | jq '.items[] | select(.status == "ready") | .name'
`,
  async run(args, ctx) {
    positionals(args, 0, 0, '');
    const client = ctx.client();
    const [nodes, allocs] = await Promise.all([client.listNodes(), client.listAllocations()]);
    const usage = nodeUsage(allocs.items);
    if (ctx.json) {
      ctx.stdout.write(json({ ...nodes, allocated: Object.fromEntries(usage) }));
      return 0;
    }
    if (nodes.items.length === 0) {
      ctx.stdout.write('No nodes. Start an agent: unum agent --servers URL (or run "unum up").\n');
      return 0;
    }
    ctx.stdout.write(formatNodes(nodes.items, usage, ctx.color, ctx.now()));
    return 0;
  },
};

export interface NodeUsage {
  cpu: number;
  memory: number;
  disk: number;
  allocations: number;
}

/** What running (and starting) allocations hold on each node. */
export function nodeUsage(allocs: readonly Allocation[]): Map<string, NodeUsage> {
  const usage = new Map<string, NodeUsage>();
  for (const a of allocs) {
    if (a.clientStatus !== 'running' && a.clientStatus !== 'pending') continue;
    const u = usage.get(a.nodeId) ?? { cpu: 0, memory: 0, disk: 0, allocations: 0 };
    u.cpu += a.resources.cpu;
    u.memory += a.resources.memory;
    u.disk += a.resources.disk ?? 0;
    u.allocations++;
    usage.set(a.nodeId, u);
  }
  return usage;
}

export function formatNodes(
  nodes: readonly Node[],
  usage: ReadonlyMap<string, NodeUsage>,
  c: Colors,
  now: number,
): string {
  const rows = [...nodes]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((n) => {
      const u = usage.get(n.id) ?? { cpu: 0, memory: 0, disk: 0, allocations: 0 };
      const cpu = n.resources.cpu - n.reserved.cpu;
      const memory = n.resources.memory - n.reserved.memory;
      const eligibility = eligibilityOf(n);
      return [
        shortId(n.id),
        n.name,
        n.address,
        statusColor(c, n.status),
        eligibility === 'eligible' ? eligibility : c.yellow(eligibility),
        `${formatCores(cpu - u.cpu)}/${formatCores(cpu)}`,
        `${formatMemory(memory - u.memory)}/${formatMemory(memory)}`,
        // An agent that could not measure its disk offers none.
        n.resources.disk > 0
          ? `${formatMemory(n.resources.disk - u.disk)}/${formatMemory(n.resources.disk)}`
          : '-',
        String(u.allocations),
        formatAgo(n.lastHeartbeat, now),
      ];
    });
  return table(
    [
      'ID',
      'NAME',
      'ADDRESS',
      'STATUS',
      'ELIGIBILITY',
      'CPU FREE/TOTAL',
      'MEMORY FREE/TOTAL',
      'DISK FREE/TOTAL',
      'ALLOCS',
      'HEARTBEAT',
    ],
    rows,
    {
      align: ['left', 'left', 'left', 'left', 'left', 'right', 'right', 'right', 'right', 'left'],
      header: c.bold,
    },
  );
}
