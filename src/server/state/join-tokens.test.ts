import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { UnauthenticatedError } from '../../core/errors.ts';
import { keys } from '../keys.ts';
import {
  checkJoinToken,
  createJoinToken,
  joinNode,
  revokeJoinToken,
  type JoinTokenView,
  type StoredJoinToken,
} from './join-tokens.ts';

const NOW = 1_800_000_000_000;

/** A view holding the tokens given, each at revision 7. */
function view(...tokens: StoredJoinToken[]): JoinTokenView {
  const byId = new Map(tokens.map((t) => [t.id, t]));
  return {
    joinToken: (id) => byId.get(id),
    revisionOf: (key) => (tokens.some((t) => keys.joinToken(t.id) === key) ? 7 : 0),
  };
}

/** A made token as the Store would hold it, and its secret. */
function made(expiresAt = NOW + 3_600_000) {
  const t = createJoinToken(view(), { expiresAt, description: 'rack 1' }, NOW, 'token:admin');
  assert.ok(!('done' in t));
  const put = t.ops[0];
  assert.ok(put?.type === 'put');
  return { t, stored: JSON.parse(put.value) as StoredJoinToken, secret: t.result.secret };
}

const unauthenticated = (re: RegExp) => (err: unknown) =>
  err instanceof UnauthenticatedError && re.test(err.message);

void describe('join token transitions', () => {
  test('create: a new key (compare: absent), the hash stored and never the secret, an event by the actor', () => {
    const { t, stored, secret } = made();
    if ('done' in t) return;
    assert.match(secret, /^unum-join-[0-9a-f]{8}\.[A-Za-z0-9_-]{43}$/);
    assert.equal(secret.slice(10, 18), stored.id);
    assert.deepEqual(t.compare, [{ key: keys.joinToken(stored.id), target: 'create', op: '=', value: 0 }]);
    assert.equal(stored.expiresAt, NOW + 3_600_000);
    assert.equal(stored.joins, 0);
    assert.equal(stored.createdBy, 'token:admin');
    assert.ok(!JSON.stringify(t.ops).includes(secret.split('.')[1]!), 'the secret is not written');
    const { secretHash: _hash, ...shown } = stored;
    assert.deepEqual(t.result.token, shown, 'the answer is the token without its hash');
    const event = t.ops[1];
    assert.ok(
      event?.type === 'put' && /join-token-created/.test(event.value) && /token:admin/.test(event.value),
    );
  });

  test('check: the right secret passes; a wrong one, another token id, garbage, an expired token do not', () => {
    const { stored, secret } = made();
    const v = view(stored);
    assert.equal(checkJoinToken(v, secret, NOW).id, stored.id);
    assert.equal(checkJoinToken(v, ` ${secret}\n`, NOW).id, stored.id, 'pasted with spaces');
    const [head] = secret.split('.');
    assert.throws(() => checkJoinToken(v, `${head}.${'A'.repeat(43)}`, NOW), unauthenticated(/not known/));
    assert.throws(
      () => checkJoinToken(v, secret.replace(stored.id, '00000000'), NOW),
      unauthenticated(/not known/),
    );
    assert.throws(() => checkJoinToken(v, 'unum-token-abc', NOW), unauthenticated(/not known/));
    assert.throws(() => checkJoinToken(v, secret, stored.expiresAt), unauthenticated(/expired at/));
    assert.throws(() => checkJoinToken(view(), secret, NOW), unauthenticated(/revoked, mistyped/));
  });

  test('join: counts the join against the token as it was seen, with an event naming node and token', () => {
    const { stored } = made();
    const t = joinNode(view(stored), { tokenId: stored.id, nodeId: 'n1', again: false }, NOW);
    assert.ok(!('done' in t));
    assert.deepEqual(t.compare, [{ key: keys.joinToken(stored.id), target: 'mod', op: '=', value: 7 }]);
    const put = t.ops[0];
    assert.ok(put?.type === 'put');
    assert.equal((JSON.parse(put.value) as StoredJoinToken).joins, 1);
    const event = t.ops[1];
    assert.ok(event?.type === 'put');
    const e = JSON.parse(event.value) as { type: string; nodeId: string; actor: string; message: string };
    assert.deepEqual([e.type, e.nodeId, e.actor], ['node-joined', 'n1', `join-token:${stored.id}`]);
    const again = joinNode(view(stored), { tokenId: stored.id, nodeId: 'n1', again: true }, NOW);
    assert.ok(!('done' in again) && /joined again/.test(JSON.stringify(again.ops)));
  });

  test('join: a token revoked or expired since it was checked refuses the join', () => {
    const { stored } = made();
    assert.throws(
      () => joinNode(view(), { tokenId: stored.id, nodeId: 'n1', again: false }, NOW),
      unauthenticated(/revoked or expired/),
    );
    assert.throws(
      () => joinNode(view(stored), { tokenId: stored.id, nodeId: 'n1', again: false }, stored.expiresAt + 1),
      unauthenticated(/revoked or expired/),
    );
  });

  test('revoke: deletes the token as it was seen, with an event', () => {
    const { stored } = made();
    const t = revokeJoinToken(view(stored), stored, NOW, 'token:admin');
    assert.ok(!('done' in t));
    assert.deepEqual(t.compare, [{ key: keys.joinToken(stored.id), target: 'mod', op: '=', value: 7 }]);
    assert.deepEqual(t.ops[0], { type: 'delete', key: keys.joinToken(stored.id) });
    assert.ok(t.ops[1]?.type === 'put' && /join-token-revoked/.test(t.ops[1].value));
  });
});
