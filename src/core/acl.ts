/**
 * Access control: what a caller may do, per namespace and capability. Deny by default: a token
 * may do only what one of its policies' rules grants (a management token may do everything).
 * Capabilities that are not about a namespace (nodes, operating the cluster) are granted only by a
 * rule for every namespace (`*`).
 */

export const CAPABILITIES = [
  'job:read',
  'job:write',
  'logs:read',
  'exec',
  'kv:read',
  'kv:write',
  'event:read',
  'node:read',
  'node:write',
  'operator:read',
  'operator:write',
] as const;

export type Capability = (typeof CAPABILITIES)[number];

/** Capabilities about the whole cluster, not one namespace. */
export const CLUSTER_CAPABILITIES: ReadonlySet<Capability> = new Set([
  'node:read',
  'node:write',
  'operator:read',
  'operator:write',
]);

export interface PolicyRule {
  /** A namespace name, `*` for every one, or a prefix ending in `*` (`team-*`). */
  namespace: string;
  capabilities: Capability[];
}

export interface AclPolicy {
  name: string;
  description?: string;
  rules: PolicyRule[];
  createdAt: number;
  modifiedAt: number;
}

/** A token as it is shown: never its secret, which is given once, when it is made. */
export interface AclToken {
  /** Public id of the token (for listing and revoking). */
  accessor: string;
  name: string;
  policies: string[];
  /** May do everything, including managing ACLs. */
  management: boolean;
  createdAt: number;
  expiresAt?: number;
}

function namespaceMatches(pattern: string, namespace: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return namespace.startsWith(pattern.slice(0, -1));
  return pattern === namespace;
}

/** Whether any rule of `policies` grants `capability` in `namespace`. */
export function policiesAllow(
  policies: readonly Pick<AclPolicy, 'rules'>[],
  capability: Capability,
  namespace: string,
): boolean {
  const cluster = CLUSTER_CAPABILITIES.has(capability);
  return policies.some((p) =>
    p.rules.some(
      (r) =>
        r.capabilities.includes(capability) &&
        (cluster ? r.namespace === '*' : namespaceMatches(r.namespace, namespace)),
    ),
  );
}
