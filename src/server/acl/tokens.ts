/**
 * ACL tokens as the Store keeps them: the public accessor, the sha256 of the secret (the secret
 * itself is shown once, when the token is made), its policies. And the door that turns a request's
 * bearer into a token's identity and authorizes it against the token's policies.
 */
import { randomUUID } from 'node:crypto';
import { policiesAllow, type AclPolicy, type AclToken, type Capability } from '../../core/acl.ts';
import { ForbiddenError, UnauthenticatedError } from '../../core/errors.ts';
import { bearer, type Authorizer, type Identity } from '../../transport/index.ts';
import { hashSecret, newSecret } from '../node-credentials.ts';

export const TOKEN_PREFIX = 'unum-token-';

export interface StoredToken extends AclToken {
  secretHash: string;
}

/** A new token: what to store, and the secret to hand to its holder once. */
export function makeToken(
  o: { name: string; policies: string[]; management: boolean; expiresAt?: number },
  now: number,
): { stored: StoredToken; secret: string } {
  const secret = `${TOKEN_PREFIX}${newSecret()}`;
  const stored: StoredToken = {
    accessor: randomUUID(),
    name: o.name,
    policies: o.policies,
    management: o.management,
    createdAt: now,
    secretHash: hashSecret(secret),
    ...(o.expiresAt !== undefined ? { expiresAt: o.expiresAt } : {}),
  };
  return { stored, secret };
}

/** A token as it is shown (no hash). */
export function publicToken(t: StoredToken): AclToken {
  const { secretHash: _secretHash, ...rest } = t;
  return rest;
}

export interface AclView {
  aclTokenOfSecret(secretHash: string): StoredToken | undefined;
  aclToken(accessor: string): StoredToken | undefined;
  aclPolicy(name: string): AclPolicy | undefined;
}

/**
 * Deny by default: a request without a token is refused (401) by every route that needs a
 * capability; a token may do what its policies grant in the request's namespace; a management
 * token may do everything.
 */
export function aclAuthorizer(view: AclView, now: () => number): Authorizer {
  // The sha256 of secrets that lately named a token: a client sends the same secret with every
  // request, and hashing it took about 5% of a small read's time (bench/api-auth.ts). Only the hash
  // is cached, never the token: a revoked token is refused at once. Unknown secrets are not kept.
  const hashes = new Map<string, string>();
  const hashOf = (secret: string): string => hashes.get(secret) ?? hashSecret(secret);
  const remember = (secret: string, hash: string): void => {
    if (hashes.has(secret)) return;
    if (hashes.size >= 256) hashes.delete(hashes.keys().next().value!);
    hashes.set(secret, hash);
  };
  return {
    authenticate(req): Identity {
      const secret = bearer(req);
      if (secret === undefined) return { name: 'anonymous', kind: 'anonymous' };
      const hash = secret.startsWith(TOKEN_PREFIX) ? hashOf(secret) : undefined;
      const token = hash !== undefined ? view.aclTokenOfSecret(hash) : undefined;
      if (token && hash !== undefined) remember(secret, hash);
      if (!token)
        throw new UnauthenticatedError('this token is not known to the cluster (revoked, or mistyped?)');
      if (token.expiresAt !== undefined && token.expiresAt <= now())
        throw new UnauthenticatedError(`token "${token.name}" has expired`);
      return { name: token.name, kind: 'token', accessor: token.accessor };
    },
    authorize(identity, capability: Capability, namespace) {
      if (identity.kind === 'anonymous')
        throw new UnauthenticatedError(
          'this request needs a token: set UNUM_TOKEN (on the machine of `unum up`, the CLI finds its token by itself)',
        );
      const token = identity.accessor !== undefined ? view.aclToken(identity.accessor) : undefined;
      if (!token) throw new UnauthenticatedError('this token is no longer known to the cluster');
      if (token.management) return;
      const policies = token.policies.flatMap((p) => view.aclPolicy(p) ?? []);
      if (!policiesAllow(policies, capability, namespace))
        throw new ForbiddenError(
          `token "${token.name}" may not use ${capability} in namespace "${namespace}" (its policies: ${token.policies.join(', ') || 'none'})`,
          { details: { capability, namespace } },
        );
    },
  };
}
