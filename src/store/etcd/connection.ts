/**
 * The gRPC side of the etcd store: one channel per member of the URL, the service clients on it,
 * unary calls with a deadline, bidirectional streams, authentication.
 *
 * Members: calls go to the current member; a call that finds it unavailable moves the store to the
 * next one (round robin), so the next call tries there. Reads are retried on the other members at
 * once; writes are not (a write that timed out may have been applied: retrying it could apply it
 * twice), their UnavailableError says to retry. Streams (watch, keep-alive) reconnect themselves
 * (watch.ts, leases.ts) and pick the current member when they do.
 *
 * Authentication (a user in the URL): a token from Auth.Authenticate, sent as the `token` metadata
 * of every call; when etcd says the token is no longer valid (tokens expire), the call is retried
 * once with a fresh one.
 */
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { InvalidError, UnavailableError, type UnumError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import { ETCD_ERRORS, hasMessage, isServiceError, storeError } from './errors.ts';
import { etcdServices, type EtcdServices } from './proto.ts';
import type { EtcdConfig } from './url.ts';

export type ServiceName = keyof EtcdServices;

/** A dynamic gRPC client: methods are looked up by name from the proto. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- methods are generated at run time from the proto text
type DynamicClient = grpc.Client & Record<string, any>;

interface Member {
  endpoint: string;
  channel: grpc.Channel;
  clients: Partial<Record<ServiceName, DynamicClient>>;
}

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // Size limits are etcd's (--max-request-bytes), checked before sending; a watch response holds a
  // whole revision, however big.
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  // A restarted member is found again within a second, not after gRPC's default minutes of backoff.
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1000,
  // A member that stopped answering (paused, partitioned) is noticed; etcd allows a ping every 5 s.
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5000,
};

function credentials(config: EtcdConfig): grpc.ChannelCredentials {
  if (config.tls === undefined) return grpc.credentials.createInsecure();
  const read = (what: string, path: string | undefined): Buffer | null => {
    if (path === undefined) return null;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new InvalidError(`store URL: cannot read the ${what} file ${path}: ${(err as Error).message}`, {
        cause: err,
        details: { fields: [{ path: `store.${what}`, message: 'cannot read the file' }] },
      });
    }
  };
  return grpc.credentials.createSsl(
    read('ca', config.tls.ca),
    read('key', config.tls.key),
    read('cert', config.tls.cert),
  );
}

export class Connection {
  readonly config: EtcdConfig;
  private readonly services: EtcdServices;
  private readonly members: Member[];
  private readonly log: Logger;
  private current = 0;
  private token: string | undefined;
  private authenticating: Promise<string> | undefined;
  private closed = false;
  /** The newest etcd revision any response showed (0: none yet). */
  observedRevision = 0;

  constructor(config: EtcdConfig, log: Logger) {
    this.config = config;
    this.log = log;
    this.services = etcdServices();
    const creds = credentials(config);
    this.members = config.endpoints.map((endpoint) => ({
      endpoint,
      channel: new grpc.Channel(endpoint, creds, CHANNEL_OPTIONS),
      clients: {},
    }));
  }

  /** The member calls go to now. */
  get endpoint(): string {
    return this.members[this.current]!.endpoint;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private client(service: ServiceName, member: Member): DynamicClient {
    let client = member.clients[service];
    if (client === undefined) {
      const Ctor = this.services[service];
      client = new Ctor(member.endpoint, grpc.credentials.createInsecure(), {
        channelOverride: member.channel,
      }) as DynamicClient;
      member.clients[service] = client;
    }
    return client;
  }

  /** Moves to the next member after `endpoint` failed (unless another call already moved on). */
  failedOver(endpoint: string): void {
    if (this.members.length > 1 && this.endpoint === endpoint) {
      this.current = (this.current + 1) % this.members.length;
      this.log.debug({ from: endpoint, to: this.endpoint }, 'etcd: trying the next member');
    }
  }

  /** The error every call gets once the store is closed. */
  closedError(): UnavailableError {
    return new UnavailableError('store is closed');
  }

  /** Metadata for a call: the auth token when there is a user, and etcd's "require a leader". */
  async metadata(): Promise<grpc.Metadata> {
    const metadata = new grpc.Metadata();
    // etcd fails calls and streams on a member that has lost its leader instead of leaving them hanging.
    metadata.set('hasleader', 'true');
    if (this.config.auth !== undefined) metadata.set('token', await this.authToken());
    return metadata;
  }

  private authToken(): Promise<string> {
    if (this.token !== undefined) return Promise.resolve(this.token);
    this.authenticating ??= this.rawUnary<{ token: string }>(
      'Auth',
      'Authenticate',
      {
        name: this.config.auth!.user,
        password: this.config.auth!.password,
      },
      new grpc.Metadata(),
    )
      .then((response) => {
        this.token = response.token;
        return response.token;
      })
      .finally(() => {
        this.authenticating = undefined;
      });
    return this.authenticating;
  }

  private rawUnary<T>(
    service: ServiceName,
    method: string,
    request: unknown,
    metadata: grpc.Metadata,
  ): Promise<T> {
    const member = this.members[this.current]!;
    const client = this.client(service, member);
    return new Promise<T>((resolve, reject) => {
      const deadline = Date.now() + this.config.timeoutMs;
      client[method](request, metadata, { deadline }, (err: grpc.ServiceError | null, response: T) => {
        if (err !== null) {
          if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED) {
            this.failedOver(member.endpoint);
          }
          reject(err);
        } else {
          this.observe((response as { header?: { revision?: string } | null } | undefined)?.header?.revision);
          resolve(response);
        }
      });
    });
  }

  /**
   * One unary call with the configured deadline. Rejects with the gRPC ServiceError (callers map
   * it with `fail`); `idempotent` calls are retried on each other member when one is unavailable.
   */
  async unary<T>(service: ServiceName, method: string, request: unknown, idempotent: boolean): Promise<T> {
    if (this.closed) throw this.closedError();
    let attempts = idempotent ? this.members.length : 1;
    let authRetried = false;
    for (;;) {
      try {
        return await this.rawUnary<T>(service, method, request, await this.metadata());
      } catch (err) {
        if (this.closed) throw this.closedError();
        if (!authRetried && this.config.auth !== undefined && hasMessage(err, ETCD_ERRORS.invalidToken)) {
          authRetried = true;
          this.token = undefined;
          continue;
        }
        const unavailable =
          isServiceError(err) &&
          (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED);
        if (unavailable && --attempts > 0) continue;
        throw err;
      }
    }
  }

  /** Notes a revision etcd reported (a response header's). */
  observe(revision: string | number | undefined): void {
    const n = Number(revision ?? 0);
    if (n > this.observedRevision) this.observedRevision = n;
  }

  /** A Store error for a failed call (see errors.ts). */
  fail(err: unknown, what: string): UnumError {
    if (this.closed) return this.closedError();
    if (err instanceof Error && 'code' in err && typeof err.code === 'string') return err as UnumError;
    return storeError(err, what, this.endpoint, this.config.maxRequestBytes);
  }

  /** Opens a bidirectional stream on the current member. */
  async duplex(service: ServiceName, method: string): Promise<grpc.ClientDuplexStream<unknown, unknown>> {
    if (this.closed) throw this.closedError();
    const metadata = await this.metadata();
    const member = this.members[this.current]!;
    return this.client(service, member)[method](metadata) as grpc.ClientDuplexStream<unknown, unknown>;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const member of this.members) {
      for (const client of Object.values(member.clients)) client.close();
      member.channel.close();
    }
  }
}
