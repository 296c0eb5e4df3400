/** Where each object lives in the Store. Everything unum keeps is under `/unum/`. */
export const ROOT = '/unum/';

export const keys = {
  job: (namespace: string, id: string) => `/unum/jobs/${namespace}/${id}`,
  alloc: (id: string) => `/unum/allocs/${id}`,
  node: (id: string) => `/unum/nodes/${id}`,
  /**
   * The node's liveness: put when it registers, deleted when the leader marks it down. Beats are
   * kept in the leader's memory and never written here (src/server/heartbeats.ts).
   */
  heartbeat: (id: string) => `/unum/heartbeats/${id}`,
  /** The node's credential: the hash of its secret, and the key servers call its agent with. Never served. */
  nodeCredential: (id: string) => `/unum/node-credentials/${id}`,
  evaluation: (id: string) => `/unum/evals/${id}`,
  /** Sorted by time; the store revision of the write is the event's index. */
  event: (time: number, suffix: string) => `/unum/events/${String(time).padStart(15, '0')}-${suffix}`,
  /** Servers wait in line here to lead (src/store/recipes/election.ts): the first in line leads. */
  leaders: '/unum/leaders/',
  /** A server's address, written at its start: where the others reach it when it leads. */
  server: (id: string) => `/unum/servers/${id}`,
  /** ACL tokens by accessor (the secret's hash inside, never the secret). */
  aclToken: (accessor: string) => `/unum/acl/tokens/${accessor}`,
  aclPolicy: (name: string) => `/unum/acl/policies/${name}`,
  /** Exists once the cluster's first management token was made. */
  aclBootstrap: '/unum/acl/bootstrap',
  /** Join tokens by id (the secret's hash inside, never the secret). */
  joinToken: (id: string) => `/unum/join-tokens/${id}`,
  /** The cluster CA (certificate and key) that servers sharing the Store share. Never served. */
  clusterCa: '/unum/pki/ca',
} as const;

export const prefixes = {
  jobs: '/unum/jobs/',
  allocs: '/unum/allocs/',
  nodes: '/unum/nodes/',
  heartbeats: '/unum/heartbeats/',
  nodeCredentials: '/unum/node-credentials/',
  aclTokens: '/unum/acl/tokens/',
  aclPolicies: '/unum/acl/policies/',
  joinTokens: '/unum/join-tokens/',
  evals: '/unum/evals/',
  events: '/unum/events/',
} as const;
