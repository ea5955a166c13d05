import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { selfSignedCert, type KeyAndCert } from '../../harness/certs';

/**
 * Shared parts of the end-to-end tests: local origins (HTTP, HTTPS with a certificate of their own)
 * and raw clients that speak to the gateway the way curl and browsers do (absolute-URL requests,
 * CONNECT then TLS). What benchmarks use too (list folders, certificates) is in harness/.
 */

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  remotePort: number;
}

export interface Origin {
  host: string;
  port: number;
  /** Requests the origin answered, in order: tests assert what reached it (and what did not). */
  seen: SeenRequest[];
  /** TCP connections the origin accepted: keep-alive shows as fewer connections than requests. */
  connections: () => number;
  close: () => Promise<void>;
}

/**
 * The origin answers every request with a small text body naming itself, the method, the path
 * and the Host header, so a test can tell which origin (and which URL) a response came from.
 * `/ws` accepts a WebSocket upgrade (hand-written handshake, RFC 6455 §4.2.2) and sends one text frame.
 */
function handler(name: string, seen: SeenRequest[]) {
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, remotePort: req.socket.remotePort ?? 0 });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = `origin=${name} method=${req.method} path=${req.url} host=${req.headers.host ?? ''} body=${Buffer.concat(chunks).toString()}\n`;
      const html = req.url?.split('?')[0].endsWith('.html');
      const body = html ? `<!doctype html><title>${name}</title><h1 id="origin">${name}</h1><pre>${text.replace(/[<&]/g, '')}</pre>` : text;
      res.writeHead(200, {
        'content-type': html ? 'text/html; charset=utf-8' : 'text/plain; charset=utf-8',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    });
  };
}

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const wsAccept = (key: string) => createHash('sha1').update(key + WS_GUID).digest('base64');

function upgradeHandler(name: string, seen: SeenRequest[]) {
  return (req: http.IncomingMessage, socket: net.Socket) => {
    seen.push({ method: 'UPGRADE', url: req.url ?? '', headers: req.headers, remotePort: socket.remotePort ?? 0 });
    const key = req.headers['sec-websocket-key'];
    if (typeof key !== 'string') {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      return;
    }
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${wsAccept(key)}\r\n\r\n`,
    );
    const text = Buffer.from(`hello from ${name}`);
    // FIN + text opcode, unmasked (server to client), payload under 126 bytes.
    socket.write(Buffer.concat([Buffer.from([0x81, text.length]), text]));
    socket.on('error', () => {});
    socket.on('data', () => {});
  };
}

async function listen(server: net.Server, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  return (server.address() as net.AddressInfo).port;
}

function track(server: net.Server): { count: () => number; destroyAll: () => void } {
  const sockets = new Set<net.Socket>();
  let count = 0;
  server.on('connection', (s: net.Socket) => {
    count++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  // For HTTPS, 'secureConnection' fires too but 'connection' already counted the TCP socket.
  return { count: () => count, destroyAll: () => sockets.forEach((s) => s.destroy()) };
}

export async function startHttpOrigin(name = 'http-origin', host = '127.0.0.1'): Promise<Origin> {
  const seen: SeenRequest[] = [];
  const server = http.createServer({ keepAliveTimeout: 30_000 }, handler(name, seen));
  server.on('upgrade', upgradeHandler(name, seen));
  const t = track(server);
  const port = await listen(server, host);
  return { host, port, seen, connections: t.count, close: () => closeServer(server, t.destroyAll) };
}

export async function startHttpsOrigin(
  name = 'https-origin',
  names: string[] = ['localhost'],
  host = '127.0.0.1',
): Promise<Origin & { cert: KeyAndCert }> {
  const seen: SeenRequest[] = [];
  const cert = selfSignedCert(names);
  const server = https.createServer({ key: cert.key, cert: cert.cert, keepAliveTimeout: 30_000 }, handler(name, seen));
  server.on('upgrade', upgradeHandler(name, seen));
  const t = track(server);
  const port = await listen(server, host);
  return { host, port, seen, connections: t.count, cert, close: () => closeServer(server, t.destroyAll) };
}

function closeServer(server: net.Server, destroyAll: () => void): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    destroyAll();
  });
}

export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  raw: string;
}

/** Parses one HTTP/1.x response from raw bytes (enough for tests: content-length, chunked or until close). */
export function parseResponse(raw: Buffer): RawResponse | null {
  const text = raw.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (!m) return null;
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let rest = raw.subarray(Buffer.byteLength(text.slice(0, end + 4), 'latin1'));
  const status = Number(m[1]);
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (rest.length < n) return null;
    rest = rest.subarray(0, n);
  } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const out: Buffer[] = [];
    let off = 0;
    for (;;) {
      const crlf = rest.indexOf('\r\n', off);
      if (crlf < 0) return null;
      const size = parseInt(rest.subarray(off, crlf).toString(), 16);
      if (Number.isNaN(size)) return null;
      if (size === 0) break;
      if (rest.length < crlf + 2 + size + 2) return null;
      out.push(rest.subarray(crlf + 2, crlf + 2 + size));
      off = crlf + 2 + size + 2;
    }
    rest = Buffer.concat(out);
  } else if (status === 101 || status === 204 || status === 304) {
    rest = Buffer.alloc(0);
  }
  return { status, headers, body: rest.toString('utf8'), raw: text };
}

/**
 * Sends raw bytes to the proxy and resolves with the first complete response (or whatever
 * arrived when the server closed). Raw, because the normalisation tricks and malformed requests
 * are exactly what well-behaved clients refuse to send.
 */
export function rawRequest(port: number, payload: string | Buffer, opts: { host?: string; timeoutMs?: number; socket?: net.Socket } = {}): Promise<RawResponse & { closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = opts.socket ?? net.connect({ port, host: opts.host ?? '127.0.0.1' });
    let buf = Buffer.alloc(0);
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      const r = parseResponse(buf);
      if (!r && !closed) return;
      settled = true;
      clearTimeout(timer);
      s.off('data', onData);
      // A socket we opened ourselves is done with; a caller's socket stays open for its next request.
      if (!opts.socket) s.destroy();
      if (r) resolve({ ...r, closed });
      else reject(new Error(`no HTTP response (got ${JSON.stringify(buf.toString('latin1').slice(0, 200))})`));
    };
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      finish(false);
    };
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      s.destroy();
      reject(new Error(`raw request timed out; got ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`));
    }, opts.timeoutMs ?? 10_000);
    s.on('data', onData);
    s.once('close', () => finish(true));
    s.once('error', (e) => {
      if (!settled && buf.length === 0) {
        settled = true;
        clearTimeout(timer);
        reject(e);
      }
    });
    s.write(payload);
  });
}

/** CONNECT host:port through the proxy; resolves with the raw socket once the proxy answered 200. */
export function connectTunnel(proxyPort: number, target: string, extraHeaders = ''): Promise<{ socket: net.Socket; status: number; head: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port: proxyPort, host: '127.0.0.1' });
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`CONNECT ${target} timed out; got ${JSON.stringify(buf)}`));
    }, 10_000);
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      clearTimeout(timer);
      s.off('data', onData);
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(buf)?.[1] ?? 0);
      // Anything after the head is the start of the tunnel (never expected before we speak).
      resolve({ socket: s, status, head: buf.slice(0, end) });
    };
    s.on('data', onData);
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${extraHeaders}\r\n`);
  });
}

/** TLS over an established CONNECT tunnel; never rejects on verification so the test can inspect the chain. */
export function tlsOverTunnel(socket: net.Socket, servername: string, ca?: string | string[]): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = tls.connect({ socket, host: servername, servername: net.isIP(servername) ? undefined : servername, ca, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    t.once('secureConnect', () => resolve(t));
    t.once('error', reject);
  });
}

/** Sends one HTTP/1.1 request over an already-open (TLS) socket and reads the response. */
export function requestOver(socket: net.Socket, pathAndQuery: string, host: string, extra = '', method = 'GET', body = ''): Promise<RawResponse & { closed: boolean }> {
  const headers = `${method} ${pathAndQuery} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: schoolgate-e2e\r\n${body ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : ''}${extra}\r\n`;
  return rawRequest(0, headers + body, { socket });
}

/** Free TCP port on 127.0.0.1, for the CLI which is started with explicit ports. */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s, '127.0.0.1');
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function waitFor<T>(fn: () => Promise<T | null | undefined | false> | T | null | undefined | false, what: string, timeoutMs = 10_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Upstream DNS for the gateway under test (its `upstreamLookup` hook): the names a test maps (and
 * their subdomains) resolve to loopback addresses, every other name fails at once with ENOTFOUND,
 * so no test ever sends a lookup off this machine.
 */
export function loopbackLookup(names: Record<string, string>): net.LookupFunction {
  const find = (host: string): string | undefined => {
    const h = host.toLowerCase().replace(/\.$/, '');
    for (const [name, address] of Object.entries(names)) if (h === name || h.endsWith(`.${name}`)) return address;
    return net.isIP(h) ? h : undefined;
  };
  return ((hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    const address = find(hostname);
    process.nextTick(() => {
      if (!address) {
        const err = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname });
        return callback(err);
      }
      const family = net.isIP(address);
      if (options?.all) callback(null, [{ address, family }]);
      else callback(null, address, family);
    });
  }) as unknown as net.LookupFunction;
}
