import { rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Verdict } from '../../blocklists/types';
import { initCa, type SchoolCa } from '../../certs/ca';
import { LeafCertificates } from '../../certs/leaf';
import { hostMatches } from '../../filter/decide';
import { createGateway, type Gateway } from '../../filter/gateway';
import type { IncidentInput } from '../../incidents/types';
import { bareGatewayDeps, loopbackLookup, openTunnel, tmpDir } from './helpers';

/**
 * What reaches the origin, what reaches the client, and what the gateway holds in between: the
 * README's forwarding promises checked at the far ends, over plain HTTP and inside intercepted TLS.
 */

const dirs: string[] = [];
let ca: SchoolCa;
let gw: Gateway;
let P: number;
let origin: HopOrigin;
const recorded: IncidentInput[] = [];

interface Seen {
  url: string;
  /** Header names exactly as they arrived, lower-cased, with their values. */
  headers: Array<[string, string]>;
  tls: boolean;
}

interface HopOrigin {
  ca: SchoolCa;
  httpPort: number;
  httpsPort: number;
  seen: Seen[];
  /** Bytes of /big bodies the origin has handed to its socket so far, per request path. */
  written: Map<string, number>;
  close(): Promise<void>;
}

const BIG = 256 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);

/**
 * /hop answers with hop-by-hop headers of its own; /big/<id> streams BIG bytes, writing only when
 * its socket takes more (so `written` is what the path towards the client has accepted).
 */
async function startHopOrigin(): Promise<HopOrigin> {
  const dir = tmpDir('sg-fwd-origin-');
  dirs.push(dir);
  const originCa = initCa(dir, { commonName: 'forwarding origin CA' });
  const leaf = new LeafCertificates({ ca: originCa, dataDir: dir });
  const seen: Seen[] = [];
  const written = new Map<string, number>();
  const handler: http.RequestListener = (req, res) => {
    const headers: Array<[string, string]> = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i].toLowerCase(), req.rawHeaders[i + 1]]);
    seen.push({ url: req.url ?? '', headers, tls: 'encrypted' in req.socket });
    req.resume();
    if (req.url?.startsWith('/big/')) {
      const id = req.url;
      written.set(id, 0);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG });
      const pump = () => {
        for (;;) {
          const sent = written.get(id)!;
          if (sent >= BIG) return res.end();
          written.set(id, sent + CHUNK.length);
          if (!res.write(CHUNK)) return res.once('drain', pump);
        }
      };
      res.on('close', () => written.set(`${id}:closed`, 1));
      return pump();
    }
    const body = 'origin body';
    res.writeHead(200, [
      'Content-Type', 'text/plain',
      'Content-Length', String(Buffer.byteLength(body)),
      'Connection', 'keep-alive, X-Origin-Hop',
      'X-Origin-Hop', 'must not reach the client',
      'Keep-Alive', 'timeout=5, max=77',
      'Proxy-Authenticate', 'Basic realm="origin"',
      'Proxy-Connection', 'keep-alive',
      'Public-Key-Pins', 'pin-sha256="AAAA"; max-age=10',
      'Upgrade', 'h2c',
      'X-Origin-End', 'reaches the client',
    ]);
    res.end(body);
  };
  const plain = http.createServer(handler);
  const secure = https.createServer({ key: leaf.keyPem, cert: await leaf.certificatePem('127.0.0.1'), SNICallback: leaf.sniCallback }, handler);
  await Promise.all([plain, secure].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
  return {
    ca: originCa,
    httpPort: (plain.address() as net.AddressInfo).port,
    httpsPort: (secure.address() as net.AddressInfo).port,
    seen,
    written,
    close: async () => {
      for (const s of [plain, secure]) {
        s.closeAllConnections();
        await new Promise((r) => s.close(r));
      }
    },
  };
}

beforeAll(async () => {
  const dataDir = tmpDir('sg-fwd-');
  dirs.push(dataDir);
  ca = initCa(dataDir);
  origin = await startHopOrigin();
  const deps = bareGatewayDeps({ ca, dataDir });
  const blocking = {
    categories: new Map(),
    classify: (url: { host: string }): Verdict => (hostMatches(url.host, ['blocked.test']) ? { action: 'block', category: 'testblock' } : { action: 'pass' }) as Verdict,
    matches: () => [],
  };
  gw = createGateway({
    ...deps,
    policy: { ...deps.policy, lists: () => blocking as never, categoriesFor: () => ['testblock'] },
    incidents: { record: (i: IncidentInput) => (recorded.push(i), 'x') },
    upstreamCa: [origin.ca.certPem],
    upstreamLookup: loopbackLookup,
  });
  P = (await gw.listen(0, '127.0.0.1')).port;
});

afterAll(async () => {
  await gw?.close();
  await origin?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** One raw request on `socket`; resolves with the response head (lines as sent) and body, at the end of the body. */
function exchange(socket: net.Socket | tls.TLSSocket, text: string): Promise<{ status: number; head: string[]; body: string }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1').split('\r\n');
      const length = Number(/^content-length:\s*(\d+)/im.exec(head.join('\n'))?.[1] ?? 0);
      if (buf.length - end - 4 < length) return;
      socket.off('data', onData);
      resolve({ status: Number(head[0].split(' ')[1]), head, body: buf.subarray(end + 4, end + 4 + length).toString() });
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(text);
  });
}

const dial = () =>
  new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(P, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });

/** CONNECT, then TLS to the gateway with `servername` as SNI; trusts the school CA only. */
async function intercepted(target: string, servername: string | undefined) {
  const t = await openTunnel(P, target);
  expect(t.status).toBe(200);
  return new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ socket: t.socket, servername, ca: ca.certPem, ALPNProtocols: ['http/1.1'], checkServerIdentity: () => undefined }, () => resolve(s));
    s.once('error', reject);
  });
}

describe('headers between client and origin', () => {
  // Sent by the client: each hop-by-hop one is for the gateway alone (RFC 9110 §7.6.1).
  const clientHeaders = [
    'Proxy-Authorization: Basic dGVhY2hlckBzY2hvb2wudGVzdDpzZWNyZXQ=',
    'Proxy-Connection: keep-alive',
    'Proxy-Anything: x',
    'Connection: keep-alive, X-Client-Hop, X-Other-Hop',
    'X-Client-Hop: listed in Connection',
    'X-Other-Hop: also listed',
    'Keep-Alive: timeout=300',
    'TE: trailers',
    'Trailer: X-Checksum',
    'X-End-To-End: kept',
  ];
  const HOP_NAMES = ['proxy-authorization', 'proxy-connection', 'proxy-anything', 'x-client-hop', 'x-other-hop', 'keep-alive', 'te', 'trailer'];

  const checkOrigin = (seen: Seen | undefined, host: string) => {
    expect(seen, 'the request reached the origin').toBeDefined();
    const names = seen!.headers.map(([n]) => n);
    for (const h of HOP_NAMES) expect(names, h).not.toContain(h);
    // The origin hears about its own connection only, never what the client listed for the gateway.
    for (const [n, v] of seen!.headers) if (n === 'connection') expect(v.toLowerCase()).not.toMatch(/hop/);
    expect(seen!.headers).toContainEqual(['x-end-to-end', 'kept']);
    expect(seen!.headers).toContainEqual(['host', host]);
  };

  const checkClient = (r: { status: number; head: string[]; body: string }) => {
    expect(r.status).toBe(200);
    expect(r.body).toBe('origin body');
    const lines = r.head.slice(1).map((l) => l.toLowerCase());
    const names = lines.map((l) => l.split(':')[0]);
    for (const h of ['x-origin-hop', 'proxy-authenticate', 'proxy-connection', 'public-key-pins', 'upgrade']) expect(names, h).not.toContain(h);
    // The gateway speaks for its own connection to the client: never the origin's Connection or Keep-Alive values.
    expect(lines.join('\n')).not.toContain('max=77');
    expect(lines.join('\n')).not.toMatch(/^connection:.*hop/m);
    expect(lines).toContain('x-origin-end: reaches the client');
  };

  it('plain HTTP: the origin never sees Proxy-Authorization, hop-by-hop or Connection-listed headers, and the client never sees the origin\'s', async () => {
    const s = await dial();
    const host = `127.0.0.1:${origin.httpPort}`;
    const r = await exchange(s, [`GET http://${host}/hop/plain HTTP/1.1`, `Host: ${host}`, ...clientHeaders, '', ''].join('\r\n'));
    s.destroy();
    checkOrigin(origin.seen.find((x) => x.url === '/hop/plain'), host);
    checkClient(r);
  });

  it('intercepted HTTPS: the same, inside the tunnel', async () => {
    const host = `127.0.0.1:${origin.httpsPort}`;
    const s = await intercepted(host, undefined);
    expect(s.authorized).toBe(true);
    const r = await exchange(s, [`GET /hop/tls HTTP/1.1`, `Host: ${host}`, ...clientHeaders, '', ''].join('\r\n'));
    s.destroy();
    const seen = origin.seen.find((x) => x.url === '/hop/tls');
    expect(seen?.tls).toBe(true);
    checkOrigin(seen, host);
    checkClient(r);
  });
});

describe('a client SNI that differs from the CONNECT host', () => {
  // The CONNECT target decides where the gateway connects and what it classifies; SNI only picks
  // the certificate the client is shown, and Host inside TLS must still name the CONNECT target.

  it('gets a certificate for the name it asked for, and a Host naming that other site is refused as fronting without reaching any origin', async () => {
    const before = origin.seen.length;
    const blocks = recorded.length;
    const target = `127.0.0.1:${origin.httpsPort}`;
    const s = await intercepted(target, 'blocked.test');
    const cert = new X509Certificate(s.getPeerCertificate().raw);
    expect(cert.checkHost('blocked.test')).toBe('blocked.test');
    expect(cert.verify(ca.x509.publicKey)).toBe(true);
    const fronted = await exchange(s, 'GET /fronted HTTP/1.1\r\nHost: blocked.test\r\n\r\n');
    expect(fronted.status).toBe(403);
    expect(fronted.head).toContain('x-schoolgate-error: SG_ERR_HOST_MISMATCH');
    // Host naming the CONNECT target: fetched from the CONNECT target, whatever SNI said.
    const ok = await exchange(s, `GET /sni-ignored HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    s.destroy();
    expect(ok.status).toBe(200);
    expect(origin.seen.slice(before).map((x) => x.url)).toEqual(['/sni-ignored']);
    expect(recorded.slice(blocks).map((i) => i.host)).toEqual(['blocked.test']);
  });

  it('cannot lift a block: CONNECT to a blocked host with an allowed SNI still gets the block page, and nothing reaches the origin', async () => {
    const before = origin.seen.length;
    const blocks = recorded.length;
    // The blocked name resolves to the origin: were the SNI obeyed, this is where it would go.
    const s = await intercepted(`blocked.test:${origin.httpsPort}`, 'allowed.test');
    expect(new X509Certificate(s.getPeerCertificate().raw).checkHost('allowed.test')).toBe('allowed.test');
    const asConnect = await exchange(s, `GET /as-connect HTTP/1.1\r\nHost: blocked.test:${origin.httpsPort}\r\n\r\n`);
    expect(asConnect.status).toBe(403);
    expect(asConnect.head).toContain('x-schoolgate-category: testblock');
    const asSni = await exchange(s, `GET /as-sni HTTP/1.1\r\nHost: allowed.test:${origin.httpsPort}\r\n\r\n`);
    s.destroy();
    expect(asSni.status).toBe(403);
    expect(asSni.head).toContain('x-schoolgate-error: SG_ERR_HOST_MISMATCH');
    expect(origin.seen.length).toBe(before);
    expect(recorded.slice(blocks).map((i) => [i.host, i.category])).toEqual([['blocked.test', 'testblock'], ['allowed.test', null]]);
  });

  it('an SNI that is no host name gets the CONNECT host\'s certificate, not a failed handshake', async () => {
    const s = await intercepted(`127.0.0.1:${origin.httpsPort}`, 'bad_label-.test');
    const cert = new X509Certificate(s.getPeerCertificate().raw);
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1');
    s.destroy();
  });
});

describe('back-pressure on a large download', () => {
  /** Polls until `value()` has not changed for `quietMs`; returns it. */
  async function settled(value: () => number, quietMs: number, limitMs: number): Promise<number> {
    let last = -1;
    let since = Date.now();
    const start = Date.now();
    for (;;) {
      const v = value();
      if (v !== last) {
        last = v;
        since = Date.now();
      } else if (Date.now() - since >= quietMs) return v;
      if (Date.now() - start > limitMs) return v;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  const cases: Array<[string, boolean]> = [['plain HTTP', false], ['intercepted HTTPS', true]];
  it.each(cases)('%s: while the client reads nothing, the origin can send only what the buffers on the way hold; then the whole body arrives', async (_name, secure) => {
    const id = `/big/${secure ? 'tls' : 'plain'}`;
    const port = secure ? origin.httpsPort : origin.httpPort;
    const s: net.Socket = secure ? await intercepted(`127.0.0.1:${port}`, undefined) : await dial();
    let received = 0;
    let headerSeen = false;
    s.on('data', (d: Buffer) => {
      received += d.length;
      if (!headerSeen && d.includes('\r\n\r\n')) {
        headerSeen = true;
        s.pause(); // a slow client: reads the headers and then nothing
      }
    });
    s.write(secure ? `GET ${id} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n` : `GET http://127.0.0.1:${port}${id} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    // Loopback socket buffers grow to a few MB each; four of them, undici's and the gateway's
    // stream buffers stay far below 64 MB. Without back-pressure the whole 256 MB goes through.
    const stalled = await settled(() => origin.written.get(id) ?? 0, 1500, 60_000);
    expect(headerSeen).toBe(true);
    expect(stalled).toBeGreaterThan(0);
    expect(stalled, `origin wrote ${(stalled / 2 ** 20).toFixed(1)} MB to a paused client`).toBeLessThan(64 * 2 ** 20);
    const done = new Promise<void>((resolve, reject) => {
      s.on('data', () => {
        if (received >= BIG) resolve();
      });
      s.once('close', () => (received >= BIG ? resolve() : reject(new Error(`closed after ${received} bytes`))));
    });
    s.resume();
    await done;
    s.destroy();
    expect(origin.written.get(id)).toBe(BIG);
  }, 120_000);
});
