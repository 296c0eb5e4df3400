/**
 * etcd's errors as the Store's classes. etcd reports them as gRPC statuses whose code is shared by
 * several errors (OUT_OF_RANGE is both "compacted" and "future revision"); its own Go client tells
 * them apart by the status message (`rpctypes`), and so does this: these messages are etcd's
 * stable API. Anything unrecognized keeps the gRPC code's meaning.
 */
import { status as Status, type ServiceError } from '@grpc/grpc-js';
import {
  InternalError,
  InvalidError,
  NotFoundError,
  ForbiddenError,
  UnauthenticatedError,
  UnavailableError,
  type UnumError,
} from '../../core/errors.ts';

/** etcd's messages for the errors the Store tells apart (etcdserver/api/v3rpc/rpctypes). */
export const ETCD_ERRORS = {
  compacted: 'mvcc: required revision has been compacted',
  futureRevision: 'mvcc: required revision is a future revision',
  leaseNotFound: 'etcdserver: requested lease not found',
  leaseExists: 'lease already exists',
  requestTooLarge: 'etcdserver: request is too large',
  invalidToken: 'etcdserver: invalid auth token',
} as const;

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number';
}

/** The etcd error's text (details), without gRPC's "N CODE: " prefix. */
export function etcdMessage(err: ServiceError): string {
  return err.details ?? err.message;
}

export function hasMessage(err: unknown, message: string): boolean {
  return isServiceError(err) && etcdMessage(err).includes(message);
}

/**
 * A gRPC failure of `what` against `endpoint` as a Store error. Compaction is not mapped here:
 * CompactedError needs the compaction revision, which the store looks up (etcd-store.ts).
 */
export function storeError(err: unknown, what: string, endpoint: string, limitBytes: number): UnumError {
  if (!isServiceError(err)) {
    return new InternalError(`etcd ${what}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  const text = etcdMessage(err);
  if (
    text.includes(ETCD_ERRORS.requestTooLarge) ||
    (err.code === Status.RESOURCE_EXHAUSTED && text.includes('larger than max'))
  ) {
    return new InvalidError(
      `etcd ${what}: the request is larger than etcd accepts (--max-request-bytes, ${limitBytes} bytes ` +
        `configured in the store URL's max-request-bytes): write smaller values, or raise the limit on ` +
        `every etcd member and in the store URL`,
      { cause: err, details: { fields: [{ path: 'value', message: 'too large for etcd' }] } },
    );
  }
  if (text.includes(ETCD_ERRORS.futureRevision)) {
    return new InvalidError(`revision: ${what}: the revision is in the future`, {
      cause: err,
      details: { fields: [{ path: 'revision', message: 'the revision is in the future' }] },
    });
  }
  switch (err.code) {
    case Status.NOT_FOUND:
      return new NotFoundError(`etcd ${what}: ${text}`, { cause: err });
    case Status.INVALID_ARGUMENT:
    case Status.FAILED_PRECONDITION:
    case Status.OUT_OF_RANGE:
      return new InvalidError(`etcd ${what}: ${text}`, { cause: err });
    case Status.PERMISSION_DENIED:
      return new ForbiddenError(
        `etcd ${what}: ${text}: give the store URL's etcd user read and write access to every key`,
        { cause: err },
      );
    case Status.UNAUTHENTICATED:
      return new UnauthenticatedError(
        `etcd ${what}: ${text}: check the user and password of the store URL (or UNUM_ETCD_PASSWORD)`,
        { cause: err },
      );
    case Status.UNAVAILABLE:
    case Status.DEADLINE_EXCEEDED:
    case Status.CANCELLED:
    case Status.ABORTED:
    case Status.RESOURCE_EXHAUSTED:
      return new UnavailableError(
        `etcd ${what} at ${endpoint} failed (${text}): check that the etcd members of the store URL ` +
          `are running and reachable and that a majority of them is up; the call may succeed when retried`,
        { cause: err },
      );
    default:
      return new InternalError(`etcd ${what}: ${text}`, { cause: err });
  }
}
