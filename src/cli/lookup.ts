/** Small lookups several verbs share: node names for tables, a node by name or id prefix. */
import { holdsResources } from '../core/alloc.ts';
import type { UnumClient } from '../api/client.ts';
import type { Allocation, Node } from '../core/types.ts';
import { NotFoundError } from '../core/errors.ts';
import { shortId } from '../core/ids.ts';

/** Node id → name; empty when the nodes cannot be listed (tables then show short ids). */
export async function nodeNames(client: UnumClient): Promise<Map<string, string>> {
  try {
    const nodes = await client.listNodes();
    return new Map(nodes.items.map((n) => [n.id, n.name]));
  } catch {
    return new Map();
  }
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
