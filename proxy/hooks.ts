import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { NormalizedUrl } from '../blocklists/types';
import type { IdentitySource } from '../core/vocabulary';

/**
 * What the protocol asks of whoever decides (mitmproxy's lesson: layers yield hooks, addons
 * decide). The gateway parses, identifies the connection's place, forwards and relays; every
 * judgement about who may see what, and every consequence of one (an incident, a block page, a
 * safe-search rewrite), is behind these hooks, implemented by filter/hooks.ts.
 *
 * They are synchronous where the request path is: a hook that returns a value costs a call, not
 * an await, and a passed request with nothing to change allocates nothing (PASS is shared).
 */

/** Who is behind a connection, as the hooks found them; the gateway carries it to each request and logs clientIp/user/device at debug. */
export interface Identity {
  clientIp: string;
  user: string | null;
  device: string | null;
  group: string;
  /** Which source named the person (filter/identify.ts's precedence); recorded with each incident. */
  source: IdentitySource;
}

/** Why a request was refused a sign-in: the code the 407 carries. */
export type AuthRefusal = { refused: 'SG_ERR_PROXY_AUTH' | 'SG_ERR_PROXY_AUTH_LOCKED' };

/** Forward the request; `path`/`headers` replace the path and add request headers (safe search). */
export interface Pass {
  readonly pass: true;
  readonly path?: string;
  readonly headers?: Record<string, string>;
}

/** Answer instead of forwarding. `blocked` counts it in the gateway's stats.blocked (a recorded block). */
export interface Respond {
  readonly pass: false;
  readonly status: number;
  /** X-Schoolgate-Error. */
  readonly code: string;
  readonly html: string;
  /** X-Schoolgate-Category, when a category decided. */
  readonly category?: string | null;
  readonly blocked: boolean;
}

/** A WebSocket the hooks refuse: closed with 1008 and this reason. */
export interface Refuse {
  readonly pass: false;
  readonly reason: string;
  readonly blocked: boolean;
}

/** The one "forward unchanged" answer, shared so a passed request allocates nothing for it. */
export const PASS: Pass = Object.freeze({ pass: true });

export interface GatewayHooks {
  /** A new client connection: its identity by address, or null to refuse it (403 SG_ERR_CLIENT_DENIED). */
  admit(clientIp: string): Identity | null;
  /**
   * A request outside a tunnel (plain HTTP, CONNECT, WebSocket upgrade): who sent it, given who
   * the connection's address says. A value when nothing need be checked (most requests skip the
   * await), a promise when credentials are; a refusal answers 407.
   */
  identify(connection: Identity, req: IncomingMessage): Identity | Promise<Identity | AuthRefusal>;
  /**
   * CONNECT, before any TLS: tunnel unread, intercept, or refuse (403, nothing connected) a host
   * that may not be decrypted but may not be reached either.
   */
  decideConnect(host: string, identity: Identity): 'tunnel' | 'intercept' | 'refuse';
  /**
   * One HTTP request, as it will be fetched: `url` is what is classified, `path` what is sent
   * upstream, `connectHost` the tunnel's CONNECT target when inside one. `method` and `headers`
   * are the client's own (node's objects, not copied): whether the person opened a page or a page
   * fetched something by itself is told by them (Sec-Fetch-*, Accept).
   */
  onRequest(url: NormalizedUrl, path: string, identity: Identity, connectHost: string | undefined, method: string, headers: IncomingHttpHeaders): Pass | Respond;
  /** A WebSocket upgrade, before its upstream side is opened. */
  onWebSocket(url: NormalizedUrl, identity: Identity, connectHost: string | undefined): Pass | Refuse;
  /**
   * A passed request whose response is over (sent in full, cut, or failed): `status` as the
   * origin answered (0 when it never did), `bytes` of response body relayed. Optional: the
   * gateway counts nothing for it when absent. Called once per passed request, never throws.
   */
  onResponseDone?(url: NormalizedUrl, identity: Identity, status: number, bytes: number): void;
}

/**
 * The gateway's own pages (as mitmproxy answers mitm.it): every request whose host is `host`,
 * plain or inside a CONNECT tunnel to it, is handed to `handle`. That name is never resolved,
 * forwarded or tunnelled: a CONNECT to it is intercepted with a leaf certificate for it whatever
 * decideConnect would say, and its requests never reach onRequest (they are not browsing, and
 * cannot be blocked). What the pages are is the composition root's business (server/start.ts);
 * the protocol only knows the name.
 */
export interface LocalPages {
  /** Lower case, no trailing dot (core/config.ts checkPagesHost). */
  readonly host: string;
  /**
   * One request: `req.url` is origin-form (path and query) by then, the body unread. `clientIp` is
   * the address the gateway admitted the connection from: never anything the client sent, so the
   * pages may bind what they accept to it.
   */
  handle(req: IncomingMessage, res: ServerResponse, clientIp: string): void;
}
