/**
 * Browsers cannot be used against unum. A web page the operator visits can make the browser send
 * requests to 127.0.0.1:8686 (cross-site request forgery), and can point a DNS name of its own at
 * 127.0.0.1 to read the answers (DNS rebinding). So:
 * - only known host names are served: `Host` must be an IP literal (a rebinding attack needs a
 *   DNS name of its own), `localhost`, or a name the operator allows (`--allow-host NAME`);
 * - a request that changes state must come from no origin (curl, the CLI, agents) or from the same
 *   origin (unum's own web page), and one with a body must say `Content-Type: application/json`
 *   (a form or a `text/plain` fetch cannot, without a CORS preflight unum never approves).
 * Refusals are 403 `forbidden`, with what to do.
 */
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { ForbiddenError } from '../core/errors.ts';

export interface BrowserPolicy {
  /** Host names served besides IP literals and `localhost` (lower case, without a port). */
  allowedHosts?: readonly string[];
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The host name of a `Host` header: without the port, brackets of an IPv6 literal removed. */
export function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') > 0 ? h.indexOf(']') : undefined);
  const colon = h.lastIndexOf(':');
  return (colon >= 0 && h.indexOf(':') === colon ? h.slice(0, colon) : h).replace(/\.$/, '');
}

function hostAllowed(name: string, policy: BrowserPolicy): boolean {
  if (isIP(name) !== 0) return true;
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  return (policy.allowedHosts ?? []).some((h) => h.toLowerCase() === name);
}

/** ForbiddenError when the request could have been made by a web page against unum's will. */
export function checkBrowserRequest(req: IncomingMessage, policy: BrowserPolicy = {}): void {
  const host = req.headers.host;
  if (host !== undefined && !hostAllowed(hostName(host), policy))
    throw new ForbiddenError(
      `this server does not answer to the host name "${hostName(host)}" (a DNS rebinding guard): use an IP address or localhost, or start it with --allow-host ${hostName(host)}`,
      { details: { host: hostName(host) } },
    );
  const method = req.method ?? 'GET';
  if (SAFE_METHODS.has(method)) return;
  const origin = req.headers.origin;
  if (origin !== undefined && !sameOrigin(origin, host))
    throw new ForbiddenError(
      `a ${method} from the web origin ${origin} is refused: unum takes changes only from its own page or from clients that send no Origin (the CLI, curl, agents)`,
      { details: { origin } },
    );
  const hasBody =
    (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') ||
    req.headers['transfer-encoding'] !== undefined;
  if ((method === 'POST' || method === 'PUT') && (hasBody || req.headers['content-type'] !== undefined)) {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json')
      throw new ForbiddenError(
        `a ${method} must send its body as Content-Type: application/json (got ${type === '' ? 'none' : `"${type}"`})`,
        { details: { contentType: type } },
      );
  }
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  if (origin === 'null' || host === undefined) return false;
  try {
    const o = new URL(origin);
    return (o.protocol === 'http:' || o.protocol === 'https:') && o.host.toLowerCase() === host.toLowerCase();
  } catch {
    return false;
  }
}
