/**
 * What every route module shares: its dependencies, and the lookups that turn a request's ids into
 * objects (with the errors a user sees when they do not match). Routes only parse, authorize,
 * call a state transition or read the cache, and respond.
 */
import type { Clock } from '../../core/clock.ts';
import { parseDuration } from '../../core/duration.ts';
import { InvalidError, NotFoundError } from '../../core/errors.ts';
import { shortId } from '../../core/ids.ts';
import { parseJobSpec, type JobSpec } from '../../core/job-spec.ts';
import type { Logger } from '../../core/log.ts';
import type { Allocation, Job, Node } from '../../core/types.ts';
import { JobBodySchema, parseBody } from '../../api/schemas.ts';
import type { Store } from '../../store/types.ts';
import type { Authorizer, Capability } from '../../transport/index.ts';
import type { StateCache } from '../cache.ts';
import type { Heartbeats } from '../heartbeats.ts';
import type { ServerPki } from '../pki.ts';
import type { AgentCaller } from './agents.ts';
import type { WorkloadIdentity } from '../identity.ts';
import { blockingParams, type RequestContext } from '../../transport/index.ts';
import type { LeaderLink } from '../leadership/leader-link.ts';
import type { Leadership } from '../leadership/leadership.ts';
import { commit, type Transition } from '../state/write.ts';

export interface ApiDeps {
  store: Store;
  cache: StateCache;
  leadership: Leadership;
  /** The other servers: where they answer, who leads. */
  link: Pick<LeaderLink, 'servers'>;
  heartbeats: Heartbeats;
  identity: WorkloadIdentity;
  authorizer: Authorizer;
  log: Logger;
  clock: Clock;
  version: string;
  addr: () => string;
  /** `ephemeral.sizeMiB` of a submitted group that sets none (`--alloc-disk-mib`). */
  allocDiskMiB: number;
  /** The cluster CA of a TLS server (nodes join and prove themselves by certificate); none on plain `unum up`. */
  pki?: ServerPki;
  /** How the server calls agents (logs, stats). */
  agents: AgentCaller;
}

/** Who made a change, as events record it (the audit trail). */
export function actorOf(ctx: RequestContext): string {
  const id = ctx.identity;
  if (id.kind === 'token')
    return id.accessor !== undefined ? `token:${id.name} (${id.accessor})` : `token:${id.name}`;
  if (id.kind === 'agent') return `node:${id.name}`;
  return id.kind;
}

/**
 * Authorizes `capability` in `namespace` when it is not the namespace the router already checked:
 * a listing across namespaces (`*`), or an object found by id in another namespace.
 */
export async function authorizeIn(
  d: ApiDeps,
  ctx: RequestContext,
  capability: Capability,
  namespace: string,
): Promise<void> {
  if (namespace !== ctx.namespace) await d.authorizer.authorize(ctx.identity, capability, namespace);
}

/** A write from the API: the transition, retried on conflict, returned once the cache has it. */
export function write<T>(d: ApiDeps, build: () => Transition<T>): Promise<T> {
  return commit(d.store, d.cache, build);
}

export function requireJob(d: ApiDeps, ctx: RequestContext): Job {
  const job = d.cache.job(ctx.namespace, ctx.params['id'] ?? '');
  if (!job) throw new NotFoundError(`no job "${ctx.params['id']}" in namespace "${ctx.namespace}"`);
  return job;
}

/** An allocation by id or unique id prefix (at least 4 characters). */
export function findAlloc(d: ApiDeps, idOrPrefix: string): Allocation {
  const exact = d.cache.alloc(idOrPrefix);
  if (exact) return exact;
  if (idOrPrefix.length < 4) throw new InvalidError('an allocation id prefix needs at least 4 characters');
  const matches = d.cache.listAllocs().filter((a) => a.id.startsWith(idOrPrefix));
  if (matches.length === 0) throw new NotFoundError(`no allocation with id ${idOrPrefix}`);
  if (matches.length > 1)
    throw new InvalidError(
      `allocation id prefix ${idOrPrefix} is ambiguous: ${matches.map((a) => shortId(a.id)).join(', ')}`,
    );
  return matches[0]!;
}

/** A node by id, name or id prefix (at least 4 characters). */
export function findNode(d: ApiDeps, id: string): Node {
  const { cache } = d;
  const n =
    cache.node(id) ??
    cache.listNodes().find((x) => x.name === id) ??
    (id.length >= 4 ? cache.listNodes().find((x) => x.id.startsWith(id)) : undefined);
  if (!n) throw new NotFoundError(`no node ${id}`);
  return n;
}

/** A blocking query: waits until `indexOf()` passes the request's `index` (at most `wait`). */
export async function waitIndex(d: ApiDeps, ctx: RequestContext, indexOf: () => number): Promise<number> {
  const { index, waitMs } = blockingParams(ctx.query, parseDuration);
  if (index > 0 && waitMs > 0) await d.cache.waitUntil(() => indexOf() > index, waitMs, ctx.signal);
  return Math.max(indexOf(), 1);
}

/** The job document of a submission, validated; writing into another namespace needs that namespace's right. */
export async function specFromBody(d: ApiDeps, ctx: RequestContext): Promise<JobSpec> {
  const { job } = parseBody(JobBodySchema, ctx.body, 'job submission');
  if (job === null || typeof job !== 'object' || Array.isArray(job))
    throw new InvalidError('job: expected a job document (an object with "job" and "groups")');
  const doc = job as Record<string, unknown>;
  // A file without a namespace goes to the one the request names.
  const withNs =
    doc['namespace'] === undefined && ctx.query.has('namespace') ? { ...doc, namespace: ctx.namespace } : doc;
  const spec = parseJobSpec(withNs, { allocDiskMiB: d.allocDiskMiB });
  if (spec.namespace !== ctx.namespace)
    await d.authorizer.authorize(ctx.identity, 'job:write', spec.namespace);
  return spec;
}
