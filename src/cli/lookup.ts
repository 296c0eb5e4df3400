/** Small lookups several verbs share: node names for tables, a node by name or id prefix. */
import { holdsResources } from '../core/alloc.ts';
import type { UnumClient } from '../api/client.ts';
import type { Allocation, Node } from '../core/types.ts';
import { NotFoundError } from '../core/errors.ts';
import { shortId } from '../core/ids.ts';

/** Node id → name; empty when the nodes cannot be listed (tables then show short ids). */
export async function nodeNames(client: UnumClient): Promise<Map<string, string>> {
  return (await nodeDirectory(client)).names;
}

/** Node id → name, and node id → the host its ports are published on (from its address). */
export async function nodeDirectory(
  client: UnumClient,
): Promise<{ names: Map<string, string>; hosts: Map<string, string> }> {
  try {
    const nodes = (await client.listNodes()).items;
    return { names: new Map(nodes.map((n) => [n.id, n.name])), hosts: nodeHosts(nodes) };
  } catch {
    return { names: new Map(), hosts: new Map() };
  }
}

/** Node id → host name or address of its agent (where its allocations' ports are published). */
export function nodeHosts(nodes: readonly Pick<Node, 'id' | 'address'>[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const n of nodes) {
    try {
      out.set(n.id, new URL(n.address).hostname);
    } catch {
      // no usable address
    }
  }
  return out;
}

export function nodeLabel(names: ReadonlyMap<string, string>, nodeId: string): string {
  return names.get(nodeId) ?? shortId(nodeId);
}

/** A node by exact id, exact name, or unique id prefix. */
export function findNode(nodes: readonly Node[], ref: string): Node {
  const exact = nodes.find((n) => n.id === ref) ?? nodes.find((n) => n.name === ref);
  if (exact) return exact;
  const byPrefix = nodes.filter((n) => n.id.startsWith(ref));
  if (byPrefix.length === 1 && byPrefix[0]) return byPrefix[0];
  if (byPrefix.length > 1)
    throw new NotFoundError(`"${ref}" matches ${byPrefix.length} nodes; give more of the id`);
  throw new NotFoundError(`no node named "${ref}" or with an id starting with it`);
}

/**
 * Table order: live instances first (by name), then finished ones, newest first.
 */
export function sortAllocations(allocs: readonly Allocation[]): Allocation[] {
  return [...allocs].sort((a, b) => {
    const la = holdsResources(a) ? 0 : 1;
    const lb = holdsResources(b) ? 0 : 1;
    if (la !== lb) return la - lb;
    if (la === 0) {
      if (a.jobId !== b.jobId) return a.jobId < b.jobId ? -1 : 1;
      if (a.group !== b.group) return a.group < b.group ? -1 : 1;
      if (a.index !== b.index) return a.index - b.index;
      return b.createdAt - a.createdAt;
    }
    return b.modifiedAt - a.modifiedAt;
  });
}
