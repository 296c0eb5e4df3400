/** The HTTP transport of the server and the agent: see README.md. */
export { allowAll, bearer, type Authorizer, type Capability, type Identity } from './auth.ts';
export { BodyBudget, MAX_BODIES_BYTES, MAX_BODY_BYTES, readJson } from './body.ts';
export { checkBrowserRequest, hostName, type BrowserPolicy } from './browser.ts';
export { encodeError, sendError, sendJson } from './errors.ts';
export {
  advertisedHost,
  DEFAULT_CONNECTION_LIMITS,
  listen,
  type ConnectionLimits,
  type ListenOptions,
  type Listener,
  type TlsOptions,
} from './listen.ts';
export { CERT_ORGANIZATION, peerOf, peerProblem, subjectIdentity, type CertRole, type Peer } from './peer.ts';
export { blockingParams, booleanParam, countParam } from './query.ts';
export { Router, STREAMED, type RequestContext, type Route, type RouterOptions } from './router.ts';
export { openSse, type SseStream } from './sse.ts';
