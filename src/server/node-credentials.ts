/**
 * How a node proves who it is, two ways behind one identity (`kind: 'agent'`, name = node id):
 *
 *  - over TLS (a server with a cluster CA, `unum server`): its node certificate, issued when it
 *    joined with a join token (state/join-tokens.ts, pki.ts). Node secrets are refused there.
 *  - on a plain listener (`unum up`, loopback): a secret of its own, issued when it first registers.
 *    The Store keeps only the secret's hash, beside the key servers use to call the node's agent
 *    (its logs and usage routes answer only that key).
 *
 * Either lets a node register again, heartbeat, watch and report its own allocations — never
 * another node's.
 */
import { hash, randomBytes } from 'node:crypto';
import { ForbiddenError, UnauthenticatedError } from '../core/errors.ts';
import {
  bearer,
  peerOf,
  peerProblem,
  type Authorizer,
  type Capability,
  type Identity,
} from '../transport/index.ts';

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
export const NODE_CAPABILITIES: ReadonlySet<Capability> = new Set(['node:read', 'node:write']);

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

/** The node a server acts for when it hands a node's call on to another server (TLS only). */
export const ON_BEHALF_OF_NODE_HEADER = 'x-unum-on-behalf-of-node';

/**
 * The door with node certificates (a TLS server): a verified client certificate of the node role is
 * that node (`kind: 'agent'`, name = its id), allowed only the node capabilities; a server's or none
 * goes to `inner` (ACL tokens). A node secret is refused: over TLS nodes prove themselves by their
 * certificate.
 */
export function withNodeCertificates(inner: Authorizer): Authorizer {
  return {
    async authenticate(req) {
      const peer = peerOf(req);
      if (peer?.role === 'node') return { name: peer.name, kind: 'agent' };
      // A server handing on a node's call (a follower forwarding a beat to the leader): it verified
      // the node's certificate itself, and only servers hold a certificate of the server role.
      const onBehalf = req.headers[ON_BEHALF_OF_NODE_HEADER];
      if (peer?.role === 'server' && typeof onBehalf === 'string' && onBehalf !== '')
        return { name: onBehalf, kind: 'agent' };
      if (bearer(req)?.startsWith('unum-node-'))
        throw new UnauthenticatedError(
          `this server authenticates nodes by their certificate, and this request came with ${peerProblem(req) ?? 'a certificate of no node'}: join the node with "unum agent --join"`,
        );
      return inner.authenticate(req);
    },
    async authorize(identity, capability, namespace) {
      if (identity.kind === 'agent') {
        if (!NODE_CAPABILITIES.has(capability))
          throw new ForbiddenError(`a node's certificate does not grant ${capability}`);
        return;
      }
      return inner.authorize(identity, capability, namespace);
    },
  };
}

/**
 * ForbiddenError unless the caller is node `nodeId`. `byCertificate` (a TLS server): only that
 * node's certificate will do. Otherwise (node secrets): a node without a credential yet is allowed
 * until it registers and gets one.
 */
export function requireNode(
  identity: Identity,
  nodeId: string,
  credential: NodeCredential | undefined,
  byCertificate = false,
): void {
  if (identity.kind === 'agent' && identity.name === nodeId) return;
  if (byCertificate && identity.kind !== 'agent')
    throw new UnauthenticatedError(
      `node ${nodeId} routes need that node's certificate: a node joins with "unum agent --join URL --token T --ca-hash H"`,
    );
  if (credential === undefined && !byCertificate) return;
  if (identity.kind === 'agent')
    throw new ForbiddenError(`node ${identity.name} may not act for node ${nodeId}`);
  throw new UnauthenticatedError(`node ${nodeId} routes need that node's own credential`);
}
