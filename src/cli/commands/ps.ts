/** `unum ps`: every allocation in the cluster, like ps(1) for the whole computer. */
import { shortId } from '../../core/ids.ts';
import type { Allocation } from '../../core/types.ts';
import { boolFlag, positionals, stringFlag, type Command } from '../context.ts';
import { findNode, nodeLabel, sortAllocations } from '../lookup.ts';
import {
  allocRestarts,
  allocStatus,
  formatAge,
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

Lists allocations cluster-wide: ID, JOB, NAME, NODE, STATUS, PIDS, PORTS,
RESTARTS, AGE. By default only the ones running or about to; --all adds the
stopped, complete and failed ones. All namespaces unless -n is given.

Flags:
  --all                include finished allocations
  --job JOB            only this job's
  --node NODE          only on this node (name, id or id prefix)
  -n, --namespace NS   only this namespace
  --json               the allocations as the API returns them

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
        (all || a.clientStatus === 'running' || a.clientStatus === 'pending') &&
        (job === undefined || a.jobId === job) &&
        (node === undefined || a.nodeId === node.id),
    );
    if (ctx.json) {
      ctx.stdout.write(json({ items, index: listed.index }));
      return 0;
    }
    if (items.length === 0) {
      ctx.stdout.write(all ? 'No allocations.\n' : 'Nothing running. (--all shows finished allocations)\n');
      return 0;
    }
    const names = new Map(nodes.map((n) => [n.id, n.name]));
    ctx.stdout.write(formatPs(items, names, ctx.now(), ctx.color));
    return 0;
  },
};

export function formatPs(
  allocs: readonly Allocation[],
  names: ReadonlyMap<string, string>,
  now: number,
  c: Colors,
): string {
  const rows = sortAllocations(allocs).map((a) => [
    shortId(a.id),
    a.namespace === 'default' ? a.jobId : `${a.namespace}/${a.jobId}`,
    a.name,
    nodeLabel(names, a.nodeId),
    statusColor(c, allocStatus(a)),
    pids(a),
    formatPorts(a),
    String(allocRestarts(a)),
    formatAge(a.createdAt, now),
  ]);
  return table(['ID', 'JOB', 'NAME', 'NODE', 'STATUS', 'PIDS', 'PORTS', 'RESTARTS', 'AGE'], rows, {
    align: ['left', 'left', 'left', 'left', 'left', 'left', 'left', 'right', 'left'],
    header: c.bold,
  });
}

function pids(a: Allocation): string {
  const list = Object.values(a.taskStates)
    .filter((t) => t.state === 'running' && t.pid !== undefined)
    .map((t) => String(t.pid));
  return list.length ? list.join(',') : '-';
}
