/**
 * The server's in-memory view of the cluster, fed by one Store watch on `/unum/`. Every API read is
 * answered from here; blocking queries wait on its index (the Store revision it has applied).
 * Objects are replaced, never mutated, so a reference handed out stays a consistent value.
 */
import type { Logger } from '../core/log.ts';
import type { Allocation, ClusterEvent, Evaluation, Job, Node } from '../core/types.ts';
import { nodeTakesWork } from '../scheduler/check-plan.ts';
import type { Snapshot } from '../scheduler/types.ts';
import type { KeyValue, Store, Watcher, WatchEvent } from '../store/types.ts';
import { ROOT, prefixes } from './keys.ts';
import type { NodeCredential } from './node-credentials.ts';
import type { AclPolicy } from '../core/acl.ts';
import type { StoredToken } from './acl/tokens.ts';
import type { StoredJoinToken } from './state/join-tokens.ts';

export type CacheChange =
  | { kind: 'job'; key: string; job?: Job; prev?: Job }
  | { kind: 'alloc'; alloc?: Allocation; prev?: Allocation }
  | { kind: 'node'; node?: Node; prev?: Node }
  | { kind: 'heartbeat'; nodeId: string; alive: boolean }
  | { kind: 'eval'; evaluation?: Evaluation; prev?: Evaluation }
  | { kind: 'event'; event: ClusterEvent }
  | { kind: 'resync' };

export type CacheListener = (changes: CacheChange[], index: number) => void;

const EVENT_RING = 20_000;

export const jobKey = (namespace: string, id: string) => `${namespace}/${id}`;

export class StateCache implements Snapshot {
  /** The Store revision this cache reflects. */
  index = 0;
  private jobs = new Map<string, Job>();
  private allocs = new Map<string, Allocation>();
  private allocsByJob = new Map<string, Map<string, Allocation>>();
  private allocsByNode = new Map<string, Map<string, Allocation>>();
  private nodes = new Map<string, Node>();
  private alive = new Set<string>();
  private evals = new Map<string, Evaluation>();
  private credentials = new Map<string, NodeCredential>();
  private nodeBySecret = new Map<string, string>();
  private tokens = new Map<string, StoredToken>();
  private tokenBySecret = new Map<string, string>();
  private policies = new Map<string, AclPolicy>();
  private joinTokens = new Map<string, StoredJoinToken>();
  /** Recent events, oldest first. */
  readonly events: ClusterEvent[] = [];
  /** Last revision that touched a job, its allocations or its evaluations. */
  private jobIndex = new Map<string, number>();
  /** Last revision that touched an allocation on a node. */
  private nodeAllocIndex = new Map<string, number>();
  private tableIndex = { jobs: 0, allocs: 0, nodes: 0, evals: 0 };
  /** Store modRevision of each object key, for compare-and-swap writes. */
  private revisions = new Map<string, number>();
  private listeners = new Set<CacheListener>();
  private waiters = new Set<() => void>();
  private watcher: Watcher | undefined;
  private readonly store: Store;
  private readonly log: Logger;

  constructor(store: Store, log: Logger) {
    this.store = store;
    this.log = log;
  }

  /** Loads everything under /unum/ and follows changes from there on. */
  async start(): Promise<void> {
    await this.load();
  }

  stop(): void {
    this.watcher?.cancel();
    this.watcher = undefined;
    for (const w of this.waiters) w();
  }

  private async load(): Promise<void> {
    this.watcher?.cancel();
    this.jobs.clear();
    this.allocs.clear();
    this.allocsByJob.clear();
    this.allocsByNode.clear();
    this.nodes.clear();
    this.alive.clear();
    this.evals.clear();
    this.credentials.clear();
    this.nodeBySecret.clear();
    this.tokens.clear();
    this.tokenBySecret.clear();
    this.policies.clear();
    this.joinTokens.clear();
    this.events.length = 0;
    this.revisions.clear();
    let after: string | undefined;
    let revision = 0;
    // Page through at one revision so the load is one consistent picture.
    for (;;) {
      const page = await this.store.range(
        { prefix: ROOT },
        { limit: 5000, ...(after !== undefined ? { after } : {}), ...(revision ? { revision } : {}) },
      );
      if (!revision) revision = page.revision;
      for (const kv of page.kvs) this.applyPut(kv, []);
      if (!page.more || page.kvs.length === 0) break;
      after = page.kvs[page.kvs.length - 1]!.key;
    }
    this.events.sort((a, b) => a.index - b.index);
    this.index = revision;
    this.watcher = this.store.watch(
      { prefix: ROOT, fromRevision: revision + 1, prevKv: false },
      {
        onEvents: (events) => this.onWatch(events),
        onError: (err) => {
          this.log.warn({ err }, 'state watch ended; reloading the cache');
          this.load().then(
            () => this.emit([{ kind: 'resync' }]),
            (e: unknown) => this.log.error({ err: e }, 'cannot reload the cache'),
          );
        },
      },
    );
  }

  private onWatch(events: WatchEvent[]): void {
    const changes: CacheChange[] = [];
    for (const e of events) {
      if (e.type === 'put') this.applyPut(e.kv, changes);
      else this.applyDelete(e.kv, changes);
      if (e.kv.modRevision > this.index) this.index = e.kv.modRevision;
    }
    this.emit(changes);
  }

  private emit(changes: CacheChange[]): void {
    for (const l of this.listeners) {
      try {
        l(changes, this.index);
      } catch (err) {
        this.log.error({ err }, 'cache listener failed');
      }
    }
    for (const w of [...this.waiters]) w();
  }

  private applyPut(kv: KeyValue, changes: CacheChange[]): void {
    const rev = kv.modRevision;
    const key = kv.key;
    if (!key.startsWith(prefixes.events)) this.revisions.set(key, rev);
    if (key.startsWith(prefixes.allocs)) {
      const alloc = JSON.parse(kv.value) as Allocation;
      const prev = this.allocs.get(alloc.id);
      this.setAlloc(alloc, prev, rev);
      changes.push(prev ? { kind: 'alloc', alloc, prev } : { kind: 'alloc', alloc });
    } else if (key.startsWith(prefixes.jobs)) {
      const job = JSON.parse(kv.value) as Job;
      const k = jobKey(job.namespace, job.id);
      const prev = this.jobs.get(k);
      this.jobs.set(k, job);
      this.jobIndex.set(k, rev);
      this.tableIndex.jobs = rev;
      changes.push(prev ? { kind: 'job', key: k, job, prev } : { kind: 'job', key: k, job });
    } else if (key.startsWith(prefixes.nodes)) {
      const node = JSON.parse(kv.value) as Node;
      const prev = this.nodes.get(node.id);
      this.nodes.set(node.id, node);
      this.tableIndex.nodes = rev;
      changes.push(prev ? { kind: 'node', node, prev } : { kind: 'node', node });
    } else if (key.startsWith(prefixes.heartbeats)) {
      // Written only when the node registers: each put is news (a beat, for the failure detector).
      const nodeId = key.slice(prefixes.heartbeats.length);
      this.alive.add(nodeId);
      this.tableIndex.nodes = rev;
      changes.push({ kind: 'heartbeat', nodeId, alive: true });
    } else if (key.startsWith(prefixes.aclTokens)) {
      const token = JSON.parse(kv.value) as StoredToken;
      const prev = this.tokens.get(token.accessor);
      if (prev) this.tokenBySecret.delete(prev.secretHash);
      this.tokens.set(token.accessor, token);
      this.tokenBySecret.set(token.secretHash, token.accessor);
    } else if (key.startsWith(prefixes.aclPolicies)) {
      const policy = JSON.parse(kv.value) as AclPolicy;
      this.policies.set(policy.name, policy);
    } else if (key.startsWith(prefixes.joinTokens)) {
      const token = JSON.parse(kv.value) as StoredJoinToken;
      this.joinTokens.set(token.id, token);
    } else if (key.startsWith(prefixes.nodeCredentials)) {
      const cred = JSON.parse(kv.value) as NodeCredential;
      const prev = this.credentials.get(cred.nodeId);
      if (prev) this.nodeBySecret.delete(prev.secretHash);
      this.credentials.set(cred.nodeId, cred);
      this.nodeBySecret.set(cred.secretHash, cred.nodeId);
    } else if (key.startsWith(prefixes.evals)) {
      const evaluation = JSON.parse(kv.value) as Evaluation;
      const prev = this.evals.get(evaluation.id);
      this.evals.set(evaluation.id, evaluation);
      this.jobIndex.set(jobKey(evaluation.namespace, evaluation.jobId), rev);
      this.tableIndex.evals = rev;
      changes.push(prev ? { kind: 'eval', evaluation, prev } : { kind: 'eval', evaluation });
    } else if (key.startsWith(prefixes.events)) {
      const event = { ...(JSON.parse(kv.value) as Omit<ClusterEvent, 'index'>), index: rev };
      this.events.push(event);
      if (this.events.length > EVENT_RING) this.events.splice(0, this.events.length - EVENT_RING);
      changes.push({ kind: 'event', event });
    }
  }

  private applyDelete(kv: KeyValue, changes: CacheChange[]): void {
    const rev = kv.modRevision;
    const key = kv.key;
    this.revisions.delete(key);
    if (key.startsWith(prefixes.allocs)) {
      const id = key.slice(prefixes.allocs.length);
      const prev = this.allocs.get(id);
      if (!prev) return;
      this.allocs.delete(id);
      this.allocsByJob.get(jobKey(prev.namespace, prev.jobId))?.delete(id);
      this.allocsByNode.get(prev.nodeId)?.delete(id);
      this.jobIndex.set(jobKey(prev.namespace, prev.jobId), rev);
      this.nodeAllocIndex.set(prev.nodeId, rev);
      this.tableIndex.allocs = rev;
      changes.push({ kind: 'alloc', prev });
    } else if (key.startsWith(prefixes.jobs)) {
      const k = key.slice(prefixes.jobs.length);
      const prev = this.jobs.get(k);
      this.jobs.delete(k);
      this.jobIndex.set(k, rev);
      this.tableIndex.jobs = rev;
      changes.push(prev ? { kind: 'job', key: k, prev } : { kind: 'job', key: k });
    } else if (key.startsWith(prefixes.nodes)) {
      const id = key.slice(prefixes.nodes.length);
      const prev = this.nodes.get(id);
      this.nodes.delete(id);
      this.tableIndex.nodes = rev;
      changes.push(prev ? { kind: 'node', prev } : { kind: 'node' });
    } else if (key.startsWith(prefixes.heartbeats)) {
      const nodeId = key.slice(prefixes.heartbeats.length);
      this.alive.delete(nodeId);
      this.tableIndex.nodes = rev;
      changes.push({ kind: 'heartbeat', nodeId, alive: false });
    } else if (key.startsWith(prefixes.aclTokens)) {
      const prev = this.tokens.get(key.slice(prefixes.aclTokens.length));
      if (prev) {
        this.tokenBySecret.delete(prev.secretHash);
        this.tokens.delete(prev.accessor);
      }
    } else if (key.startsWith(prefixes.aclPolicies)) {
      this.policies.delete(key.slice(prefixes.aclPolicies.length));
    } else if (key.startsWith(prefixes.joinTokens)) {
      this.joinTokens.delete(key.slice(prefixes.joinTokens.length));
    } else if (key.startsWith(prefixes.nodeCredentials)) {
      const id = key.slice(prefixes.nodeCredentials.length);
      const prev = this.credentials.get(id);
      if (prev) this.nodeBySecret.delete(prev.secretHash);
      this.credentials.delete(id);
    } else if (key.startsWith(prefixes.evals)) {
      const id = key.slice(prefixes.evals.length);
      const prev = this.evals.get(id);
      this.evals.delete(id);
      this.tableIndex.evals = rev;
      changes.push(prev ? { kind: 'eval', prev } : { kind: 'eval' });
    } else if (key.startsWith(prefixes.events)) {
      const at = this.events.findIndex((e) => e.index === kv.createRevision);
      if (at >= 0) this.events.splice(at, 1);
    }
  }

  private setAlloc(alloc: Allocation, prev: Allocation | undefined, rev: number): void {
    this.allocs.set(alloc.id, alloc);
    const jk = jobKey(alloc.namespace, alloc.jobId);
    let byJob = this.allocsByJob.get(jk);
    if (!byJob) this.allocsByJob.set(jk, (byJob = new Map()));
    byJob.set(alloc.id, alloc);
    if (prev && prev.nodeId !== alloc.nodeId) this.allocsByNode.get(prev.nodeId)?.delete(alloc.id);
    let byNode = this.allocsByNode.get(alloc.nodeId);
    if (!byNode) this.allocsByNode.set(alloc.nodeId, (byNode = new Map()));
    byNode.set(alloc.id, alloc);
    this.jobIndex.set(jk, rev);
    this.nodeAllocIndex.set(alloc.nodeId, rev);
    this.tableIndex.allocs = rev;
  }

  // --- reads --------------------------------------------------------------------------------

  job(namespace: string, id: string): Job | undefined {
    return this.jobs.get(jobKey(namespace, id));
  }
  listJobs(namespace?: string): Job[] {
    const all = [...this.jobs.values()];
    return (
      namespace === undefined || namespace === '*' ? all : all.filter((j) => j.namespace === namespace)
    ).sort((a, b) => a.namespace.localeCompare(b.namespace) || a.id.localeCompare(b.id));
  }
  allocsOfJob(namespace: string, id: string): readonly Allocation[] {
    return [...(this.allocsByJob.get(jobKey(namespace, id))?.values() ?? [])];
  }
  allocsOnNode(nodeId: string): readonly Allocation[] {
    return [...(this.allocsByNode.get(nodeId)?.values() ?? [])];
  }
  alloc(id: string): Allocation | undefined {
    return this.allocs.get(id);
  }
  listAllocs(): Allocation[] {
    return [...this.allocs.values()];
  }
  node(id: string): Node | undefined {
    return this.nodes.get(id);
  }
  listNodes(): Node[] {
    return [...this.nodes.values()].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  }
  isAlive(nodeId: string): boolean {
    return this.alive.has(nodeId);
  }
  /** Nodes up (registered and not marked down). */
  aliveCount(): number {
    return this.alive.size;
  }
  readyNodes(): readonly Node[] {
    return this.listNodes().filter((n) => nodeTakesWork(this, n));
  }
  /** An ACL token by accessor (with its secret's hash: server-side only). */
  aclToken(accessor: string): StoredToken | undefined {
    return this.tokens.get(accessor);
  }
  aclTokenOfSecret(secretHash: string): StoredToken | undefined {
    const accessor = this.tokenBySecret.get(secretHash);
    return accessor === undefined ? undefined : this.tokens.get(accessor);
  }
  listAclTokens(): StoredToken[] {
    return [...this.tokens.values()].sort((a, b) => a.createdAt - b.createdAt);
  }
  aclPolicy(name: string): AclPolicy | undefined {
    return this.policies.get(name);
  }
  listAclPolicies(): AclPolicy[] {
    return [...this.policies.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** A join token by id (with its secret's hash: server-side only). */
  joinToken(id: string): StoredJoinToken | undefined {
    return this.joinTokens.get(id);
  }
  listJoinTokens(): StoredJoinToken[] {
    return [...this.joinTokens.values()].sort((a, b) => a.createdAt - b.createdAt);
  }

  /** A node's credential (server-side only: never served). */
  nodeCredential(nodeId: string): NodeCredential | undefined {
    return this.credentials.get(nodeId);
  }
  /** The node whose secret has this hash. */
  nodeOfSecret(secretHash: string): string | undefined {
    return this.nodeBySecret.get(secretHash);
  }
  evaluation(id: string): Evaluation | undefined {
    return this.evals.get(id);
  }
  listEvals(): Evaluation[] {
    return [...this.evals.values()];
  }

  /** The Store modRevision of a key as this cache last saw it (0: absent). */
  revisionOf(key: string): number {
    return this.revisions.get(key) ?? 0;
  }

  /** Index for blocking queries on one job (its spec, allocations and evaluations). */
  indexOfJob(namespace: string, id: string): number {
    return this.jobIndex.get(jobKey(namespace, id)) ?? 0;
  }
  indexOfNodeAllocs(nodeId: string): number {
    return this.nodeAllocIndex.get(nodeId) ?? 0;
  }
  indexOf(table: keyof StateCache['tableIndex']): number {
    return this.tableIndex[table];
  }

  subscribe(listener: CacheListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves true once `ready()` holds (checked after every applied change), false after `timeoutMs`. */
  waitUntil(ready: () => boolean, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (ready()) return Promise.resolve(true);
    // A client already gone: no waiter, no timer left behind for the whole wait.
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (value: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        signal?.removeEventListener('abort', onAbort);
        resolve(value);
      };
      const check = () => {
        if (ready()) done(true);
        else if (!this.watcher) done(false);
      };
      const onAbort = () => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      signal?.addEventListener('abort', onAbort);
      this.waiters.add(check);
    });
  }

  /** Resolves once the cache has applied `revision` (so a reader sees its own write). */
  waitForIndex(revision: number, timeoutMs = 10_000): Promise<boolean> {
    return this.waitUntil(() => this.index >= revision, timeoutMs);
  }
}
