/**
 * The HTTP edge: a small router over node:http. Every request goes through one door —
 * authenticate, then authorize the route's capability in its namespace — before its handler runs.
 * Handlers return a value (sent as JSON) or take over the response for streams. Errors become
 * `{ "error": { code, message, details } }` with the status from src/api/errors.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidError, NotFoundError, UnumError, InternalError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { STATUS_BY_CODE } from '../api/errors.ts';
import type { Authorizer, Capability, Identity } from './auth.ts';

export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Parsed JSON body (undefined when there is none). */
  body: unknown;
  identity: Identity;
  namespace: string;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
}

/** What a handler returns: a JSON value, or STREAMED when it wrote the response itself. */
export const STREAMED = Symbol('streamed');

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  capability: Capability;
  summary: string;
  /** OpenAPI fragments. */
  requestSchema?: Record<string, unknown>;
  query?: { name: string; description: string }[];
  stream?: 'sse' | 'text';
  handler(ctx: RequestContext): Promise<unknown> | unknown;
}

interface Compiled {
  route: Route;
  pattern: RegExp;
  names: string[];
}

const MAX_BODY = 4 * 1024 * 1024;

export class Router {
  private compiled: Compiled[] = [];
  readonly routes: Route[] = [];
  private readonly authorizer: Authorizer;
  private readonly log: Logger;

  constructor(authorizer: Authorizer, log: Logger) {
    this.authorizer = authorizer;
    this.log = log;
  }

  add(...routes: Route[]): void {
    for (const route of routes) {
      const names: string[] = [];
      const source = route.path.replace(/:([a-zA-Z]+)/g, (_, n: string) => {
        names.push(n);
        return '([^/]+)';
      });
      this.compiled.push({ route, pattern: new RegExp(`^${source}$`), names });
      this.routes.push(route);
    }
  }

  /** The request listener for http.createServer. */
  handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.dispatch(req, res).catch((err: unknown) => this.sendError(res, err));
  };

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://unum');
    const method = req.method ?? 'GET';
    let match: { c: Compiled; m: RegExpExecArray } | undefined;
    let pathMatched = false;
    for (const c of this.compiled) {
      const m = c.pattern.exec(url.pathname);
      if (!m) continue;
      pathMatched = true;
      if (c.route.method === method) {
        match = { c, m };
        break;
      }
    }
    if (!match) {
      if (pathMatched)
        throw new InvalidError(`${method} is not allowed on ${url.pathname}`, { details: { status: 405 } });
      throw new NotFoundError(
        `no API route ${method} ${url.pathname}; the routes are listed at /v1/openapi.json`,
      );
    }
    const { c, m } = match;
    const params: Record<string, string> = {};
    c.names.forEach((n, i) => {
      params[n] = decodeURIComponent(m[i + 1] ?? '');
    });
    const body = method === 'POST' || method === 'PUT' ? await readJson(req) : undefined;
    const identity = await this.authorizer.authenticate(req);
    const namespace = url.searchParams.get('namespace') ?? 'default';
    await this.authorizer.authorize(identity, c.route.capability, namespace);
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    const result = await c.route.handler({
      req,
      res,
      params,
      query: url.searchParams,
      body,
      identity,
      namespace,
      signal: abort.signal,
    });
    if (result === STREAMED) return;
    sendJson(res, 200, result ?? {});
  }

  sendError(res: ServerResponse, err: unknown): void {
    const e = err instanceof UnumError ? err : new InternalError('internal error', { cause: err });
    if (!(err instanceof UnumError)) this.log.error({ err }, 'request failed');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const status = Number(e.details?.['status'] ?? STATUS_BY_CODE[e.code]);
    const details = e.details
      ? Object.fromEntries(Object.entries(e.details).filter(([k]) => k !== 'status'))
      : undefined;
    sendJson(res, status, {
      error: {
        code: e.code,
        message: e.message,
        ...(details && Object.keys(details).length ? { details } : {}),
      },
    });
  }
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new InvalidError(`request body larger than ${MAX_BODY / 1024 / 1024} MiB`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidError(`request body is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

/** Opens a Server-Sent Events response. */
export function openSse(res: ServerResponse): {
  send(event: string, data: unknown, id?: number): void;
  comment(text: string): void;
} {
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();
  return {
    send(event, data, id) {
      res.write(`${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    comment(text) {
      res.write(`: ${text}\n\n`);
    },
  };
}

/** Parses `?index=N&wait=30s` of a blocking query. */
export function blockingParams(
  query: URLSearchParams,
  parseDuration: (s: string) => number | undefined,
): { index: number; waitMs: number } {
  const index = Number(query.get('index') ?? '0');
  if (!Number.isInteger(index) || index < 0) throw new InvalidError('index: expected a non-negative integer');
  const waitText = query.get('wait');
  let waitMs = 0;
  if (waitText !== null) {
    const ms = parseDuration(waitText);
    if (ms === undefined) throw new InvalidError(`wait: expected a duration like "30s", got "${waitText}"`);
    waitMs = Math.min(ms, 5 * 60_000);
  } else if (query.has('index')) waitMs = 5 * 60_000;
  return { index, waitMs };
}
