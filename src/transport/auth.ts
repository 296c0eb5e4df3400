/**
 * The one door for authority: every route names a capability; every request is authenticated,
 * then authorized for that capability in its namespace, before its handler runs (router.ts).
 * `unum up` is open (allowAll); ACL tokens, node certificates and workload identities plug in here
 * later, for the server and the agent alike.
 */
import type { IncomingMessage } from 'node:http';
import type { Capability } from '../core/acl.ts';

export type { Capability };

export interface Identity {
  /** `anonymous` when no credential was given; a token's name; a node's id. */
  name: string;
  kind: 'anonymous' | 'token' | 'agent' | 'workload';
  /** A token's accessor (its public id), for the audit trail. */
  accessor?: string;
  /** A workload's verified claims (namespace, job, group, alloc, task, node). */
  claims?: Readonly<Record<string, string>>;
}

export interface Authorizer {
  /** Who is calling. UnauthenticatedError for a credential that is present but wrong. */
  authenticate(req: IncomingMessage): Promise<Identity> | Identity;
  /** ForbiddenError when the identity may not use the capability in the namespace. */
  authorize(identity: Identity, capability: Capability, namespace: string): Promise<void> | void;
}

/** Open by default, as `unum up` on a laptop should be. */
export const allowAll: Authorizer = {
  authenticate: () => ({ name: 'anonymous', kind: 'anonymous' }),
  authorize: () => undefined,
};

/** The bearer credential of a request (`Authorization: Bearer <credential>`), if any. */
export function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (h === undefined) return undefined;
  return /^Bearer\s+(\S+)\s*$/i.exec(h)?.[1];
}
