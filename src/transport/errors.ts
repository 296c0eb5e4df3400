/**
 * How errors leave over HTTP: `{ "error": { code, message, details? } }` with the status the one
 * code→status table (src/api/errors.ts) gives. Anything that is not an UnumError is a bug: it is
 * logged and answered as `internal`, without its message (which may name paths or internals).
 */
import type { ServerResponse } from 'node:http';
import { STATUS_BY_CODE, type WireError } from '../api/errors.ts';
import { InternalError, UnumError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';

/** Writes a JSON response with its length. */
export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * The status and body of an error. `details.status` overrides the table's status (405 for a
 * method a path does not serve) and is not sent.
 */
export function encodeError(err: UnumError): { status: number; body: WireError } {
  const status = Number(err.details?.['status'] ?? STATUS_BY_CODE[err.code]);
  const details = err.details
    ? Object.fromEntries(Object.entries(err.details).filter(([k]) => k !== 'status'))
    : undefined;
  return {
    status,
    body: {
      error: {
        code: err.code,
        message: err.message,
        ...(details && Object.keys(details).length ? { details } : {}),
      },
    },
  };
}

/**
 * Answers with the error. A response already under way (a stream) can not change its status: it is
 * cut instead, which the client sees as a truncated body.
 */
export function sendError(res: ServerResponse, err: unknown, log: Logger): void {
  const e = err instanceof UnumError ? err : new InternalError('internal error', { cause: err });
  if (!(err instanceof UnumError)) log.error({ err, url: res.req?.url }, 'request failed');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const { status, body } = encodeError(e);
  sendJson(res, status, body);
}
