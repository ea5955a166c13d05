import http from 'node:http';
import net from 'node:net';
import { rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SchoolgateHandle } from '../../server/start';
import { loadReferenceSecret, sealReference } from '../../incidents/reference';
import { gatewayPages } from '../../admin-api/gateway-pages';
import { harness, type Harness } from '../admin-api/helpers';
import { loopbackLookup, refFrom, startOrigin, startTestGateway, viaProxy, viaTunnel, type Origin, type Reply } from './helpers';

/**
 * The gateway's own pages (issue 14, point 2): a name only the gateway answers, plain and inside
 * CONNECT, never resolved or forwarded, serving the block page's buttons, the CA and the PAC file
 * and nothing of the console; the report bound to the address the gateway saw.
 *
 * Every name the gateway looks up resolves to the local origin, and the requests name the
 * origin's ports: a request to the reserved name that were forwarded or tunnelled would reach
 * the origin, which counts its connections, and the lookup would have been asked for the name.
 */
const PAGES = 'schoolgate.invalid';

describe('the gateway\'s own pages on a reserved name', () => {
  let origin: Origin;
  let sg: SchoolgateHandle;
  let P: number;
  const dirs: string[] = [];
  const looked: string[] = [];

  beforeAll(async () => {
    origin = await startOrigin();
    const lookup = ((host: string, options: object, cb: (...a: unknown[]) => void) => {
      looked.push(host);
      return (loopbackLookup as unknown as (h: string, o: object, c: (...a: unknown[]) => void) => void)(host, options, cb);
    }) as unknown as net.LookupFunction;
    // The reserved name on the bypass list too: it is still never tunnelled.
    sg = await startTestGateway(origin, dirs, { 'bypass-hosts': `${PAGES},bank.test` }, { upstreamLookup: lookup });
    P = sg.proxyPort;
  });
  afterAll(async () => {
    await sg?.close();
    await origin?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const incidents = async (where: string, params: unknown[] = []) => {
    await sg.incidents.flush();
    return (await sg.db.query<Record<string, unknown>>(`SELECT kind, related_key, client_ip::text AS client_ip, note, url FROM incidents WHERE ${where} ORDER BY id`, params)).rows;
  };
  const tls = (path: string, opts: { method?: string; headers?: Record<string, string>; body?: string; port?: number } = {}) =>
    viaTunnel(P, `${PAGES}:${opts.port ?? origin.httpsPort}`, { ca: sg.caCertPem, path, method: opts.method, headers: opts.headers, body: opts.body });

  it('answers plain HTTP to the name itself: the CA, the PAC file and a setup page; nothing is looked up or forwarded', async () => {
    const before = origin.connections();
    const ca = await viaProxy(P, `http://${PAGES}:${origin.httpPort}/ca.crt`);
    expect(ca.status).toBe(200);
    expect(ca.headers['content-type']).toContain('application/x-x509-ca-cert');
    expect(ca.body).toBe(sg.caCertPem);
    const pac = await viaProxy(P, `http://${PAGES}/proxy.pac`);
    expect(pac.status).toBe(200);
    expect(pac.body).toContain(`PROXY 127.0.0.1:${P}`);
    const index = await viaProxy(P, `http://${PAGES}/`);
    expect(index.status).toBe(200);
    expect(index.body).toContain('href="/ca.crt"');
    expect(origin.connections()).toBe(before);
    expect(looked).not.toContain(PAGES);
    // The same request to another name is forwarded, so the two checks above could have failed.
    expect((await viaProxy(P, `http://elsewhere.test:${origin.httpPort}/ca.crt`)).status).toBe(200);
    expect(origin.connections()).toBe(before + 1);
    expect(looked).toContain('elsewhere.test');
  });

  it('intercepts CONNECT to the name with a school-CA certificate for it, bypass list or not, and answers inside', async () => {
    const before = origin.connections();
    const r = await tls('/ca.crt');
    expect(r.authorized).toBe(true);
    expect(r.peer.subjectaltname).toContain(`DNS:${PAGES}`);
    expect(r.peer.issuer.CN).toBe('schoolgate school CA');
    expect(r.status).toBe(200);
    expect(r.body).toBe(sg.caCertPem);
    expect((await tls('/proxy.pac', { port: 443 })).body).toContain('FindProxyForURL');
    expect(origin.connections()).toBe(before);
    expect(looked).not.toContain(PAGES);
    // A bypassed name is tunnelled to the origin: the reserved one above was not.
    const bank = await viaTunnel(P, `bank.test:${origin.httpsPort}`, { ca: origin.ca.certPem, path: '/' });
    expect(bank.peer.issuer.CN).toBe('test origin CA');
    expect(origin.connections()).toBe(before + 1);
  });

  it('serves none of the console under the name: /api, the console, /docs, /healthz, /metrics answer 404, plain and TLS', async () => {
    const before = origin.connections();
    const paths = ['/api/session', '/api/incidents', '/console/', '/console', '/docs', '/healthz', '/metrics', '/api/login', '/block/report/', '/CA.CRT'];
    for (const path of paths) {
      const plain = await viaProxy(P, `http://${PAGES}${path}`);
      expect(plain.status, `plain ${path}`).toBe(404);
      expect(plain.headers['x-schoolgate-error']).toBe('SG_ERR_NOT_FOUND');
      expect((await tls(path)).status, `tls ${path}`).toBe(404);
    }
    const login = await viaProxy(P, `http://${PAGES}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"email":"a@b","password":"x"}' });
    expect(login.status).toBe(404);
    // A GET of the report route, and a POST to the CA, are not what the name serves either.
    expect((await viaProxy(P, `http://${PAGES}/block/report`)).status).toBe(404);
    expect((await viaProxy(P, `http://${PAGES}/ca.crt`, { method: 'POST', body: 'x' })).status).toBe(404);
    // On the console's own port they are there: the refusal is the name's.
    expect((await fetch(`http://127.0.0.1:${sg.adminPort}/api/session`)).status).toBe(401);
    expect([200, 503]).toContain((await fetch(`http://127.0.0.1:${sg.adminPort}/healthz`)).status);
    expect(origin.connections()).toBe(before);
  });

  it('gives the block page buttons that post to the name with the blocked request\'s scheme', async () => {
    const plain = await viaProxy(P, 'http://blocked.test/plain');
    expect(plain.status).toBe(403);
    expect(plain.body).toContain(`action="http://${PAGES}/block/report"`);
    const secure = await viaTunnel(P, 'blocked.test:443', { ca: sg.caCertPem, path: '/secure' });
    expect(secure.status).toBe(403);
    expect(secure.body).toContain(`action="https://${PAGES}/block/report"`);
    expect(secure.body).not.toContain(`127.0.0.1:${sg.adminPort}`);
  });

  it('files the report under the name, bound to the address the gateway saw; forwarding headers change nothing', async () => {
    const forged = { 'x-forwarded-for': '10.20.30.40', forwarded: 'for=10.20.30.40', 'x-real-ip': '10.20.30.40', 'x-client-ip': '10.20.30.40' };
    const form = (ref: string, type = 'self_report', note = '') => new URLSearchParams({ ref, type, note }).toString();
    const post = (ref: string, via: 'plain' | 'tls', type?: string, note?: string): Promise<Reply> => {
      const headers = { 'content-type': 'application/x-www-form-urlencoded', ...forged };
      return via === 'plain'
        ? viaProxy(P, `http://${PAGES}/block/report`, { method: 'POST', headers, body: form(ref, type, note) })
        : tls('/block/report', { method: 'POST', headers, body: form(ref, type, note), port: 443 });
    };

    // A block of this client (127.0.0.1), reported through the name, plain and inside TLS.
    const page = await viaProxy(P, 'http://blocked.test/report-me');
    const ref = refFrom(page.body)!;
    const key = /<code>([0-9a-f-]{36})<\/code>/.exec(page.body)![1];
    const ok = await post(ref, 'plain', 'self_report', 'through the name');
    expect(ok.status).toBe(200);
    expect(ok.body).toContain('sent to the safeguarding lead');
    expect((await post(ref, 'tls', 'unblock_request')).status).toBe(200);
    expect(await incidents('related_key = $1', [key])).toEqual([
      expect.objectContaining({ kind: 'self_report', client_ip: '127.0.0.1', note: 'through the name', url: 'http://blocked.test/report-me' }),
      expect.objectContaining({ kind: 'unblock_request', client_ip: '127.0.0.1' }),
    ]);

    // A reference for another address, with every forwarding header naming that address: refused.
    const secret = loadReferenceSecret(sg.config.dataDir);
    const other = { k: randomUUID(), url: 'http://blocked.test/x', host: 'blocked.test', category: 'testblock', clientIp: '10.20.30.40', user: null, group: 'default', t: Date.now() };
    for (const via of ['plain', 'tls'] as const) {
      const r = await post(sealReference(secret, other), via);
      expect(r.status, via).toBe(403);
      expect(r.body).toContain('SG_ERR_REFERENCE_CLIENT');
    }
    expect(await incidents('related_key = $1', [other.k])).toEqual([]);
  });

  it('binds to the client address the gateway admitted: a block seen from 127.0.0.2 is reported only from there', async () => {
    // Plain proxying from a chosen source address: the gateway admits it as that client.
    const from = (localAddress: string, url: string, method = 'GET', body?: string, type?: string) =>
      new Promise<Reply>((resolve, reject) => {
        const u = new URL(url);
        const req = http.request({ host: '127.0.0.1', port: P, localAddress, method, path: url, agent: false, headers: { host: u.host, ...(type ? { 'content-type': type } : {}) } });
        req.on('response', (res) => {
          let data = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (data += d));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: data, reusedSocket: false }));
        });
        req.on('error', reject);
        req.end(body);
      });
    const page = await from('127.0.0.2', 'http://blocked.test/from-two');
    const ref = refFrom(page.body)!;
    const key = /<code>([0-9a-f-]{36})<\/code>/.exec(page.body)![1];
    const body = new URLSearchParams({ ref, type: 'self_report' }).toString();
    const FORM = 'application/x-www-form-urlencoded';
    const elsewhere = await from('127.0.0.1', `http://${PAGES}/block/report`, 'POST', body, FORM);
    expect(elsewhere.status).toBe(403);
    expect(elsewhere.body).toContain('SG_ERR_REFERENCE_CLIENT');
    expect((await from('127.0.0.2', `http://${PAGES}/block/report`, 'POST', body, FORM)).status).toBe(200);
    expect(await incidents('related_key = $1', [key])).toEqual([expect.objectContaining({ kind: 'self_report', client_ip: '127.0.0.2' })]);
  });

  it('refuses a tunnel to the name used for another host, and a WebSocket to it', async () => {
    const before = origin.connections();
    const mismatch = await viaTunnel(P, `${PAGES}:443`, { ca: sg.caCertPem, path: '/ca.crt', host: `127.0.0.1:${origin.httpsPort}` });
    expect(mismatch.status).toBe(400);
    expect(mismatch.headers['x-schoolgate-error']).toBe('SG_ERR_HOST_MISMATCH');
    const ws = await new Promise<string>((resolve) => {
      const s = net.connect(P, '127.0.0.1', () =>
        s.write(`GET http://${PAGES}:${origin.httpPort}/ws HTTP/1.1\r\nHost: ${PAGES}:${origin.httpPort}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`));
      let got = '';
      s.on('data', (d) => (got += d.toString('latin1')));
      s.on('close', () => resolve(got));
      s.on('error', () => resolve(got));
      setTimeout(() => s.destroy(), 3000);
    });
    // Accepted as a WebSocket by the gateway, then closed at once with 1008: no upstream side was opened.
    expect(ws).toMatch(/^HTTP\/1\.1 101/);
    expect(ws).toContain('not available');
    expect(origin.connections()).toBe(before);
  });
});

/**
 * The admin side alone: the address the gateway hands over is the one the report is bound to,
 * whatever the socket's peer. Here the peer is 127.0.0.1 and the gateway says 10.20.30.40.
 */
describe('gatewayPages: the handed-over client address, and only the public routes', () => {
  let h: Harness;
  let server: http.Server;
  let port: number;
  const SECRET = Buffer.alloc(32, 7); // the harness app's reference secret
  beforeAll(async () => {
    h = await harness();
    const handle = gatewayPages(h.app);
    server = http.createServer((req, res) => handle(req, res, '10.20.30.40'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await h?.close();
  });

  const report = (clientIp: string) => {
    const ref = sealReference(SECRET, { k: randomUUID(), url: 'http://casino.example/', host: 'casino.example', category: 'gambling', clientIp, user: null, group: 'pupils', t: Date.now() });
    return fetch(`http://127.0.0.1:${port}/block/report`, {
      method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json', 'x-forwarded-for': clientIp }, body: JSON.stringify({ ref, type: 'self_report' }),
    });
  };

  it('accepts a reference for the address the gateway handed over, and refuses one for the socket\'s own peer', async () => {
    expect((await report('10.20.30.40')).status).toBe(201);
    const r = await report('127.0.0.1');
    expect(r.status).toBe(403);
    expect(((await r.json()) as { error: { code: string } }).error.code).toBe('SG_ERR_REFERENCE_CLIENT');
  });

  it('passes only the public routes to the app', async () => {
    expect((await fetch(`http://127.0.0.1:${port}/ca.crt`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/api/incidents`, { headers: { cookie: h.users.safeguarding_lead.cookie } })).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${port}/console/`)).status).toBe(404);
  });
});
