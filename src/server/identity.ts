/**
 * Workload identity: every task gets a short-lived signed token (a JWT) naming its namespace, job,
 * group, allocation and task. The servers share one signing key, kept in the Store (made by the
 * first server that needs it); its public half is published at `/.well-known/jwks.json`, so anyone
 * can check a token offline. A node asks for the tokens of its own allocations only, and rotates
 * them before they expire. A token grants only what a task needs for itself: today, to ask who it
 * is; its namespace's service catalog and KV when they exist — never another namespace, never a job.
 */
import { SignJWT, createLocalJWKSet, exportJWK, generateKeyPair, importJWK, jwtVerify, type JWK } from 'jose';
import { randomUUID } from 'node:crypto';
import type { Store } from '../store/types.ts';
import { ForbiddenError, UnauthenticatedError } from '../core/errors.ts';
import { bearer, type Authorizer } from '../transport/index.ts';
import type { Allocation } from '../core/types.ts';

export const IDENTITY_TTL_SECONDS = 3600;
const ALG = 'EdDSA';
const ISSUER = 'unum';
const AUDIENCE = 'unum';
const KEY_PREFIX = '/unum/identity/keys/';

/** What a workload token says. */
export interface WorkloadClaims {
  namespace: string;
  job: string;
  group: string;
  alloc: string;
  task: string;
  node: string;
}

interface StoredKey {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
  createdAt: number;
}

export class WorkloadIdentity {
  private readonly store: Store;
  private key: Promise<StoredKey> | undefined;
  private keySet: ReturnType<typeof createLocalJWKSet> | undefined;

  constructor(store: Store) {
    this.store = store;
  }

  /** The signing key every server shares: the first that needs one makes it (create-if-absent). */
  private signingKey(): Promise<StoredKey> {
    this.key ??= this.loadOrMake().catch((err: unknown) => {
      this.key = undefined;
      throw err;
    });
    return this.key;
  }

  private async loadOrMake(): Promise<StoredKey> {
    const existing = await this.store.range({ prefix: KEY_PREFIX }, { limit: 1 });
    const kv = existing.kvs[0];
    if (kv) return JSON.parse(kv.value) as StoredKey;
    const { privateKey, publicKey } = await generateKeyPair(ALG, { extractable: true, crv: 'Ed25519' });
    const kid = randomUUID();
    const made: StoredKey = {
      kid,
      privateJwk: { ...(await exportJWK(privateKey)), kid, alg: ALG },
      publicJwk: { ...(await exportJWK(publicKey)), kid, alg: ALG, use: 'sig' },
      createdAt: Date.now(),
    };
    const key = '/unum/identity/keys/current';
    const res = await this.store.txn({
      compare: [{ key, target: 'create', op: '=', value: 0 }],
      success: [{ type: 'put', key, value: JSON.stringify(made) }],
      failure: [{ type: 'get', key }],
    });
    if (res.succeeded) return made;
    // Another server made it first: use theirs.
    const read = res.results[0];
    const theirs = read?.type === 'get' ? read.kvs[0] : undefined;
    if (!theirs) throw new Error('the identity key vanished while it was made');
    return JSON.parse(theirs.value) as StoredKey;
  }

  /** The public keys, as a JWK set. */
  async jwks(): Promise<{ keys: JWK[] }> {
    return { keys: [(await this.signingKey()).publicJwk] };
  }

  /** A token for one task of an allocation. */
  async sign(alloc: Allocation, task: string, now: number): Promise<{ token: string; expiresAt: number }> {
    const key = await this.signingKey();
    const claims: WorkloadClaims = {
      namespace: alloc.namespace,
      job: alloc.jobId,
      group: alloc.group,
      alloc: alloc.id,
      task,
      node: alloc.nodeId,
    };
    const iat = Math.floor(now / 1000);
    const exp = iat + IDENTITY_TTL_SECONDS;
    const token = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: ALG, kid: key.kid, typ: 'JWT' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(`${alloc.namespace}/${alloc.jobId}/${alloc.id}/${task}`)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .sign(await importJWK(key.privateJwk, ALG));
    return { token, expiresAt: exp * 1000 };
  }

  /** The claims of a valid token; UnauthenticatedError when it is not one of ours, or expired. */
  async verify(token: string): Promise<WorkloadClaims> {
    // Made once: the key set is the same for every verification.
    this.keySet ??= createLocalJWKSet(await this.jwks());
    const keys = this.keySet;
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: [ALG],
      });
      return payload as unknown as WorkloadClaims;
    } catch (err) {
      throw new UnauthenticatedError(`this workload identity is not valid: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
}

/** A bearer that looks like a JWT (three base64url parts). */
export function looksLikeJwt(bearer: string): boolean {
  return /^ey[\w-]+\.[\w-]+\.[\w-]+$/.test(bearer);
}

/**
 * The door with workloads: a bearer that is a JWT must be a valid workload identity (`kind:
 * 'workload'`, its claims attached). It is granted no capability yet: the routes a task may call
 * for itself (`anyone` routes that check the identity) are all it reaches.
 */
export function withWorkloadIdentity(inner: Authorizer, identity: WorkloadIdentity): Authorizer {
  return {
    async authenticate(req) {
      const secret = bearer(req);
      if (secret !== undefined && looksLikeJwt(secret)) {
        const claims = await identity.verify(secret);
        return {
          name: `${claims.namespace}/${claims.job}/${claims.alloc}/${claims.task}`,
          kind: 'workload',
          claims: { ...claims },
        };
      }
      return inner.authenticate(req);
    },
    async authorize(who, capability, namespace) {
      if (who.kind === 'workload')
        throw new ForbiddenError(
          `a workload identity does not grant ${capability}: it lets a task act only for itself (its namespace's services and KV, where they exist)`,
        );
      return inner.authorize(who, capability, namespace);
    },
  };
}
