/** `unum ps`: every allocation in the cluster, like ps(1) for the whole computer. */
import { isActive } from '../../core/alloc.ts';
import type { UnumClient } from '../../api/client.ts';
import { shortId } from '../../core/ids.ts';
import type { Allocation } from '../../core/types.ts';
import { boolFlag, positionals, stringFlag, type Command } from '../context.ts';
import { findNode, nodeHosts, nodeLabel, sortAllocations } from '../lookup.ts';
import {
  allocRestarts,
  allocStatus,
  formatAge,
  formatMemory,
  formatPorts,
  json,
  statusColor,
  table,
  type Colors,
} from '../output.ts';

export const psCommand: Command = {
  name: 'ps',
  summary: 'List the allocations (running instances) across the cluster',
  usage: `Usage: unum ps [--all] [--job JOB] [--node NODE]

Lists allocations cluster-wide: ID, JOB, NAME, NODE, STATUS, PIDS, CPU, MEM,
DISK, PORTS, RESTARTS, AGE. By default only the ones running or about to; --all adds
the stopped, complete and failed ones. All namespaces unless -n is given.

CPU is the CPU the allocation's tasks used over the last few seconds, in percent
of one core (250% = two and a half cores busy); MEM the memory they use now, in
MiB. Both are asked of each node's agent (once per node, in parallel) and need
cgroups on the node; "-" when a node does not answer (a note says which).
DISK is what the allocation's directories take (its tasks' files and the shared
alloc/ dir, logs apart) over its limit, ephemeral.sizeMiB, as the agent last
measured it (every few seconds): an allocation over its limit is killed.

Flags:
  --all                include finished allocations
  --job JOB            only this job's
  --node NODE          only on this node (name, id or id prefix)
  -n, --namespace NS   only this namespace
  --json               the allocations as the API returns them, and their usage

Examples:
  unum ps
  unum ps --all --job web
  unum ps --node worker-3
`,
  flags: { all: { type: 'boolean' }, job: { type: 'string' }, node: { type: 'string' } },
  async run(args, ctx) {
    positionals(args, 0, 0, '');
    const client = ctx.client();
    const all = boolFlag(args, 'all');
    const job = stringFlag(args, 'job');
    const nodeRef = stringFlag(args, 'node');
    const nodes = (await client.listNodes()).items;
    const node = nodeRef === undefined ? undefined : findNode(nodes, nodeRef);
    const listed = await client.listAllocations({
      ...(ctx.namespaceExplicit || job !== undefined ? { namespace: ctx.namespace } : {}),
      ...(job !== undefined ? { job } : {}),
      ...(node ? { node: node.id } : {}),
      ...(all ? { all: true } : {}),
    });
    // Filter here as well: the listing is correct even if the server ignores a filter.
    const items = listed.items.filter(
      (a) =>
        (all || isActive(a)) &&
        (job === undefined || a.jobId === job) &&
        (node === undefined || a.nodeId === node.id),
    );
    const names = new Map(nodes.map((n) => [n.id, n.name]));
    const { usage, problems } = await fetchUsage(client, items, names);
    // On stderr, so that stdout stays the table (or the JSON document).
    const notes = (): void => {
      for (const p of problems) ctx.stderr.write(`note: ${p}\n`);
    };
    if (ctx.json) {
      notes();
      ctx.stdout.write(json({ items, index: listed.index, usage: Object.fromEntries(usage) }));
      return 0;
    }
    if (items.length === 0) {
      ctx.stdout.write(all ? 'No allocations.\n' : 'Nothing running. (--all shows finished allocations)\n');
      return 0;
    }
    ctx.stdout.write(formatPs(items, names, ctx.now(), ctx.color, usage, nodeHosts(nodes)));
    notes();
    return 0;
  },
};

/** What `ps` shows of an allocation's usage: summed over its tasks. */
export interface AllocUsage {
  /** Percent of one core; undefined until the agent has two samples. */
  cpuPercent: number | undefined;
  /** Undefined when the node measures no task's memory (no cgroups). */
  memoryBytes: number | undefined;
  disk?: { usedBytes: number; limitBytes?: number };
}

/**
 * Usage of the running allocations, asked of each of their nodes once, all in parallel. A node that
 * does not answer is a note (`problems`), never a failure.
 */
export async function fetchUsage(
  client: UnumClient,
  allocs: readonly Allocation[],
  names: ReadonlyMap<string, string>,
): Promise<{ usage: Map<string, AllocUsage>; problems: string[] }> {
  const nodeIds = [...new Set(allocs.filter((a) => a.clientStatus === 'running').map((a) => a.nodeId))];
  const answers = await Promise.allSettled(nodeIds.map((id) => client.nodeStats(id)));
  const usage = new Map<string, AllocUsage>();
  const problems: string[] = [];
  answers.forEach((answer, i) => {
    const nodeId = nodeIds[i] ?? '';
    if (answer.status === 'rejected') {
      const why = answer.reason instanceof Error ? answer.reason.message : String(answer.reason);
      problems.push(`no usage from node ${nodeLabel(names, nodeId)}: ${why}`);
      return;
    }
    for (const [allocId, stats] of Object.entries(answer.value.allocations)) {
      const tasks = Object.values(stats.tasks);
      const cpu = tasks.filter((t) => t.cpuPercent !== undefined);
      const u: AllocUsage = {
        cpuPercent: cpu.length > 0 ? cpu.reduce((n, t) => n + (t.cpuPercent ?? 0), 0) : undefined,
        memoryBytes: tasks.length > 0 ? tasks.reduce((n, t) => n + t.memoryBytes, 0) : undefined,
      };
      if (stats.disk !== undefined) u.disk = stats.disk;
      usage.set(allocId, u);
    }
  });
  return { usage, problems };
}

export function formatPs(
  allocs: readonly Allocation[],
  names: ReadonlyMap<string, string>,
  now: number,
  c: Colors,
  usage: ReadonlyMap<string, AllocUsage> = new Map(),
  hosts: ReadonlyMap<string, string> = new Map(),
): string {
  const rows = sortAllocations(allocs).map((a) => {
    const u = a.clientStatus === 'running' ? usage.get(a.id) : undefined;
    return [
      shortId(a.id),
      a.namespace === 'default' ? a.jobId : `${a.namespace}/${a.jobId}`,
      a.name,
      nodeLabel(names, a.nodeId),
      statusColor(c, allocStatus(a)),
      pids(a),
      formatCpu(u?.cpuPercent),
      u?.memoryBytes === undefined ? '-' : formatMiB(u.memoryBytes),
      formatDisk(u?.disk),
      formatPorts(a, hosts.get(a.nodeId)),
      String(allocRestarts(a)),
      formatAge(a.createdAt, now),
    ];
  });
  return table(
    ['ID', 'JOB', 'NAME', 'NODE', 'STATUS', 'PIDS', 'CPU', 'MEM', 'DISK', 'PORTS', 'RESTARTS', 'AGE'],
    rows,
    {
      align: [
        'left',
        'left',
        'left',
        'left',
        'left',
        'left',
        'right',
        'right',
        'right',
        'left',
        'right',
        'left',
      ],
      header: c.bold,
    },
  );
}

/** `0.4%`, `12%`, `250%`: percent of one core. */
export function formatCpu(percent: number | undefined): string {
  if (percent === undefined) return '-';
  return percent < 10 ? `${percent.toFixed(1)}%` : `${Math.round(percent)}%`;
}

/** `0.5MiB`, `34MiB`. */
export function formatMiB(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return mib < 10 ? `${mib.toFixed(1)}MiB` : `${Math.round(mib)}MiB`;
}

/** `3.2MiB/1GiB`: used over the limit (just used when the allocation has none). */
export function formatDisk(disk: AllocUsage['disk']): string {
  if (disk === undefined) return '-';
  const used = formatMiB(disk.usedBytes);
  return disk.limitBytes === undefined ? used : `${used}/${formatMemory(disk.limitBytes / (1024 * 1024))}`;
}

function pids(a: Allocation): string {
  const list = Object.values(a.taskStates)
    .filter((t) => t.state === 'running' && t.pid !== undefined)
    .map((t) => String(t.pid));
  return list.length ? list.join(',') : '-';
}
