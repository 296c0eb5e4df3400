/**
 * Lease renewals over etcd's LeaseKeepAlive stream. `keepAlive(id)` sends one renewal and waits for
 * etcd's answer for that lease (answers come back in order per lease). The stream is opened on the
 * first renewal and, when it breaks (a member restarted, the connection cut), the renewals waiting
 * on it fail with UnavailableError and the next renewal opens a new stream, on the next member if
 * there are several: a caller that renews every third of the TTL and retries on UnavailableError
 * keeps its lease through a member's restart.
 */
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { NotFoundError, UnavailableError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { LeaseGrant } from '../types.ts';
import { type Int64, int } from './codec.ts';
import type { Connection } from './connection.ts';

interface Waiter {
  resolve(grant: LeaseGrant): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

interface KeepAliveResponse {
  ID: Int64;
  TTL: Int64;
}

export class EtcdKeepAlive {
  private readonly conn: Connection;
  private readonly log: Logger;
  private stream: ClientDuplexStream<unknown, unknown> | undefined;
  private opening: Promise<ClientDuplexStream<unknown, unknown>> | undefined;
  private readonly waiting = new Map<number, Waiter[]>();
  private closed = false;

  constructor(conn: Connection, log: Logger) {
    this.conn = conn;
    this.log = log;
  }

  async keepAlive(id: number): Promise<LeaseGrant> {
    const stream = await this.open();
    return new Promise<LeaseGrant>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.remove(id, waiter);
          reject(
            new UnavailableError(
              `etcd did not answer the keep-alive of lease ${id} within ${this.conn.config.timeoutMs} ms: ` +
                'check that a majority of the etcd members is up; retry the keep-alive',
            ),
          );
        }, this.conn.config.timeoutMs),
      };
      const list = this.waiting.get(id) ?? [];
      list.push(waiter);
      this.waiting.set(id, list);
      stream.write({ ID: String(id) });
    });
  }

  close(): void {
    this.closed = true;
    this.stream?.cancel();
    this.stream = undefined;
    this.failAll(this.conn.closedError());
  }

  private open(): Promise<ClientDuplexStream<unknown, unknown>> {
    if (this.closed) return Promise.reject(this.conn.closedError());
    if (this.stream !== undefined) return Promise.resolve(this.stream);
    if (this.opening !== undefined) return this.opening;
    const endpoint = this.conn.endpoint;
    this.opening = this.conn
      .duplex('Lease', 'LeaseKeepAlive')
      .then((stream) => {
        if (this.closed) {
          stream.cancel();
          throw this.conn.closedError();
        }
        this.stream = stream;
        stream.on('data', (response: KeepAliveResponse) => this.answer(response));
        const broken = (err: Error): void => {
          if (this.stream !== stream) return;
          this.stream = undefined;
          if (this.closed) return;
          this.log.warn({ err: err.message, endpoint }, 'etcd: the lease keep-alive stream broke');
          this.conn.failedOver(endpoint);
          this.failAll(this.conn.fail(err, 'lease keep-alive'));
        };
        stream.on('error', broken);
        stream.on('end', () => broken(new UnavailableError('the keep-alive stream ended')));
        return stream;
      })
      .finally(() => {
        this.opening = undefined;
      });
    return this.opening;
  }

  private answer(response: KeepAliveResponse): void {
    const id = int(response.ID, 'lease id');
    const waiter = this.waiting.get(id)?.[0];
    if (waiter === undefined) return;
    this.remove(id, waiter);
    const ttl = int(response.TTL, 'TTL');
    if (ttl <= 0) waiter.reject(new NotFoundError(`lease ${id} expired or does not exist`));
    else waiter.resolve({ id, ttlSeconds: ttl });
  }

  private remove(id: number, waiter: Waiter): void {
    clearTimeout(waiter.timer);
    const list = this.waiting.get(id);
    if (list === undefined) return;
    const at = list.indexOf(waiter);
    if (at !== -1) list.splice(at, 1);
    if (list.length === 0) this.waiting.delete(id);
  }

  private failAll(err: Error): void {
    for (const [id, list] of [...this.waiting]) {
      for (const waiter of [...list]) {
        this.remove(id, waiter);
        waiter.reject(err);
      }
    }
  }
}
