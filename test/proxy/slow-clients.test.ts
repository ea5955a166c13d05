import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initCa, type SchoolCa } from '../../certs/ca';
import { createLogger } from '../../core/log';
import { createGateway, type Gateway } from '../../filter/gateway';
import { bareGatewayDeps, loopbackLookup, startOrigin, statusOf, type Origin } from './helpers';

/**
 * Client connections that hold the gateway without finishing anything (issue #11, point 12): the
 * gateway's HTTP servers are fed sockets by hand, so Node's own header timeouts never run and
 * these limits are the only ones. Limits are set short (1 s) and the assertions generous: a
 * socket must be closed by the gateway within several times its limit, and a client that is slow
 * but keeps its promise (headers in time, then a long upload) must not be cut.
 */

const LIMIT = 1000;
/** Far beyond LIMIT plus one sweep, for a loaded machine; a socket never cut fails the test here. */
const CUT_WITHIN = 10_000;

interface Held {
  socket: net.Socket;
  /** What the gateway has sent so far. */
  data: () => string;
  /** Resolves with what the gateway sent, once the gateway closes the connection (or CUT_WITHIN passes: `closed` false). */
  closed: Promise<{ closed: boolean; data: string; ms: number }>;
}

function hold(port: number, first = '', opts: { localAddress?: string } = {}): Held {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: opts.localAddress });
  const started = Date.now();
  let data = '';
  socket.on('data', (d) => (data += d.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<{ closed: boolean; data: string; ms: number }>((resolve) => {
    const timer = setTimeout(() => resolve({ closed: false, data, ms: Date.now() - started }), CUT_WITHIN);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ closed: true, data, ms: Date.now() - started });
    });
  });
  if (first) socket.write(first);
  return { socket, closed, data: () => data };
}

/** Writes `text` one byte every `everyMs` until the socket closes: slowloris. */
function trickle(socket: net.Socket, text: string, everyMs = 100): void {
  let i = 0;
  const timer = setInterval(() => {
    if (socket.destroyed || !socket.writable) return clearInterval(timer);
    socket.write(text[i++ % text.length]);
  }, everyMs);
  socket.once('close', () => clearInterval(timer));
}

describe('slow and idle client connections (issue #11, point 12)', () => {
  let dir: string;
  let ca: SchoolCa;
  let origin: Origin;
  let gw: Gateway;
  let P: number;
  const logs: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'sg-slow-'));
    ca = initCa(dir);
    origin = await startOrigin();
    const out = new PassThrough();
    out.on('data', (d: Buffer) => logs.push(...d.toString().split('\n').filter(Boolean)));
    gw = createGateway({
      ...bareGatewayDeps({ ca, dataDir: dir }),
      upstreamCa: [origin.ca.certPem],
      upstreamLookup: loopbackLookup,
      limits: { headersTimeoutMs: LIMIT, idleTimeoutMs: LIMIT, handshakeTimeoutMs: LIMIT },
      keepAliveTimeoutMs: 30_000,
      logger: createLogger({ level: 'info', destination: out }),
    });
    P = (await gw.listen(0, '127.0.0.1')).port;
  });
  afterAll(async () => {
    await gw?.close();
    await origin?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('cuts 200 slowloris connections (headers a byte at a time) after the header limit, with 408', async () => {
    const held = Array.from({ length: 200 }, () => {
      const h = hold(P, `GET http://127.0.0.1:${origin.httpPort}/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
      trickle(h.socket, 'X-Padding: aaaaaaaa\r\n', 100);
      return h;
    });
    const results = await Promise.all(held.map((h) => h.closed));
    expect(results.filter((r) => !r.closed)).toHaveLength(0);
    // Never before the limit: the clock starts at the request's first byte.
    expect(Math.min(...results.map((r) => r.ms))).toBeGreaterThanOrEqual(LIMIT - 300);
    expect(results.filter((r) => statusOf(r.data) === 408).length).toBeGreaterThan(0);
    expect(results.every((r) => r.data === '' || statusOf(r.data) === 408)).toBe(true);
    // And the gateway still serves.
    const ok = await fetchThrough(P, `http://127.0.0.1:${origin.httpPort}/after`);
    expect(ok).toBe(200);
  });

  it('closes a connection that never sends a byte (idle before the first request)', async () => {
    const r = await hold(P).closed;
    expect(r.closed).toBe(true);
    expect(r.ms).toBeGreaterThanOrEqual(LIMIT - 300);
  });

  it('closes CONNECT left unfinished, and CONNECT answered 200 then silence', async () => {
    const unfinished = hold(P, 'CONNECT school.test:443 HTTP/1.1\r\n');
    trickle(unfinished.socket, 'X-A: b\r\n', 150);
    const silent = hold(P, 'CONNECT school.test:443 HTTP/1.1\r\nHost: school.test:443\r\n\r\n');
    const [u, s] = await Promise.all([unfinished.closed, silent.closed]);
    expect(u.closed).toBe(true);
    expect(s.closed).toBe(true);
    expect(statusOf(s.data)).toBe(200); // the tunnel was opened, then nothing came: cut
  });

  it('closes a stalled TLS handshake, a TLS tunnel that never sends a request, and headers trickled inside TLS', async () => {
    // Half a ClientHello: TLS record header promising more than is sent.
    const stalled = hold(P, 'CONNECT school.test:443 HTTP/1.1\r\nHost: school.test:443\r\n\r\n');
    await new Promise((r) => stalled.socket.once('data', r));
    stalled.socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));

    const quiet = await tlsTunnel(P, 'school.test');
    const quietClosed = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), CUT_WITHIN);
      quiet.once('close', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    const slow = await tlsTunnel(P, 'school.test');
    const slowClosed = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), CUT_WITHIN);
      slow.once('close', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    slow.write('GET / HTTP/1.1\r\nHost: school.test\r\n');
    const timer = setInterval(() => slow.writable && slow.write('X'), 100);
    const [s, q, t] = await Promise.all([stalled.closed, quietClosed, slowClosed]);
    clearInterval(timer);
    expect(s.closed).toBe(true);
    expect(q).toBe(true);
    expect(t).toBe(true);
  });

  it('closes an HTTP/0.9-style request line that never ends', async () => {
    const r = await hold(P, 'GET /\r\n').closed;
    expect(r.closed).toBe(true);
  });

  it('limits the next request on a kept-alive connection too', async () => {
    const h = hold(P, `GET http://127.0.0.1:${origin.httpPort}/first HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    await new Promise<void>((resolve) => {
      const check = () => (/\r\n\r\n\{.*\}$/s.test(h.data()) ? resolve() : setTimeout(check, 20));
      check();
    });
    h.socket.write(`GET http://127.0.0.1:${origin.httpPort}/second HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
    trickle(h.socket, 'X-Padding: aaaaaaaa\r\n', 100);
    const r = await h.closed;
    expect(r.closed).toBe(true);
    expect(statusOf(r.data)).toBe(200); // the first request was answered
    expect(r.data).toContain('HTTP/1.1 408 Request Timeout');
    expect(r.data).not.toContain('/second');
  });

  it('does not cut a client that sent its headers in time, however long its upload takes', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: P, method: 'POST', path: `http://127.0.0.1:${origin.httpPort}/upload`, headers: { 'transfer-encoding': 'chunked' }, agent: false });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      let n = 0;
      const timer = setInterval(() => {
        req.write(`part${n};`);
        if (++n === 12) {
          clearInterval(timer);
          req.end();
        }
      }, 250); // 3 s of upload: three times the header limit
    });
    expect(status).toBe(200);
  });

  it('logs cuts without naming the client', () => {
    expect(gw.stats.timedOut).toBeGreaterThan(200);
    expect(logs.join('\n')).not.toContain('127.0.0.1');
  });
});

describe('connections per client address (issue #11, point 12)', () => {
  let dir: string;
  let gw: Gateway;
  let P: number;
  const logs: string[] = [];
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'sg-cap-'));
    const out = new PassThrough();
    out.on('data', (d: Buffer) => logs.push(...d.toString().split('\n').filter(Boolean)));
    gw = createGateway({
      ...bareGatewayDeps({ ca: initCa(dir), dataDir: dir }),
      limits: { maxConnectionsPerClient: 5, idleTimeoutMs: 30_000 },
      logger: createLogger({ level: 'info', destination: out }),
    });
    P = (await gw.listen(0, '127.0.0.1')).port;
  });
  afterAll(async () => {
    await gw?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a client address over its cap with 429, leaves other addresses alone, and frees slots as connections close', async () => {
    const open = Array.from({ length: 5 }, () => hold(P));
    await Promise.all(open.map((h) => new Promise((r) => h.socket.once('connect', r))));
    const over = await hold(P).closed;
    expect(over.closed).toBe(true);
    expect(statusOf(over.data)).toBe(429);
    expect(over.data).toContain('SG_ERR_TOO_MANY_CONNECTIONS');
    // Another device (127.0.0.2) is not affected by the first one's connections.
    const other = hold(P, 'GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n', { localAddress: '127.0.0.2' });
    await new Promise((r) => other.socket.once('data', r));
    expect(statusOf(other.data())).not.toBe(429);
    other.socket.destroy();
    // One closed: room for one more from the first address.
    open[0].socket.destroy();
    await open[0].closed;
    // (Our side closes before the gateway has seen the FIN: try until the gateway has.)
    let again: Held | null = null;
    for (let i = 0; i < 20 && !again; i++) {
      const h = hold(P);
      await new Promise((r) => setTimeout(r, 250));
      if (!h.socket.destroyed && h.data() === '') again = h;
    }
    expect(again).not.toBeNull();
    for (const h of [...open, again!]) h.socket.destroy();
    expect(gw.stats.tooManyConnections).toBeGreaterThanOrEqual(1);
    const line = logs.find((l) => l.includes('SG_ERR_TOO_MANY_CONNECTIONS'));
    expect(line).toBeDefined();
    expect(line).not.toContain('127.0.0.1');
  });
});

function fetchThrough(port: number, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: url, headers: { host: new URL(url).host }, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    req.end();
  });
}

/** CONNECT then a finished TLS handshake with the school CA's leaf; the TLS socket, ready for requests. */
function tlsTunnel(port: number, host: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('error', reject);
    s.write(`CONNECT ${host}:443 HTTP/1.1\r\nHost: ${host}:443\r\n\r\n`);
    s.once('data', () => {
      const t = tls.connect({ socket: s, servername: host, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => resolve(t));
      t.on('error', () => undefined);
    });
  });
}
