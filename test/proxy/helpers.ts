import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { initCa, type SchoolCa } from '../../certs/ca';
import { LeafCertificates } from '../../certs/leaf';
import { loadConfig, type CliValues } from '../../core/config';
import { silentLogger } from '../../core/log';
import { startSchoolgate, type SchoolgateHandle } from '../../server/start';
import { DEFAULT_DESTINATION_RULES, Destinations } from '../../proxy/destinations';
import type { GatewayDeps } from '../../filter/gateway';
import { ClientIdentifier, type ProxyAuthDeps, type UserLookup } from '../../filter/identify';
import { getDummyHash, verifyPassword } from '../../admin-api/auth';
import { sharedLists } from '../helpers/parts';

export const ut1Gambling = path.join(sharedLists, 'ut1', 'gambling');
export const ut1Adult = path.join(sharedLists, 'ut1', 'adult');
/** The first entry of UT1's real gambling list. */
export const GAMBLING_HOST = '0-casino.info';

export const tmpDir = (prefix = 'sg-proxy-') => mkdtempSync(path.join(os.tmpdir(), prefix));

/** A tiny UT1-style folder for hosts only the tests use (the real lists supply the rest). */
export function fixtureLists(): string {
  const dir = tmpDir('sg-lists-');
  mkdirSync(path.join(dir, 'testblock'));
  writeFileSync(path.join(dir, 'testblock', 'domains'), 'blocked.test\n10.1.2.3\nduckduckgo.com\n');
  writeFileSync(path.join(dir, 'testblock', 'urls'), 'mixed.test/forbidden\n');
  writeFileSync(path.join(dir, 'testblock', 'usage'), 'black\n');
  return dir;
}

// Every upstream name resolves to loopback: the tests' "internet" is the local origin.
import { loopbackLookup } from '../../harness/loopback';
export { loopbackLookup };

/**
 * What a bare gateway (one a test builds beside, or instead of, the full start) needs: loopback
 * clients only, no incidents kept, no search rewriting, and every URL passing unless `noLists`
 * (then the gateway fails closed, as with no lists loaded). Spread the result to set the rest.
 */
export function bareGatewayDeps(opts: {
  ca: SchoolCa;
  dataDir: string;
  noLists?: boolean;
  clients?: Partial<ConstructorParameters<typeof ClientIdentifier>[0]>;
  users?: UserLookup | null;
  /** Proxy-Authorization checking in full (limits, audit); `users` alone checks with the real scrypt and defaults. */
  auth?: ProxyAuthDeps | null;
}): GatewayDeps {
  const passAll = { categories: new Map(), classify: () => ({ action: 'pass' as const }), matches: () => [] };
  return {
    leaf: new LeafCertificates({ ca: opts.ca, dataDir: opts.dataDir }),
    policy: { lists: () => (opts.noLists ? null : passAll), categoriesFor: () => [], allowCategories: [], bypassHosts: [] },
    identifier: new ClientIdentifier(
      { allowedClients: ['127.0.0.0/8'], clients: [], defaultGroup: 'default', proxyAuth: false, policyGroups: {}, ...opts.clients },
      opts.auth ?? (opts.users ? { users: opts.users, verify: verifyPassword, dummyHash: getDummyHash } : null),
    ),
    incidents: { record: () => 'x' },
    referenceSecret: Buffer.alloc(32),
    friendlyName: () => null,
    adminBaseUrl: 'http://127.0.0.1:1',
    pagesHost: 'schoolgate.invalid',
    safeSearch: false,
    flagCategories: [],
    logger: silentLogger,
    // Test origins listen on loopback, on random ports: open to them (the gateway's own port stays refused).
    destinations: new Destinations({ ...DEFAULT_DESTINATION_RULES, allowLoopbackForTests: true }),
  };
}

export interface Origin {
  ca: SchoolCa;
  httpPort: number;
  httpsPort: number;
  /** Connections the origin accepted, to see keep-alive at work. */
  connections: () => number;
  close: () => Promise<void>;
}

const WS = createRequire(createRequire(import.meta.url).resolve('http-mitm-proxy'))('ws') as {
  WebSocketServer: new (o: { server: http.Server | https.Server }) => import('node:events').EventEmitter;
  WebSocket: new (url: string, opts?: Record<string, unknown>) => import('node:events').EventEmitter & { send(d: string): void; close(): void };
};
export { WS };

/** An origin with its own CA (not the school's): echoes what it received, as JSON. */
export async function startOrigin(): Promise<Origin> {
  const dir = tmpDir('sg-origin-');
  const ca = initCa(dir, { commonName: 'test origin CA' });
  const leaf = new LeafCertificates({ ca, dataDir: dir });
  let connections = 0;
  const handler: http.RequestListener = (req, res) => {
    if (req.url?.startsWith('/hang')) return; // accepts, never answers
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const json = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body, tls: 'encrypted' in req.socket });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
      res.end(json);
    });
  };
  const plain = http.createServer(handler);
  const secure = https.createServer({ key: leaf.keyPem, cert: await leaf.certificatePem('127.0.0.1'), SNICallback: leaf.sniCallback }, handler);
  for (const s of [plain, secure]) {
    s.on('connection', () => connections++);
    const wss = new WS.WebSocketServer({ server: s });
    wss.on('connection', (ws: import('node:events').EventEmitter & { send(d: string): void }, req: http.IncomingMessage) => {
      ws.on('message', (m: Buffer) => ws.send(`echo:${m.toString()}:${req.url}`));
    });
  }
  await Promise.all([plain, secure].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
  return {
    ca,
    httpPort: (plain.address() as net.AddressInfo).port,
    httpsPort: (secure.address() as net.AddressInfo).port,
    connections: () => connections,
    close: async () => {
      for (const s of [plain, secure]) {
        s.closeAllConnections();
        await new Promise((r) => s.close(r));
      }
    },
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  reusedSocket: boolean;
}

const collect = (req: http.ClientRequest, body?: string) =>
  new Promise<Reply>((resolve, reject) => {
    req.on('response', (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (data += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: data, reusedSocket: req.reusedSocket }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });

/** Plain proxying: absolute-form request line to the proxy. */
export function viaProxy(proxyPort: number, url: string, opts: { method?: string; headers?: Record<string, string>; body?: string; agent?: http.Agent } = {}) {
  const u = new URL(url);
  return collect(
    http.request({ host: '127.0.0.1', port: proxyPort, method: opts.method ?? 'GET', path: url, headers: { host: u.host, ...opts.headers }, agent: opts.agent ?? false }),
    opts.body,
  );
}

/** Opens a CONNECT tunnel; resolves with the proxy's status and the raw socket. */
export function openTunnel(proxyPort: number, target: string, headers: Record<string, string> = {}): Promise<{ status: number; socket: net.Socket; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: proxyPort, method: 'CONNECT', path: target, headers: { host: target, ...headers }, agent: false });
    req.on('connect', (res, socket) => resolve({ status: res.statusCode!, socket, headers: res.headers }));
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode!, socket: res.socket as net.Socket, headers: res.headers });
    });
    req.on('error', reject);
    req.end();
  });
}

/** TLS inside a tunnel, then one HTTP request: what a browser does for https:// through a proxy. */
export async function viaTunnel(
  proxyPort: number,
  target: string,
  opts: { ca: string; servername?: string; path?: string; host?: string; headers?: Record<string, string>; method?: string; body?: string },
): Promise<Reply & { peer: tls.PeerCertificate; authorized: boolean }> {
  const t = await openTunnel(proxyPort, target);
  if (t.status !== 200) throw new Error(`CONNECT ${target} answered ${t.status}`);
  const [host] = target.split(/:(?=\d+$)/);
  const servername = opts.servername ?? (net.isIP(host) ? undefined : host);
  const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ socket: t.socket, host, servername, ca: opts.ca, ALPNProtocols: ['http/1.1'] }, () => resolve(s));
    s.on('error', reject);
  });
  const peer = secure.getPeerCertificate();
  const authorized = secure.authorized;
  const reply = await collect(
    http.request({ createConnection: () => secure, path: opts.path ?? '/', method: opts.method ?? 'GET', headers: { host: opts.host ?? target, ...opts.headers } }),
    opts.body,
  );
  secure.destroy();
  return { ...reply, peer, authorized };
}

/** Writes raw bytes to the proxy and returns everything it answers until it closes (or 3 s pass). */
export function raw(proxyPort: number, text: string, waitMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(proxyPort, '127.0.0.1');
    let out = '';
    const done = () => {
      s.destroy();
      resolve(out);
    };
    const timer = setTimeout(done, waitMs);
    s.on('data', (d) => {
      out += d.toString('latin1');
      // One full response is enough: stop at the end of its body.
      const m = /\r\ncontent-length: (\d+)\r\n/i.exec(out);
      const head = out.indexOf('\r\n\r\n');
      if (m && head >= 0 && Buffer.byteLength(out.slice(head + 4), 'latin1') >= Number(m[1])) {
        clearTimeout(timer);
        done();
      }
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    s.on('error', () => undefined);
    s.write(text);
  });
}

export const statusOf = (response: string) => Number(/^HTTP\/1\.[01] (\d{3})/.exec(response)?.[1] ?? 0);

/** The signed reference the block page's report form carries. */
export const refFrom = (html: string) => /name="ref" value="([^"]+)"/.exec(html)?.[1] ?? null;

/**
 * `schoolgate start` in this process on a fresh data folder (pushed to `dirs` for the caller to
 * remove), blocking the fixture lists' `testblock` (plus `extraLists` and whatever `values` set),
 * with every name resolved to `origin`. The one place tests open loopback destinations: the
 * gateway's own ports stay refused even so.
 */
export async function startTestGateway(
  origin: Origin,
  dirs: string[],
  values: CliValues = {},
  opts: { extraLists?: string[]; upstreamLookup?: net.LookupFunction } = {},
): Promise<SchoolgateHandle> {
  const dataDir = tmpDir();
  const lists = fixtureLists();
  dirs.push(dataDir, lists);
  const config = loadConfig(
    { 'data-dir': dataDir, lists: [...(opts.extraLists ?? []), lists], categories: 'testblock', 'proxy-port': '0', 'admin-port': '0', 'log-level': 'silent', ...values },
    {},
  );
  const out = new Writable({ write: (_c, _e, cb) => cb() });
  return startSchoolgate(config, {
    logger: silentLogger, out, upstreamCa: [origin.ca.certPem], upstreamLookup: opts.upstreamLookup ?? loopbackLookup, allowLoopbackDestinationsForTests: true,
  });
}
