/**
 * The task API: how a task reaches the cluster's API although its network cannot reach the host.
 * Each task gets a Unix socket in its secrets directory (`$UNUM_API_SOCKET`, reachable only by the
 * task: the directory is its own, mode 0700) on which the agent relays HTTP requests under /v1/ to
 * a server. The agent adds nothing of its own: a request carries the task's workload identity (or
 * whatever token the task sends) and the server authorizes it as it would any other. What the relay
 * bounds, so that a task cannot use it against the agent: requests at once per task, body size,
 * header size, and how long a request may last.
 */
import {
  request as httpRequest,
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { request as httpsRequest } from 'node:https';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../core/log.ts';
import type { AllocHook } from './runner/hooks.ts';

export interface TaskApiLimits {
  /** Requests one task may have in flight (default 16; more get 503). */
  concurrent: number;
  /** Request body bytes (default 1 MiB; more get 413). */
  maxBody: number;
  /** Longest a request may last, blocking queries included (default 6 min). */
  timeoutMs: number;
}

/** sun_path holds 108 bytes, the terminating NUL included. */
const MAX_SOCKET_PATH = 108;

export const DEFAULT_TASK_API_LIMITS: TaskApiLimits = {
  concurrent: 16,
  maxBody: 1 << 20,
  timeoutMs: 6 * 60_000,
};

/** Request headers passed on; everything else (cookies, Origin, forwarding headers) stays behind. */
const PASSED_HEADERS = ['authorization', 'content-type', 'accept', 'x-unum-token'] as const;

export class TaskApiSocket {
  private readonly server: Server;

  private constructor(server: Server) {
    this.server = server;
  }

  /**
   * Listens on `path` (a stale socket there is replaced) and relays to the first server that answers.
   * A path longer than a socket address holds (108 bytes) is bound in `shortDir` (same file system)
   * and renamed into place: a socket is found by its file, whatever name it was bound under. Clients
   * then connect through a shorter name for it (relative to $UNUM_SECRETS_DIR: `api.sock`).
   */
  static async listen(
    path: string,
    servers: () => readonly string[],
    logger: Logger,
    shortDir: string,
    limits: TaskApiLimits = DEFAULT_TASK_API_LIMITS,
    /** The cluster CA of https:// servers; the node's own certificate is never presented for a task. */
    ca?: () => string | undefined,
  ): Promise<TaskApiSocket> {
    await rm(path, { force: true });
    const bindAt =
      Buffer.byteLength(path) < MAX_SOCKET_PATH
        ? path
        : join(shortDir, `${randomBytes(6).toString('hex')}.sock`);
    if (bindAt !== path) await mkdir(shortDir, { recursive: true, mode: 0o700 });
    const counter = { inFlight: 0 };
    const server = createServer(
      { maxHeaderSize: 16 * 1024, requestTimeout: limits.timeoutMs },
      (req, res) => {
        void relay(counter, req, res, servers(), limits, logger, ca?.());
      },
    );
    server.maxConnections = limits.concurrent * 2;
    server.headersTimeout = 10_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(bindAt, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Only the task reaches it (the secrets directory is its own); its uid is not root's.
    await chmod(bindAt, 0o666);
    if (bindAt !== path) await rename(bindAt, path);
    return new TaskApiSocket(server);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/** Relays one request of a task to the first server that answers. */
async function relay(
  counter: { inFlight: number },
  req: IncomingMessage,
  res: ServerResponse,
  servers: readonly string[],
  limits: TaskApiLimits,
  logger: Logger,
  ca: string | undefined,
): Promise<void> {
  const url = req.url ?? '/';
  if (!url.startsWith('/v1/') && !url.startsWith('/.well-known/')) {
    answer(res, 404, 'not_found', 'the task API relays the cluster API under /v1/ only');
    req.resume();
    return;
  }
  if (counter.inFlight >= limits.concurrent) {
    answer(res, 503, 'unavailable', `at most ${limits.concurrent} requests at once through the task API`);
    req.resume();
    return;
  }
  counter.inFlight++;
  try {
    const body = await readBody(req, limits.maxBody);
    if (body === undefined) {
      answer(res, 413, 'invalid', `request body larger than ${limits.maxBody} bytes`);
      return;
    }
    const headers: Record<string, string> = {};
    for (const h of PASSED_HEADERS) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    if (body.length > 0) headers['content-length'] = String(body.length);
    for (const base of servers) {
      const sent = await forward(base, url, req.method ?? 'GET', headers, body, res, limits.timeoutMs, ca);
      if (sent) return;
    }
    answer(res, 503, 'unavailable', 'no server reachable from this node');
  } catch (err) {
    logger.debug({ err }, 'task API request failed');
    if (!res.headersSent) answer(res, 502, 'unavailable', 'the server did not answer');
    else res.destroy();
  } finally {
    counter.inFlight--;
  }
}

function answer(res: ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { code, message } }) + '\n');
}

/** The whole body, or undefined past `max` bytes. */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) over = true;
      else if (!over) chunks.push(c);
    });
    req.on('end', () => resolve(over ? undefined : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * Sends the request to one server and streams its answer back. Resolves false when that server
 * could not be reached (the next one is tried), true once an answer started.
 */
function forward(
  base: string,
  path: string,
  method: string,
  headers: Record<string, string>,
  body: Buffer,
  res: ServerResponse,
  timeoutMs: number,
  ca: string | undefined,
): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const target = new URL(path, base);
    const https = target.protocol === 'https:';
    const send = https ? httpsRequest : httpRequest;
    // Over TLS the task's request goes with the cluster CA only: it carries the task's own token,
    // never the node's certificate (which would make the task the node).
    const options = { method, headers, timeout: timeoutMs, ...(https && ca !== undefined ? { ca } : {}) };
    const up = send(target, options, (answer) => {
      const out: Record<string, string> = {};
      for (const h of ['content-type', 'x-unum-index', 'cache-control']) {
        const v = answer.headers[h];
        if (typeof v === 'string') out[h] = v;
      }
      res.writeHead(answer.statusCode ?? 502, out);
      answer.pipe(res);
      answer.on('end', () => resolve(true));
      answer.on('error', reject);
      res.on('close', () => up.destroy());
    });
    up.on('timeout', () => up.destroy(new Error('timed out')));
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (
        !res.headersSent &&
        (err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENOTFOUND')
      )
        resolve(false);
      else reject(err);
    });
    up.end(body);
  });
}

/**
 * The allocation hook that opens each task's socket before the tasks start (again after an agent
 * restart, for tasks that kept running) and closes them when the allocation stops.
 */
export function taskApiHook(
  socketPaths: readonly string[],
  servers: () => readonly string[],
  logger: Logger,
  shortDir: string,
  ca?: () => string | undefined,
): AllocHook {
  let open: TaskApiSocket[] = [];
  const closeAll = (): void => {
    const closing = open;
    open = [];
    for (const s of closing) void s.close();
  };
  return {
    name: 'task-api',
    async prestart() {
      open = await Promise.all(
        socketPaths.map((p) => TaskApiSocket.listen(p, servers, logger, shortDir, undefined, ca)),
      );
    },
    stop: closeAll,
    finished: closeAll,
  };
}
