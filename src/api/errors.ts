/** The one table from error code to HTTP status, used by the server edge and the client. */
import type { ErrorCode } from '../core/errors.ts';

export const STATUS_BY_CODE: Record<ErrorCode, number> = {
  invalid: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  compacted: 410,
  internal: 500,
  not_leader: 503,
  unavailable: 503,
};

/** The JSON body of every error response. */
export interface WireError {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}
