/**
 * A small router over node:http, shared by the server's API and the agent's own endpoint. Every
 * request goes through one door (auth.ts) — authenticate, then authorize the route's capability in
 * its namespace — before its handler runs. Handlers return a value (sent as JSON) or take over the
 * response for streams (STREAMED). Errors become JSON errors (errors.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidError, NotFoundError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { Authorizer, Capability, Identity } from './auth.ts';
import { readJson } from './body.ts';
import { checkBrowserRequest, type BrowserPolicy } from './browser.ts';
import { sendError, sendJson } from './errors.ts';

/**
 * Why a request's signal aborts. Made once: every response's close aborts its signal, and a new
 * DOMException (with its stack) each time took about 5% of the server's time on small requests.
 */
const CLIENT_GONE = new DOMException('the response is over (sent, or the client went away)', 'AbortError');

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
  /** `/v1/jobs/:id`: a `:name` segment becomes `params.name` (URL-decoded). */
  path: string;
  /**
   * What the caller must be allowed in the request's namespace; several: any one of them;
   * `anyone`: no authorization (the handler checks).
   */
  capability: Capability | readonly Capability[] | 'anyone';
  summary: string;
  /** OpenAPI fragments. */
  requestSchema?: Record<string, unknown>;
  query?: { name: string; description: string }[];
  stream?: 'sse' | 'text';
  handler(ctx: RequestContext): Promise<unknown> | unknown;
}

export interface RouterOptions {
  /** HEAD is answered by the GET route of the path (node:http sends no body). Default false. */
  headForGet?: boolean;
  /** `/v1/x/` matches `/v1/x`. Default false. */
  trimTrailingSlash?: boolean;
  /** The message of a 404 for a path no route serves. */
  notFound?: (method: string, path: string) => string;
  /** Refuse requests a web page could make against unum's will (browser.ts). Default: on. */
  browser?: BrowserPolicy | false;
}

interface Compiled {
  route: Route;
  pattern: RegExp;
  names: string[];
}

export class Router {
  private compiled: Compiled[] = [];
  readonly routes: Route[] = [];
  private readonly authorizer: Authorizer;
  private readonly log: Logger;
  private readonly options: RouterOptions;

  constructor(authorizer: Authorizer, log: Logger, options: RouterOptions = {}) {
    this.authorizer = authorizer;
    this.log = log;
    this.options = options;
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
    if (this.options.browser !== false) checkBrowserRequest(req, this.options.browser);
    const url = requestUrl(req.url ?? '/');
    const method = req.method ?? 'GET';
    const path = this.options.trimTrailingSlash ? url.pathname.replace(/(.)\/+$/, '$1') : url.pathname;
    const wanted = method === 'HEAD' && this.options.headForGet ? 'GET' : method;
    let match: { c: Compiled; m: RegExpExecArray } | undefined;
    let pathMatched = false;
    for (const c of this.compiled) {
      const m = c.pattern.exec(path);
      if (!m) continue;
      pathMatched = true;
      if (c.route.method === wanted) {
        match = { c, m };
        break;
      }
    }
    if (!match) {
      if (pathMatched)
        throw new InvalidError(`${method} is not allowed on ${path}`, { details: { status: 405 } });
      throw new NotFoundError(
        this.options.notFound?.(method, path) ??
          `no API route ${method} ${path}; the routes are listed at /v1/openapi.json`,
      );
    }
    const { c, m } = match;
    const params: Record<string, string> = {};
    c.names.forEach((n, i) => {
      params[n] = decodeParam(n, m[i + 1] ?? '');
    });
    // Who, then whether, then the body: an unauthenticated caller never makes the server read one.
    const identity = await this.authorizer.authenticate(req);
    const namespace = url.searchParams.get('namespace') ?? 'default';
    if (c.route.capability !== 'anyone') await this.authorizeAny(identity, c.route.capability, namespace);
    const body = method === 'POST' || method === 'PUT' ? await readJson(req) : undefined;
    const abort = new AbortController();
    res.on('close', () => abort.abort(CLIENT_GONE));
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

  /** Passes when the identity may use the capability, or any one of several (the first refusal is thrown). */
  private async authorizeAny(
    identity: Identity,
    capability: Capability | readonly Capability[],
    namespace: string,
  ): Promise<void> {
    const wanted: readonly Capability[] = typeof capability === 'string' ? [capability] : capability;
    let refusal: unknown;
    for (const c of wanted) {
      try {
        await this.authorizer.authorize(identity, c, namespace);
        return;
      } catch (err) {
        refusal ??= err;
      }
    }
    throw refusal;
  }

  /** Answers with a JSON error (see errors.ts). */
  sendError(res: ServerResponse, err: unknown): void {
    sendError(res, err, this.log);
  }
}

/** The request's URL; InvalidError (400) for a target that is not one (`//`, `//host:99999`). */
function requestUrl(target: string): URL {
  try {
    return new URL(target, 'http://unum');
  } catch (err) {
    throw new InvalidError(`the request target ${JSON.stringify(target.slice(0, 100))} is not a valid URL`, {
      cause: err,
    });
  }
}

/** A path segment, URL-decoded; InvalidError (400) for malformed percent-encoding (`%zz`, `%E0%A4`). */
function decodeParam(name: string, raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch (err) {
    throw new InvalidError(
      `${name}: malformed percent-encoding in the path: ${JSON.stringify(raw.slice(0, 100))}`,
      {
        cause: err,
      },
    );
  }
}
