/**
 * Join tokens: what lets a new machine become a node. A token is made with an expiry, listed,
 * revoked; a node joins with one (the server then signs its certificate). The Store keeps only the
 * secret's hash. Each transition writes an event naming who did it.
 *
 * A token's secret is `unum-join-<id>.<secret>`: the id (public, shown by `unum token list`) finds
 * the token, the hash of the whole string proves it.
 */
import { timingSafeEqual } from 'node:crypto';
import type { JoinToken } from '../../api/types.ts';
import { UnauthenticatedError } from '../../core/errors.ts';
import { randomSuffix, shortId } from '../../core/ids.ts';
import { eventOp, putOp } from '../events.ts';
import { keys } from '../keys.ts';
import { hashSecret, newSecret } from '../node-credentials.ts';
import { unchanged, type StateView } from './view.ts';
import type { Transition } from './write.ts';

export const JOIN_TOKEN_PREFIX = 'unum-join-';

export interface StoredJoinToken extends JoinToken {
  /** sha256 of the whole secret, hex. */
  secretHash: string;
}

export interface JoinTokenView extends Pick<StateView, 'revisionOf'> {
  joinToken(id: string): StoredJoinToken | undefined;
}

/** A token as it is shown (no hash). */
export function publicJoinToken(t: StoredJoinToken): JoinToken {
  const { secretHash: _secretHash, ...rest } = t;
  return rest;
}

export function createJoinToken(
  view: JoinTokenView,
  o: { expiresAt: number; description?: string },
  now: number,
  actor: string,
): Transition<{ token: JoinToken; secret: string }> {
  const id = randomSuffix(4);
  const secret = `${JOIN_TOKEN_PREFIX}${id}.${newSecret()}`;
  const stored: StoredJoinToken = {
    id,
    createdAt: now,
    expiresAt: o.expiresAt,
    createdBy: actor,
    joins: 0,
    secretHash: hashSecret(secret),
    ...(o.description !== undefined ? { description: o.description } : {}),
  };
  const key = keys.joinToken(id);
  return {
    compare: [{ key, target: 'create', op: '=', value: 0 }],
    ops: [
      putOp(key, stored),
      eventOp(
        {
          topic: 'node',
          type: 'join-token-created',
          message: `join token ${id} made, valid until ${new Date(o.expiresAt).toISOString()}${o.description ? ` (${o.description})` : ''}`,
          actor,
        },
        now,
      ),
    ],
    result: { token: publicJoinToken(stored), secret },
  };
}

export function revokeJoinToken(
  view: JoinTokenView,
  token: StoredJoinToken,
  now: number,
  actor: string,
): Transition<void> {
  const key = keys.joinToken(token.id);
  return {
    compare: [unchanged(view, key)],
    ops: [
      { type: 'delete', key },
      eventOp(
        {
          topic: 'node',
          type: 'join-token-revoked',
          message: `join token ${token.id} revoked (${token.joins} node${token.joins === 1 ? '' : 's'} joined with it)`,
          actor,
        },
        now,
      ),
    ],
    result: undefined,
  };
}

/**
 * The token a secret names, if it is known and has not expired; UnauthenticatedError saying which
 * of the two otherwise (a revoked token is no longer known).
 */
export function checkJoinToken(view: JoinTokenView, secret: string, now: number): StoredJoinToken {
  const m = /^unum-join-([0-9a-f]{8})\.[A-Za-z0-9_-]{20,}$/.exec(secret.trim());
  const token = m ? view.joinToken(m[1]!) : undefined;
  const given = Buffer.from(hashSecret(secret.trim()));
  if (!token || !timingSafeEqual(given, Buffer.from(token.secretHash)))
    throw new UnauthenticatedError(
      'this join token is not known to the cluster (revoked, mistyped, or of another cluster): make one with "unum token create"',
    );
  if (token.expiresAt <= now)
    throw new UnauthenticatedError(
      `join token ${token.id} expired at ${new Date(token.expiresAt).toISOString()}: make a new one with "unum token create"`,
    );
  return token;
}

/**
 * A node joins with `token` (checked by checkJoinToken): the token counts it, and an event says
 * which node joined with which token. Refused (UnauthenticatedError) when the token was revoked or
 * expired meanwhile. `again`: the node was known (it joins again, keeping its id).
 */
export function joinNode(
  view: JoinTokenView,
  o: { tokenId: string; nodeId: string; again: boolean },
  now: number,
): Transition<void> {
  const token = view.joinToken(o.tokenId);
  if (!token || token.expiresAt <= now)
    throw new UnauthenticatedError(`join token ${o.tokenId} was revoked or expired just now`);
  const key = keys.joinToken(token.id);
  return {
    compare: [unchanged(view, key)],
    ops: [
      putOp(key, { ...token, joins: token.joins + 1 }),
      eventOp(
        {
          topic: 'node',
          type: 'node-joined',
          nodeId: o.nodeId,
          message: `node ${shortId(o.nodeId)} ${o.again ? 'joined again' : 'joined'}: certificate issued`,
          actor: `join-token:${token.id}`,
        },
        now,
      ),
    ],
    result: undefined,
  };
}

/** A joined node renewed its certificate: nothing changes but the history. */
export function certificateRenewed(
  o: { nodeId: string; expiresAt: number },
  now: number,
  actor: string,
): Transition<void> {
  return {
    compare: [],
    ops: [
      eventOp(
        {
          topic: 'node',
          type: 'node-certificate-renewed',
          nodeId: o.nodeId,
          message: `node ${shortId(o.nodeId)} renewed its certificate, valid until ${new Date(o.expiresAt).toISOString()}`,
          actor,
        },
        now,
      ),
    ],
    result: undefined,
  };
}
