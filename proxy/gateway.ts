import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { Proxy, type IContext, type IWebSocketContext } from 'http-mitm-proxy';
import { Agent as UndiciAgent, type Dispatcher } from 'undici';
import { createRequire } from 'node:module';
import type { EventEmitter } from 'node:events';
import { normalizeHost, normalizeUrl, SCHEME } from '../blocklists/normalize';
import type { NormalizedUrl } from '../blocklists/types';
import { codes } from '../core/errors';
import type { Logger } from '../core/log';
import type { LeafCertificates } from '../certs/leaf';
import { bracketHost, plainIp } from '../core/host';
import { renderErrorPage } from './error-page';
import type { AuthRefusal, GatewayHooks, Identity, LocalPages } from './hooks';
import { Destinations, isDestinationDenied, OWN_PORTS } from './destinations';
import { guardedConnector } from './upstream-connect';
import { ConnectionWatch, DEFAULT_CONNECTION_LIMITS, PerClientCap, type ConnectionLimits, type CutReason } from './timeouts';

/** What the protocol needs: sockets, certificates, limits, and the hooks that decide. */
export interface ProxyDeps {
  leaf: LeafCertificates;
  /** Identification, decisions and their consequences (filter/hooks.ts). */
  hooks: GatewayHooks;
  logger: Logger;
  /** Extra CAs trusted for upstream TLS (tests' local origins); the system store is always trusted. */
  upstreamCa?: string[];
  /** DNS for upstream connections (split-horizon setups; tests point every name at loopback). */
  upstreamLookup?: net.LookupFunction;
  /** Milliseconds to wait for an upstream's response headers before answering 502 (default 30 s). */
  upstreamTimeoutMs?: number;
  /** Milliseconds an idle client connection is kept open (default 60 s). */
  keepAliveTimeoutMs?: number;
  /** Where the gateway may connect (default: the built-in walls, CONNECT to 443 only). Its own listening port is added at listen(). */
  destinations?: Destinations;
  /** Header, idle and handshake limits, and connections per client address (defaults in proxy/timeouts.ts). */
  limits?: Partial<ConnectionLimits>;
  /** The name the gateway answers itself (block page buttons, CA, PAC); absent: every name is forwarded. */
  localPages?: LocalPages;
}

export interface GatewayStats {
  connections: number;
  refused: number;
  requests: number;
  blocked: number;
  tunnels: number;
  intercepts: number;
  upstreamErrors: number;
  /** Requests and tunnels refused because of where they would go (SG_ERR_DESTINATION_DENIED). */
  destinationDenied: number;
  /** Connections cut for being too slow: idle, headers, TLS handshake. */
  timedOut: number;
  /** Connections refused over the per-client cap. */
  tooManyConnections: number;
}

export interface Gateway {
  listen(port: number, host: string): Promise<AddressInfo>;
  address(): AddressInfo | null;
  close(): Promise<void>;
  readonly stats: GatewayStats;
}

/** What a client connection (or a tunnel opened on it) carries for every request on it. */
interface ConnInfo {
  identity: Identity;
  /** Set for connections opened by CONNECT: the only host requests on them may name. */
  connectHost?: string;
  connectPort?: number;
  tls?: boolean;
}

/** Where a passed request goes: decided from what was classified, never from a fresh reading of Host. */
interface Forward {
  host: string;
  port: number;
  path: string;
  hostHeader: string;
  extraHeaders?: Record<string, string>;
}

/** The `ws` that http-mitm-proxy itself uses (it ships no types of its own here). */
type WsServer = EventEmitter;
const requireFromProxy = createRequire(createRequire(import.meta.url).resolve('http-mitm-proxy'));
type VerifyClient = (info: { req: IncomingMessage }, done: (ok: boolean, code?: number, message?: string, headers?: Record<string, string>) => void) => void;
const { WebSocketServer } = requireFromProxy('ws') as { WebSocketServer: new (opts: { server: http.Server; verifyClient?: VerifyClient }) => WsServer };

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'upgrade', 'te', 'trailer', 'transfer-encoding', 'expect'];
const HOP_BY_HOP_SET = new Set(HOP_BY_HOP);

const rawResponse = (status: number, reason: string, code: string, body: string, extra = '') =>
  `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\nX-Schoolgate-Error: ${code}\r\n${extra}\r\n${body}`;

/**
 * http-mitm-proxy with its per-host machinery taken out: no CA or certificate files on disk, no
 * https.Server per host, no loopback hop per CONNECT. We use it for WebSocket relaying and route
 * its errors to our logger instead of the console.
 */
class SchoolProxy extends Proxy {
  constructor(private readonly log: Logger) {
    super();
  }

  override _onError(kind: string, ctx: IContext | null, err: Error): void {
    const code = (err as NodeJS.ErrnoException)?.code;
    if (ctx) ctx.onErrorHandlers.forEach((h) => h(ctx, err, kind));
    if (code === 'ECONNRESET' || code === 'EPIPE') this.log.debug({ kind, code }, 'connection reset');
    else this.log.warn({ kind, code, err: err?.message }, 'proxy error');
  }

  override _onSocketError(socketDescription: string, err: NodeJS.ErrnoException): void {
    this.log.debug({ socket: socketDescription, code: err.code }, 'socket error');
  }

  // A WebSocket refused by policy never gets an upstream side, and the library's close handler
  // reads it unchecked: that TypeError was uncaught and would take the whole gateway down.
  override _onWebSocketClose(ctx: IWebSocketContext, closedByServer: boolean, code: number, message: Buffer): void {
    if (!ctx.proxyToServerWebSocket) return;
    super._onWebSocketClose(ctx, closedByServer, code, message);
  }
}

/**
 * Close 1008 (policy violation), then drop the socket if the client has not answered the close
 * within REFUSED_WS_GRACE_MS: ws would otherwise wait 30 s for a close frame a client may never send.
 */
const REFUSED_WS_GRACE_MS = 2000;
function closeRefused(ws: { close(code: number, reason: string): void; terminate(): void }, reason: string): void {
  ws.close(1008, reason);
  setTimeout(() => ws.terminate(), REFUSED_WS_GRACE_MS).unref();
}

/** Header names a Connection header lists (RFC 9110 §7.6.1), or null when it names none beyond keep-alive/close. */
function connectionTokens(v: string | string[] | undefined): string[] | null {
  if (v === undefined) return null;
  const s = String(v).toLowerCase();
  if (s === 'keep-alive' || s === 'close') return null;
  return s.split(',').map((t) => t.trim());
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Splits `host:port` / `[v6]:port` from a CONNECT line or Host header. */
export function splitHostPort(s: string, defaultPort: number): { host: string; port: number } | null {
  const m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s) ?? /^([^:[\]]+)(?::(\d{1,5}))?$/.exec(s);
  if (!m) return null;
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { host: m[1], port };
}

/**
 * The protocol side of the gateway. It decides nothing itself: see createGateway in
 * filter/gateway.ts for the gateway with the school's policy behind its hooks.
 */
export function createProxy(deps: ProxyDeps): Gateway {
  const log = deps.logger;
  const hooks = deps.hooks;
  const stats: GatewayStats = {
    connections: 0, refused: 0, requests: 0, blocked: 0, tunnels: 0, intercepts: 0, upstreamErrors: 0, destinationDenied: 0, timedOut: 0, tooManyConnections: 0,
  };
  const destinations = deps.destinations ?? new Destinations();
  const limits: ConnectionLimits = { ...DEFAULT_CONNECTION_LIMITS, ...deps.limits };
  const keepAliveTimeout = deps.keepAliveTimeoutMs ?? 60_000;
  const perClient = new PerClientCap(limits.maxConnectionsPerClient);
  let capLoggedAt = 0;
  // A socket cut for slowness may still have a request parsed from what it sent: nothing more is served on it.
  const cut = new WeakSet<object>();
  const watch = new ConnectionWatch(limits, (socket, reason) => cutSlow(socket, reason));
  /** Requests in progress per client socket: the wait for the next request starts when the last one is answered. */
  const inFlight = new WeakMap<object, number>();
  const conns = new WeakMap<object, ConnInfo>();
  /** Who opened each WebSocket, as found by identifyRequest before its handshake. */
  const wsIdentity = new WeakMap<IncomingMessage, Identity>();
  const sockets = new Set<net.Socket>();
  const upstreamTimeout = deps.upstreamTimeoutMs ?? 30_000;
  const debug = log.isLevelEnabled('debug');
  const responseDone = hooks.onResponseDone?.bind(hooks);
  const pages = deps.localPages;
  const pagesHost = pages?.host;

  const upstreamCa = deps.upstreamCa?.length ? [...tls.rootCertificates, ...deps.upstreamCa] : undefined;
  const proxy = new SchoolProxy(log);
  proxy.keepAlive = true;
  proxy.timeout = 0;
  proxy.options = {};
  const lookup = deps.upstreamLookup;
  // Every upstream connection resolves through the destination policy, with the port known where
  // the agent gives it: the socket connects only to addresses that passed (no rebinding window).
  const guardAgent = <A extends http.Agent>(agent: A): A => {
    const own = (agent as unknown as { createConnection: (o: net.NetConnectOpts, cb: unknown) => net.Socket }).createConnection.bind(agent);
    (agent as unknown as { createConnection: unknown }).createConnection = (o: net.TcpNetConnectOpts, cb: unknown) =>
      own({ ...o, lookup: destinations.lookup(lookup, Number(o.port)) }, cb);
    return agent;
  };
  proxy.httpAgent = guardAgent(new http.Agent({ keepAlive: true, maxSockets: 512, maxFreeSockets: 256, timeout: 60_000, lookup }));
  proxy.httpsAgent = guardAgent(new https.Agent({ keepAlive: true, maxSockets: 512, maxFreeSockets: 256, timeout: 60_000, ca: upstreamCa, lookup }));
  // Passed requests (WebSockets stay on the agents above, with http-mitm-proxy). Our own timer
  // covers the wait for response headers; bodies take what they take.
  const upstreamPool = new UndiciAgent({ connections: 512, keepAliveTimeout: 60_000, headersTimeout: 0, bodyTimeout: 0, connect: guardedConnector({ destinations, lookup, ca: upstreamCa, timeoutMs: 10_000 }) });

  // Plain HTTP from clients, and plain HTTP sent inside a CONNECT tunnel.
  const plainServer = http.createServer({ keepAliveTimeout });
  // Requests decrypted from intercepted tunnels: TLS is terminated by our own TLSSocket (one
  // SNI-driven context per host), so a plain http.Server parses what comes out of it.
  const tlsServer = http.createServer({ keepAliveTimeout });
  for (const [server, isSSL] of [[plainServer, false], [tlsServer, true]] as const) {
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const socket = req.socket;
      if (cut.has(socket)) {
        res.destroy();
        return;
      }
      watch.done(socket);
      inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
      res.once('close', () => {
        const n = (inFlight.get(socket) ?? 1) - 1;
        inFlight.set(socket, n);
        // Between requests Node's keep-alive timer cuts a silent socket, but any byte resets it: a
        // next request trickled a byte at a time is ours to limit.
        if (n === 0 && !socket.destroyed) watch.awaitRequest(socket, keepAliveTimeout);
      });
      handleRequest(isSSL, req, res).catch((err) => internalError(res, err));
    });
    server.on('upgrade', (req: IncomingMessage) => watch.done(req.socket));
    server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      // Until the tunnel is open (or refused and closed by the client), one deadline.
      watch.awaitHandshake(socket as net.Socket);
      if (cut.has(socket)) {
        socket.destroy();
        return;
      }
      handleConnect(req, socket as net.Socket, head).catch((err) => {
        log.error({ err }, 'CONNECT handling failed');
        socket.destroy();
      });
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      // Malformed request line or headers: answer 400 and drop the connection, never crash.
      log.debug({ code: err.code, err: err.message }, 'malformed request');
      if (socket.writable && !(err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
        socket.end(rawResponse(400, 'Bad Request', 'SG_ERR_BAD_REQUEST', `${codes.SG_ERR_BAD_REQUEST}\n`));
      } else socket.destroy();
    });
    // The upgrade is identified before the handshake completes, so a client that must sign in
    // gets a 407 it can answer, not an open WebSocket closed a moment later.
    const verifyClient: VerifyClient = (v, done) => {
      const info = conns.get(v.req.socket);
      if (!info) return done(false, 403, 'Forbidden');
      Promise.resolve(identifyRequest(v.req, info)).then(
        (identity) => {
          if (!('refused' in identity)) {
            wsIdentity.set(v.req, identity);
            return done(true);
          }
          done(false, 407, 'Proxy Authentication Required', { 'Proxy-Authenticate': 'Basic realm="schoolgate"', 'X-Schoolgate-Error': identity.refused });
        },
        (err) => {
          log.error({ err }, 'WebSocket identify failed');
          done(false, 500, 'Internal Server Error');
        },
      );
    };
    const wss = new WebSocketServer({ server, verifyClient });
    wss.on('error', (err: Error) => log.warn({ err: err.message }, 'websocket server error'));
    wss.on('connection', (ws: Parameters<Proxy['_onWebSocketServerConnect']>[1], req: IncomingMessage) => {
      // The library builds the upstream URL from Host and throws on a request without one.
      if (!req.headers.host) {
        const info = conns.get(req.socket);
        if (!info?.connectHost) {
          closeRefused(ws, 'Host header required');
          return;
        }
        req.headers.host = `${bracketHost(info.connectHost)}:${info.connectPort}`;
      }
      (ws as unknown as { upgradeReq: IncomingMessage }).upgradeReq = req;
      proxy._onWebSocketServerConnect(isSSL, ws, req);
    });
  }

  proxy.onWebSocketConnection((ctx, callback) => {
    const req = (ctx.clientToProxyWebSocket as unknown as { upgradeReq: IncomingMessage }).upgradeReq;
    // Refusing before an upstream socket exists: mark the context closed first, or the library's
    // close handler dereferences the missing upstream socket and throws (a process crash).
    const refuse = (reason: string) => {
      ctx.closedByServer = true;
      if (ctx.clientToProxyWebSocket) closeRefused(ctx.clientToProxyWebSocket, reason);
    };
    const info = conns.get(req.socket);
    const identity = wsIdentity.get(req);
    if (!info || !identity) return refuse('not authorised');
    const target = requestTarget(ctx.isSSL, req, info);
    if ('error' in target) return refuse('bad request');
    // The gateway's own pages have no WebSocket, and their name has no upstream to open one to.
    if (pagesHost !== undefined && (info.connectHost === pagesHost || target.url.host === pagesHost)) return refuse('not available');
    const outcome = hooks.onWebSocket(target.url, identity, info.connectHost);
    if (!outcome.pass) {
      if (outcome.blocked) stats.blocked++;
      return refuse(outcome.reason);
    }
    // Names are judged by the agents' guarded lookup; IP literals never reach a lookup.
    if (literalRefusal(target.fwd.host, target.fwd.port)) return refuse('destination not allowed');
    const scheme = ctx.isSSL ? 'wss' : 'ws';
    const o = ctx.proxyToServerWebSocketOptions!;
    o.url = `${scheme}://${target.fwd.hostHeader}${target.fwd.path}`;
    const headers = (o.headers ?? {}) as Record<string, unknown>;
    for (const h of HOP_BY_HOP) delete headers[h];
    headers.host = target.fwd.hostHeader;
    callback();
  });

  /** Answers once and lets go of a connection the gateway will not serve. */
  const turnAway = (socket: net.Socket, response: string) => {
    socket.on('error', () => socket.destroy());
    socket.resume(); // read (and drop) what it sends, so its FIN is seen and the socket freed
    socket.setTimeout(5000, () => socket.destroy());
    socket.end(response);
  };

  const front = net.createServer((socket) => {
    stats.connections++;
    const ip = plainIp(socket.remoteAddress);
    const identity = hooks.admit(ip);
    if (identity === null) {
      stats.refused++;
      log.warn({ clientIp: ip, code: 'SG_ERR_CLIENT_DENIED' }, 'client refused: not in the allowed networks');
      turnAway(socket, rawResponse(403, 'Forbidden', 'SG_ERR_CLIENT_DENIED', 'This device is not allowed to use the school web gateway.\n'));
      return;
    }
    if (!perClient.take(ip)) {
      stats.tooManyConnections++;
      // One line per minute at most, and no address: the service log must not say who did what.
      const now = Date.now();
      if (now - capLoggedAt >= 60_000) {
        capLoggedAt = now;
        log.warn({ code: 'SG_ERR_TOO_MANY_CONNECTIONS', limit: perClient.max, refusedSoFar: perClient.refused }, 'connection refused: a client address is over its connection limit');
      }
      turnAway(socket, rawResponse(429, 'Too Many Requests', 'SG_ERR_TOO_MANY_CONNECTIONS',
        `${codes.SG_ERR_TOO_MANY_CONNECTIONS} (at most ${perClient.max} at once). Close some connections and try again.\n`, 'Retry-After: 5\r\n'));
      return;
    }
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      perClient.release(ip);
    });
    socket.setNoDelay(true);
    watch.awaitRequest(socket);
    conns.set(socket, { identity });
    plainServer.emit('connection', socket);
  });
  front.on('error', (err) => log.error({ err: err.message }, 'gateway listener error'));

  /**
   * The one identify step every request passes (plain, CONNECT, WebSocket upgrade). A tunnel's
   * requests were identified at its CONNECT; outside one, the hooks say (with proxy
   * authentication off, from the connection's address alone). Most requests skip the await.
   */
  function identifyRequest(req: IncomingMessage, info: ConnInfo): Identity | Promise<Identity | AuthRefusal> {
    if (info.connectHost !== undefined) return info.identity;
    return hooks.identify(info.identity, req);
  }
  const authMessage = (r: AuthRefusal) =>
    r.refused === 'SG_ERR_PROXY_AUTH_LOCKED'
      ? 'Too many wrong passwords: signing in from this device is paused for a while. Try again later.'
      : 'Sign in with your school account to use the web.';

  function requestTarget(isSSL: boolean, req: IncomingMessage, info: ConnInfo): { url: NormalizedUrl; fwd: Forward } | { error: string } {
    const raw = req.url ?? '';
    try {
      if (info.connectHost !== undefined) {
        // Inside a tunnel: origin-form path, host from the Host header (checked against CONNECT by the policy).
        if (!raw.startsWith('/')) return { error: 'request target must be a path inside a tunnel' };
        const scheme = isSSL ? 'https' : 'http';
        const defaultPort = isSSL ? 443 : 80;
        const hostHeader = headerValue(req.headers.host) ?? `${info.connectHost}:${info.connectPort}`;
        const hp = splitHostPort(hostHeader, defaultPort);
        const named = hp ? normalizeHost(hp.host) : null;
        if (!hp || !named) return { error: `bad Host header ${JSON.stringify(hostHeader.slice(0, 100))}` };
        const authority = `${bracketHost(info.connectHost)}${info.connectPort === defaultPort ? '' : `:${info.connectPort}`}`;
        const url = normalizeUrl(`${scheme}://${authority}${raw}`);
        // The URL classified carries the host the client named, so a mismatch is seen by the policy.
        const asNamed: NormalizedUrl = named === url.host ? url : { ...url, host: named, href: url.href.replace(`://${authority}`, `://${named}`) };
        return { url: asNamed, fwd: { host: info.connectHost, port: info.connectPort!, path: raw, hostHeader: authority } };
      }
      // Plain proxying: the absolute URL decides, and the Host header is replaced by its authority
      // (RFC 9112 §3.2.2), so what we classify is what we fetch.
      if (!SCHEME.test(raw)) return { error: 'not a proxy request (absolute URL expected)' };
      const url = normalizeUrl(raw);
      if (url.scheme !== 'http' && url.scheme !== 'ws') return { error: `scheme ${url.scheme}: is not proxied over plain HTTP` };
      const port = url.port ?? 80;
      const hostPart = bracketHost(url.host);
      // The normalised path only decodes unreserved characters: the same resource, as classified.
      return { url, fwd: { host: url.host, port, path: url.path, hostHeader: url.port === null ? hostPart : `${hostPart}:${port}` } };
    } catch (err) {
      return { error: (err as Error).message };
    }
  }

  async function handleRequest(isSSL: boolean, req: IncomingMessage, res: ServerResponse): Promise<void> {
    stats.requests++;
    const info = conns.get(req.socket);
    if (!info) {
      res.destroy();
      return;
    }
    const who = identifyRequest(req, info);
    const identity = 'then' in who ? await who : who;
    if ('refused' in identity) {
      req.resume();
      res.setHeader('proxy-authenticate', 'Basic realm="schoolgate"');
      sendPage(res, 407, identity.refused, renderErrorPage({ status: 407, code: identity.refused, title: 'Please sign in', message: authMessage(identity) }));
      return;
    }
    const target = requestTarget(isSSL, req, info);
    if ('error' in target) {
      req.resume();
      sendPage(res, 400, 'SG_ERR_BAD_REQUEST', renderErrorPage({ status: 400, code: 'SG_ERR_BAD_REQUEST', title: 'Bad request', message: 'The web filter could not understand this request.', detail: target.error }));
      return;
    }
    const { url, fwd } = target;
    if (pages !== undefined && (info.connectHost ?? url.host) === pages.host) {
      servePage(pages, req, res, url, fwd.path, info, identity);
      return;
    }
    const outcome = hooks.onRequest(url, fwd.path, identity, info.connectHost, req.method ?? 'GET', req.headers);
    if (!outcome.pass) {
      req.resume();
      if (outcome.blocked) stats.blocked++;
      sendPage(res, outcome.status, outcome.code, outcome.html, outcome.category);
      return;
    }
    if (outcome.path !== undefined) fwd.path = outcome.path;
    if (outcome.headers !== undefined) fwd.extraHeaders = outcome.headers;
    if (literalRefusal(fwd.host, fwd.port, res)) {
      req.resume();
      return;
    }
    if (!req.headers.host) req.headers.host = fwd.hostHeader; // HTTP/1.0 without Host: the library would 400 it
    if (debug) log.debug({ clientIp: identity.clientIp, method: req.method, tls: isSSL, tunnel: info.connectHost !== undefined, host: fwd.host, port: fwd.port }, 'pass');
    forward(isSSL, req, res, fwd, url, identity);
  }

  /**
   * A request to the gateway's own name, answered here and never forwarded. Inside a tunnel to
   * that name the Host header must name it too: the request is not sent anywhere else either way,
   * but a page is only what it claims to be under its own name.
   */
  function servePage(local: LocalPages, req: IncomingMessage, res: ServerResponse, url: NormalizedUrl, path: string, info: ConnInfo, identity: Identity) {
    if (url.host !== local.host) {
      req.resume();
      sendPage(res, 400, 'SG_ERR_HOST_MISMATCH', renderErrorPage({
        status: 400, code: 'SG_ERR_HOST_MISMATCH', title: 'Bad request',
        message: `This connection was opened to the school web filter's own pages (${local.host}); it cannot be used for ${url.host}.`,
      }));
      return;
    }
    if (debug) log.debug({ clientIp: identity.clientIp, method: req.method, tls: info.tls === true, path: url.path.split('?')[0] }, 'own page');
    // What the pages route on: origin-form, and the name they are served under.
    req.url = path;
    req.headers.host = local.host;
    try {
      local.handle(req, res, identity.clientIp);
    } catch (err) {
      internalError(res, err);
    }
  }

  /**
   * Passes one request upstream and streams the answer back, with backpressure both ways, over
   * undici's keep-alive pools (one per origin). http-mitm-proxy's own request pipeline pushed
   * every chunk through callback chains with no backpressure; Node's http client, measured
   * against undici here, cost a third more per request.
   */
  function forward(isSSL: boolean, req: IncomingMessage, res: ServerResponse, fwd: Forward, url: NormalizedUrl, identity: Identity) {
    const headers: Record<string, string | string[]> = {};
    const listed = connectionTokens(req.headers.connection);
    for (const name in req.headers) {
      const value = req.headers[name];
      if (value !== undefined && !HOP_BY_HOP_SET.has(name) && !name.startsWith('proxy-') && (listed === null || !listed.includes(name))) headers[name] = value;
    }
    headers.host = fwd.hostHeader;
    if (fwd.extraHeaders) Object.assign(headers, fwd.extraHeaders);
    const length = req.headers['content-length'];
    const hasBody = req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
    const hostPart = bracketHost(fwd.host);

    let timer: NodeJS.Timeout | undefined;
    let answered = false;
    let controller: { abort(reason: Error): void; pause(): void; resume(): void } | null = null;
    let failed: Error | null = null;
    const abort = (err: Error) => {
      failed ??= err;
      controller?.abort(err);
    };
    // The clock for a silent origin starts once the whole request body is sent (uploads take what
    // they take) and stops at the response headers (so do downloads).
    const startClock = () => {
      if (!answered) timer = setTimeout(() => abort(Object.assign(new Error(`no response within ${upstreamTimeout / 1000} s`), { code: 'ETIMEDOUT' })), upstreamTimeout);
    };
    // What the origin said and how much of it was relayed, for onResponseDone: two numbers, no object.
    let status = 0;
    let bytes = 0;
    res.on('close', () => {
      clearTimeout(timer);
      if (!res.writableFinished) abort(new Error('client went away'));
      if (responseDone !== undefined) responseDone(url, identity, status, bytes);
    });
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (failed) c.abort(failed);
      },
      onResponseStart(c, statusCode, answerHeaders, statusMessage) {
        answered = true;
        status = statusCode;
        clearTimeout(timer);
        const out: http.OutgoingHttpHeaders = {};
        const dropped = connectionTokens(answerHeaders.connection);
        for (const name in answerHeaders) {
          if (!HOP_BY_HOP_SET.has(name) && (dropped === null || !dropped.includes(name)) && !name.startsWith('public-key-pins')) out[name] = answerHeaders[name];
        }
        try {
          res.writeHead(statusCode, statusMessage || undefined, out);
        } catch (err) {
          // A header Node will not re-emit (odd characters, odd status): refuse it cleanly.
          badGateway(res, fwd.host, err as Error);
          c.abort(err as Error);
        }
      },
      onResponseData(c, chunk) {
        if (res.destroyed) return;
        bytes += chunk.length;
        if (!res.write(chunk)) {
          c.pause();
          res.once('drain', () => c.resume());
        }
      },
      onResponseEnd() {
        res.end();
      },
      onResponseError(_c, err) {
        clearTimeout(timer);
        badGateway(res, fwd.host, failed ?? err);
      },
    };
    try {
      upstreamPool.dispatch(
        { origin: `${isSSL ? 'https' : 'http'}://${hostPart}:${fwd.port}`, path: fwd.path, method: req.method ?? 'GET', headers, body: hasBody ? req : null },
        handler,
      );
    } catch (err) {
      badGateway(res, fwd.host, err as Error);
      return;
    }
    if (hasBody) req.on('end', startClock);
    else startClock(); // no body (most GETs): Node's server discards the empty request stream
  }

  function badGateway(res: ServerResponse, host: string, err: Error) {
    const code = (err as NodeJS.ErrnoException).code;
    if (res.destroyed) return; // the client left first: nothing to tell it
    if (isDestinationDenied(err)) {
      destinationDenied(res, host, (err as { reason?: string }).reason ?? err.message);
      return;
    }
    stats.upstreamErrors++;
    log.warn({ code, host, err: err.message }, 'upstream failed');
    if (!res.headersSent) {
      sendPage(res, 502, 'SG_ERR_UPSTREAM', renderErrorPage({
        status: 502, code: 'SG_ERR_UPSTREAM', title: 'This website could not be reached',
        message: `The school web filter could not connect to ${host}. It may be down, or the address may be wrong. Try again later.`,
        detail: code ?? err.message,
      }));
    } else {
      res.destroy(); // half a response: cut it rather than append an error to someone's download
    }
  }

  /**
   * The 403 for a destination the gateway will not reach; `res` null answers nothing (the caller
   * refuses in its own way). True when refused.
   */
  function literalRefusal(host: string, port: number, res: ServerResponse | null = null): boolean {
    try {
      destinations.checkLiteral(host, port);
      return false;
    } catch (err) {
      if (!isDestinationDenied(err)) throw err;
      if (res) destinationDenied(res, host, (err as { reason: string }).reason);
      else stats.destinationDenied++;
      return true;
    }
  }

  function destinationDenied(res: ServerResponse, host: string, reason: string) {
    stats.destinationDenied++;
    log.debug({ host, reason, code: 'SG_ERR_DESTINATION_DENIED' }, 'destination refused');
    sendPage(res, 403, 'SG_ERR_DESTINATION_DENIED', renderErrorPage({
      status: 403, code: 'SG_ERR_DESTINATION_DENIED', title: 'This address cannot be reached through the school web filter',
      message: reason === OWN_PORTS
        ? `${host} is the school web filter itself, which is not reachable through the filter. Open the console directly (the proxy.pac file${pagesHost ? ` at http://${pagesHost}/proxy.pac` : ''} does), or add its address to the browser's proxy exceptions.`
        : `The school web filter does not connect to ${host}: addresses on this computer, on the local link, or closed by the school are not reachable through it.`,
      detail: reason,
    }));
  }

  /** Cuts a connection that was too slow; a request still arriving is told why (408). */
  function cutSlow(socket: net.Socket, reason: CutReason) {
    stats.timedOut++;
    cut.add(socket);
    log.debug({ reason, code: 'SG_ERR_TIMEOUT' }, 'slow client connection cut');
    if (reason === 'headers' && socket.writable) {
      const timer = setTimeout(() => socket.destroy(), 1000);
      timer.unref();
      socket.end(rawResponse(408, 'Request Timeout', 'SG_ERR_TIMEOUT', `${codes.SG_ERR_TIMEOUT}\n`), () => {
        clearTimeout(timer);
        socket.destroy();
      });
    } else socket.destroy();
  }

  function sendPage(res: ServerResponse, status: number, code: string, html: string, category?: string | null) {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = Buffer.from(html);
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'text/html; charset=utf-8', 'content-length': body.length, 'cache-control': 'no-store', 'x-schoolgate-error': code,
    };
    if (category) headers['x-schoolgate-category'] = category;
    res.writeHead(status, headers);
    res.end(body);
  }

  function internalError(res: ServerResponse, err: unknown) {
    log.error({ err }, 'request handling failed');
    if (!res.headersSent) sendPage(res, 500, 'SG_ERR_INTERNAL', renderErrorPage({ status: 500, code: 'SG_ERR_INTERNAL', title: 'Web filter error', message: 'Something went wrong in the web filter. Please try again.' }));
    else res.destroy();
  }

  async function handleConnect(req: IncomingMessage, socket: net.Socket, head: Buffer): Promise<void> {
    stats.requests++;
    socket.on('error', (err: NodeJS.ErrnoException) => log.debug({ code: err.code }, 'client socket error'));
    const base = conns.get(socket);
    if (!base || base.connectHost !== undefined) {
      // CONNECT inside a tunnel would let one intercepted host open tunnels to any other.
      socket.end(rawResponse(400, 'Bad Request', 'SG_ERR_BAD_REQUEST', 'CONNECT is not allowed here.\n'));
      return;
    }
    // authority-form only (RFC 9110 §9.3.6): host and port, nothing else
    const hp = /:\d{1,5}$/.test(req.url ?? '') ? splitHostPort(req.url ?? '', 443) : null;
    const host = hp ? normalizeHost(hp.host) : null;
    if (!hp || !host) {
      socket.end(rawResponse(400, 'Bad Request', 'SG_ERR_BAD_REQUEST', `CONNECT target must be host:port\n`));
      return;
    }
    const portAllowed = destinations.connectPortAllowed(hp.port);
    if (!portAllowed || literalRefusal(host, hp.port)) {
      if (!portAllowed) stats.destinationDenied++;
      const why = portAllowed ? `${host} cannot be reached through the school web filter` : `CONNECT to port ${hp.port} is not allowed`;
      log.debug({ host, port: hp.port, code: 'SG_ERR_DESTINATION_DENIED' }, 'CONNECT refused: destination');
      socket.end(rawResponse(403, 'Forbidden', 'SG_ERR_DESTINATION_DENIED', `${codes.SG_ERR_DESTINATION_DENIED}: ${why}\n`));
      return;
    }
    const identity = await identifyRequest(req, base);
    if ('refused' in identity) {
      socket.end(rawResponse(407, 'Proxy Authentication Required', identity.refused, `${authMessage(identity)}\n`, 'Proxy-Authenticate: Basic realm="schoolgate"\r\n'));
      return;
    }
    // The gateway's own name is always intercepted: tunnelling it would send it to DNS and on.
    const how = host === pagesHost ? 'intercept' : hooks.decideConnect(host, identity);
    if (how === 'tunnel') return tunnel(socket, host, hp.port, head, identity);
    if (how === 'refuse') {
      stats.blocked++;
      socket.end(rawResponse(403, 'Forbidden', 'blocked', 'Blocked by the school web filter.\n'));
      return;
    }
    stats.intercepts++;
    const info: ConnInfo = { identity, connectHost: host, connectPort: hp.port };
    let context: Promise<tls.SecureContext> | null = null;
    const start = (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      if (first[0] === 0x16) return terminateTls(socket, info, (context ??= deps.leaf.context(host)));
      watch.done(socket);
      conns.set(socket, info); // plain HTTP inside the tunnel: still only the CONNECT host
      plainServer.emit('connection', socket);
      watch.awaitRequest(socket);
      socket.resume();
    };
    // From here to a finished TLS handshake (or the first plain request's start), one deadline:
    // CONNECT-then-silence and a stalled ClientHello both hold a socket otherwise.
    watch.awaitHandshake(socket);
    if (head && head.length > 0) start(head);
    else {
      // The 200 goes out first and the certificate is made after it: the client reads our answer
      // and builds its ClientHello (on another core, or another machine) while we sign.
      socket.once('data', start);
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      context = deps.leaf.context(host);
      context.catch(() => undefined);
    }
  }

  function terminateTls(socket: net.Socket, info: ConnInfo, context: Promise<tls.SecureContext>) {
    context.then(
      (secureContext) => {
        const tlsSocket = new tls.TLSSocket(socket, {
          isServer: true,
          secureContext,
          ALPNProtocols: ['http/1.1'],
          SNICallback: (name, cb) => {
            if (name.toLowerCase() === info.connectHost) return cb(null, secureContext);
            deps.leaf.context(name).then((c) => cb(null, c), () => cb(null, secureContext));
          },
        });
        tlsSocket.on('error', (err: NodeJS.ErrnoException) => {
          log.debug({ host: info.connectHost, code: err.code, err: err.message }, 'TLS with client failed');
          tlsSocket.destroy();
        });
        tlsSocket.once('secure', () => {
          watch.done(socket);
          watch.awaitRequest(tlsSocket);
        });
        // The raw socket's deadline is the handshake's: cutting it takes the TLS socket with it.
        socket.once('close', () => tlsSocket.destroy());
        conns.set(tlsSocket, { ...info, tls: true });
        tlsServer.emit('connection', tlsSocket);
        // No socket.resume() here: the TLS socket now reads the connection itself (starting with
        // the ClientHello we unshifted); a flowing raw socket would hand those bytes to nobody.
      },
      (err: Error) => {
        log.warn({ host: info.connectHost, err: err.message }, 'no certificate for intercepted host');
        socket.destroy();
      },
    );
  }

  function tunnel(socket: net.Socket, host: string, port: number, head: Buffer, identity: Identity) {
    stats.tunnels++;
    log.debug({ clientIp: identity.clientIp, host }, 'tunnel (bypass)');
    const upstream = net.connect({ host, port, lookup: destinations.lookup(deps.upstreamLookup, port) });
    upstream.setNoDelay(true);
    // net.connect has no connect timeout of its own: a silent address would hold the client for minutes.
    upstream.setTimeout(10_000, () => upstream.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' })));
    let connected = false;
    upstream.once('connect', () => {
      const denied = destinations.checkConnected(upstream, `${host}:${port}`);
      if (denied) return upstream.destroy(denied);
      upstream.setTimeout(0);
      watch.done(socket); // a bypassed tunnel may be quiet for as long as its two ends like
      connected = true;
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head && head.length) upstream.write(head);
      socket.pipe(upstream);
      upstream.pipe(socket);
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (isDestinationDenied(err) && !connected) {
        stats.destinationDenied++;
        log.debug({ host, port, code: 'SG_ERR_DESTINATION_DENIED' }, 'tunnel refused: destination');
        socket.end(rawResponse(403, 'Forbidden', 'SG_ERR_DESTINATION_DENIED', `${codes.SG_ERR_DESTINATION_DENIED}: ${host} (${(err as { reason?: string }).reason ?? err.message})\n`));
        return;
      }
      stats.upstreamErrors++;
      log.warn({ host, port, code: err.code }, 'tunnel upstream failed');
      if (!connected) socket.end(rawResponse(502, 'Bad Gateway', 'SG_ERR_UPSTREAM', `${codes.SG_ERR_UPSTREAM}: ${host}:${port} (${err.code ?? err.message})\n`));
      else socket.destroy();
    });
    socket.on('close', () => upstream.destroy());
    upstream.on('close', () => socket.destroy());
  }

  return {
    stats,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        front.once('error', reject);
        front.listen(port, host, () => {
          front.off('error', reject);
          destinations.addOwnPort((front.address() as AddressInfo).port);
          resolve(front.address() as AddressInfo);
        });
      });
    },
    address() {
      return (front.address() as AddressInfo | null) ?? null;
    },
    async close() {
      await new Promise<void>((resolve) => {
        front.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      watch.close();
      proxy.httpAgent.destroy();
      proxy.httpsAgent.destroy();
      await upstreamPool.destroy().catch(() => undefined);
    },
  };
}
