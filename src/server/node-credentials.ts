/**
 * Node credentials: each node proves who it is with a secret of its own, issued when it first
 * registers. The Store keeps only the secret's hash, beside the key servers use to call the node's
 * agent (its logs and usage routes answer only that key). A node's credential lets it register
 * again, heartbeat, watch and report its own allocations — never another node's. The node
 * certificates of the multi-host release take its place behind the same identity.
 */
import { hash, randomBytes } from 'node:crypto';
import { ForbiddenError, UnauthenticatedError } from '../core/errors.ts';
import { bearer, type Authorizer, type Capability, type Identity } from '../transport/index.ts';

export interface NodeCredential {
  nodeId: string;
  /** sha256 of the node's secret, hex. */
  secretHash: string;
  /** What servers send to the node's agent (its API refuses anything else). */
  agentKey: string;
  issuedAt: number;
}

/** What a registering node is told once, when its credential is made. */
export interface IssuedCredential {
  secret: string;
  agentKey: string;
}

export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function hashSecret(secret: string): string {
  // One-shot: about three times cheaper than a Hash object for a short input, on every request.
  return hash('sha256', secret, 'hex');
}

export function issueCredential(
  nodeId: string,
  now: number,
): { stored: NodeCredential; issued: IssuedCredential } {
  const secret = `unum-node-${newSecret()}`;
  const agentKey = `unum-agent-${newSecret()}`;
  return {
    stored: { nodeId, secretHash: hashSecret(secret), agentKey, issuedAt: now },
    issued: { secret, agentKey },
  };
}

/** Capabilities a node identity may use; everything else is an operator's. */
const NODE_CAPABILITIES: ReadonlySet<Capability> = new Set(['node:read', 'node:write']);

/**
 * The door with nodes: a bearer that is a node's secret is that node (`kind: 'agent'`, name = node
 * id), allowed only the node capabilities (each node route also checks it is the node's own); any
 * other request goes to `inner`.
 */
export function withNodeCredentials(
  inner: Authorizer,
  credentialOf: (nodeId: string) => NodeCredential | undefined,
  nodeIdOf: (secretHash: string) => string | undefined,
): Authorizer {
  return {
    async authenticate(req) {
      const secret = bearer(req);
      if (secret?.startsWith('unum-node-')) {
        const hash = hashSecret(secret);
        const nodeId = nodeIdOf(hash);
        const cred = nodeId === undefined ? undefined : credentialOf(nodeId);
        if (!cred || cred.secretHash !== hash)
          throw new UnauthenticatedError('this node credential is not known to the cluster');
        return { name: cred.nodeId, kind: 'agent' };
      }
      return inner.authenticate(req);
    },
    async authorize(identity, capability, namespace) {
      if (identity.kind === 'agent') {
        if (!NODE_CAPABILITIES.has(capability))
          throw new ForbiddenError(`a node's credential does not grant ${capability}`);
        return;
      }
      return inner.authorize(identity, capability, namespace);
    },
  };
}

/**
 * ForbiddenError unless the caller is node `nodeId` (its credential). A node without a credential
 * yet (a cluster from before credentials) is allowed until it registers and gets one.
 */
export function requireNode(
  identity: Identity,
  nodeId: string,
  credential: NodeCredential | undefined,
): void {
  if (identity.kind === 'agent' && identity.name === nodeId) return;
  if (credential === undefined) return;
  if (identity.kind === 'agent')
    throw new ForbiddenError(`node ${identity.name} may not act for node ${nodeId}`);
  throw new UnauthenticatedError(`node ${nodeId} routes need that node's own credential`);
}
