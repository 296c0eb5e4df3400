/** ACL transitions: the first management token, policies, tokens. Each writes an event naming who did it. */
import type { AclPolicy, PolicyRule } from '../../core/acl.ts';
import { eventOp, putOp } from '../events.ts';
import { keys } from '../keys.ts';
import { makeToken, publicToken, type StoredToken } from '../acl/tokens.ts';
import { unchanged, type StateView } from './view.ts';
import type { Transition } from './write.ts';
import type { AclToken } from '../../core/acl.ts';

export interface MadeToken {
  token: AclToken;
  /** Shown once: the Store keeps only its hash. */
  secret: string;
}

/** The cluster's first management token; a second bootstrap changes nothing (`done` undefined). */
export function bootstrapAcl(
  view: StateView,
  o: { name: string },
  now: number,
  actor: string,
): Transition<MadeToken | undefined> {
  if (view.revisionOf(keys.aclBootstrap) > 0) return { done: undefined };
  const made = makeToken({ name: o.name, policies: [], management: true }, now);
  return {
    compare: [{ key: keys.aclBootstrap, target: 'create', op: '=', value: 0 }],
    ops: [
      { type: 'put', key: keys.aclBootstrap, value: String(now) },
      putOp(keys.aclToken(made.stored.accessor), made.stored),
      eventOp(
        {
          topic: 'acl',
          type: 'acl-bootstrapped',
          message: `ACL bootstrap: management token "${o.name}" made`,
          actor,
        },
        now,
      ),
    ],
    result: { token: publicToken(made.stored), secret: made.secret },
  };
}

export function createToken(
  view: StateView,
  o: { name: string; policies: string[]; management: boolean; expiresAt?: number },
  now: number,
  actor: string,
): Transition<MadeToken> {
  const made = makeToken(o, now);
  return {
    compare: [{ key: keys.aclToken(made.stored.accessor), target: 'create', op: '=', value: 0 }],
    ops: [
      putOp(keys.aclToken(made.stored.accessor), made.stored),
      eventOp(
        {
          topic: 'acl',
          type: 'acl-token-created',
          message: `token "${o.name}" (${made.stored.accessor}) made${o.management ? ' with management rights' : ` with policies ${o.policies.join(', ') || 'none'}`}`,
          actor,
        },
        now,
      ),
    ],
    result: { token: publicToken(made.stored), secret: made.secret },
  };
}

export function revokeToken(
  view: StateView,
  token: StoredToken,
  now: number,
  actor: string,
): Transition<void> {
  const key = keys.aclToken(token.accessor);
  return {
    compare: [unchanged(view, key)],
    ops: [
      { type: 'delete', key },
      eventOp(
        {
          topic: 'acl',
          type: 'acl-token-revoked',
          message: `token "${token.name}" (${token.accessor}) revoked`,
          actor,
        },
        now,
      ),
    ],
    result: undefined,
  };
}

export function applyPolicy(
  view: StateView,
  existing: AclPolicy | undefined,
  o: { name: string; description?: string; rules: PolicyRule[] },
  now: number,
  actor: string,
): Transition<AclPolicy> {
  const key = keys.aclPolicy(o.name);
  const policy: AclPolicy = {
    name: o.name,
    rules: o.rules,
    createdAt: existing?.createdAt ?? now,
    modifiedAt: now,
    ...(o.description !== undefined ? { description: o.description } : {}),
  };
  return {
    compare: [unchanged(view, key)],
    ops: [
      putOp(key, policy),
      eventOp(
        {
          topic: 'acl',
          type: existing ? 'acl-policy-updated' : 'acl-policy-created',
          message: `policy "${o.name}" ${existing ? 'updated' : 'created'}`,
          actor,
        },
        now,
      ),
    ],
    result: policy,
  };
}

export function deletePolicy(view: StateView, name: string, now: number, actor: string): Transition<void> {
  const key = keys.aclPolicy(name);
  return {
    compare: [unchanged(view, key)],
    ops: [
      { type: 'delete', key },
      eventOp({ topic: 'acl', type: 'acl-policy-deleted', message: `policy "${name}" deleted`, actor }, now),
    ],
    result: undefined,
  };
}
