import { rmSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCa } from '../../certs/ca';
import { DEFAULT_DESTINATION_RULES, Destinations } from '../../proxy/destinations';
import { createGateway, type Gateway } from '../../filter/gateway';
import type { SchoolgateHandle } from '../../server/start';
import { bareGatewayDeps, openTunnel, raw, startOrigin, startTestGateway, statusOf, viaProxy, type Origin } from './helpers';

/**
 * What the gateway may reach (issue #11, point 3). Every refusal here must happen before any
 * connection is made: the console's server and the test origin count the connections they
 * accept, and the count must not move. Names are made to resolve to refused addresses through
 * the gateway's `upstreamLookup`, so no packet leaves loopback.
 */

/** Names the gateway resolves, and where to: loopback names, and a name for the cloud-metadata address. */
const NAMES: Record<string, string> = {
  'console.test': '127.0.0.1',
  'bank.test': '127.0.0.1',
  'loop.test': '127.0.0.1',
  'loop6.test': '::1',
  'mapped.test': '::ffff:127.0.0.1',
  'meta.test': '169.254.169.254',
  'meta6.test': 'fe80::1',
  'intranet.test': '10.1.2.3',
};
const lookups: string[] = [];
const namesLookup = ((host: string, options: { all?: boolean }, cb: (...a: unknown[]) => void) => {
  lookups.push(host);
  const address = NAMES[host.toLowerCase()] ?? (net.isIP(host) ? host : undefined);
  process.nextTick(() => {
    if (!address) return cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' }));
    const family = net.isIP(address);
    if (options?.all) cb(null, [{ address, family }]);
    else cb(null, address, family);
  });
}) as unknown as net.LookupFunction;

/** A raw WebSocket upgrade through the plain proxy (absolute-form), answered with whatever the gateway sends in 3 s. */
const wsUpgrade = (port: number, url: string) =>
  raw(port, `GET ${url} HTTP/1.1\r\nHost: ${new URL(url).host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, 3000);

/** CONNECT, TLS with the school CA, one GET: the status and error code the gateway answers inside the tunnel. */
async function insideTunnel(port: number, target: string, ca: string): Promise<{ connect: number; status?: number; code?: string; body?: string }> {
  const t = await openTunnel(port, target);
  if (t.status !== 200) {
    t.socket.destroy();
    return { connect: t.status };
  }
  const host = target.replace(/:\d+$/, '');
  const s = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const c = tls.connect({ socket: t.socket, servername: host, ca, ALPNProtocols: ['http/1.1'] }, () => resolve(c));
    c.on('error', reject);
  });
  const text = await new Promise<string>((resolve) => {
    let out = '';
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('close', () => resolve(out));
    setTimeout(() => resolve(out), 5000).unref();
    s.write(`GET /latest/meta-data/ HTTP/1.1\r\nHost: ${target}\r\nConnection: close\r\n\r\n`);
  });
  s.destroy();
  return { connect: 200, status: statusOf(text), code: /x-schoolgate-error: (\S+)/i.exec(text)?.[1], body: text };
}

describe('destination walls (issue #11, point 3)', () => {
  let origin: Origin;
  let sg: SchoolgateHandle;
  let P: number;
  let A: number;
  let adminConnections = 0;
  const dirs: string[] = [];

  beforeAll(async () => {
    origin = await startOrigin();
    // Loopback opened as every other test does: the gateway's own ports must stay shut even so.
    sg = await startTestGateway(origin, dirs, { 'bypass-hosts': 'bank.test' }, { upstreamLookup: namesLookup });
    P = sg.proxyPort;
    A = sg.adminPort;
    sg.admin.server.on('connection', () => adminConnections++);
  });
  afterAll(async () => {
    await sg?.close();
    await origin?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  describe("the gateway's own ports, with loopback otherwise open (as in tests)", () => {
    it('refuses plain requests to the console port and to its own proxy port, however the address is written', async () => {
      const before = adminConnections;
      const frontBefore = sg.gateway.stats.connections;
      for (const url of [
        `http://127.0.0.1:${A}/api/users`, `http://console.test:${A}/`, `http://127.0.0.2:${A}/`, `http://[::ffff:127.0.0.1]:${A}/`,
        `http://[::1]:${A}/`, `http://2130706433:${A}/`, `http://0x7f000001:${A}/`, `http://mapped.test:${A}/`, `http://loop6.test:${A}/`,
      ]) {
        const r = await viaProxy(P, url);
        expect(r.status, url).toBe(403);
        expect(r.headers['x-schoolgate-error'], url).toBe('SG_ERR_DESTINATION_DENIED');
        expect(r.body, url).toContain('cannot be reached through the school web filter');
      }
      const self = await viaProxy(P, `http://127.0.0.1:${P}/`);
      expect(self.status).toBe(403);
      expect(self.headers['x-schoolgate-error']).toBe('SG_ERR_DESTINATION_DENIED');
      expect(adminConnections).toBe(before);
      // Each viaProxy is one connection to the gateway: none came back to it from itself.
      expect(sg.gateway.stats.connections - frontBefore).toBe(10);
    });

    it('refuses CONNECT to the console port (tunnelled and intercepted), and an intercepted request to it by name', async () => {
      const before = adminConnections;
      for (const target of [`127.0.0.1:${A}`, `[::1]:${A}`, `127.0.0.1:${P}`]) {
        const answer = await raw(P, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
        expect(statusOf(answer), target).toBe(403);
        expect(answer).toContain('SG_ERR_DESTINATION_DENIED');
      }
      // A bypassed name is tunnelled: its lookup, bound to the port, refuses it.
      const bank = await raw(P, `CONNECT bank.test:${A} HTTP/1.1\r\nHost: bank.test:${A}\r\n\r\n`);
      expect(statusOf(bank)).toBe(403);
      expect(bank).toContain('SG_ERR_DESTINATION_DENIED');
      // An intercepted name: the block is inside TLS, as a page the browser can show.
      const inside = await insideTunnel(P, `console.test:${A}`, sg.caCertPem);
      expect(inside).toMatchObject({ connect: 200, status: 403, code: 'SG_ERR_DESTINATION_DENIED' });
      expect(adminConnections).toBe(before);
    });

    it('refuses WebSockets to the console port, by address and by name', async () => {
      const before = adminConnections;
      const byAddress = await wsUpgrade(P, `ws://127.0.0.1:${A}/`);
      // Accepted, then closed with 1008 (policy) at once: the close frame carries 0x03f0.
      expect(statusOf(byAddress)).toBe(101);
      expect(Buffer.from(byAddress, 'latin1').includes(Buffer.from([0x03, 0xf0]))).toBe(true);
      const byName = await wsUpgrade(P, `ws://console.test:${A}/`);
      expect(statusOf(byName)).toBe(101);
      expect(adminConnections).toBe(before);
    });

    it('still reaches other loopback ports (the test escape), so the refusals above are about the port', async () => {
      const r = await viaProxy(P, `http://loop.test:${origin.httpPort}/fine`);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body).url).toBe('/fine');
    });
  });

  describe('with the default policy (no test escape)', () => {
    let gw: Gateway;
    let G: number;
    let denied: Gateway;
    let D: number;
    beforeAll(async () => {
      const deps = bareGatewayDeps({ ca: loadCa(sg.config.dataDir), dataDir: sg.config.dataDir });
      gw = createGateway({
        ...deps, policy: { ...deps.policy, bypassHosts: ['bank.test'] }, upstreamCa: [origin.ca.certPem], upstreamLookup: namesLookup, destinations: new Destinations(),
      });
      G = (await gw.listen(0, '127.0.0.1')).port;
      denied = createGateway({
        ...bareGatewayDeps({ ca: loadCa(sg.config.dataDir), dataDir: sg.config.dataDir }),
        upstreamLookup: namesLookup,
        destinations: new Destinations({ ...DEFAULT_DESTINATION_RULES, deniedDestinations: ['10.0.0.0/8'] }),
      });
      D = (await denied.listen(0, '127.0.0.1')).port;
    });
    afterAll(async () => {
      await gw?.close();
      await denied?.close();
    });

    it('refuses loopback origins by address and by name, without connecting', async () => {
      const before = origin.connections();
      for (const url of [
        `http://127.0.0.1:${origin.httpPort}/`, `http://loop.test:${origin.httpPort}/`, `http://mapped.test:${origin.httpPort}/`,
        `http://[::ffff:7f00:1]:${origin.httpPort}/`, `http://0.0.0.0:${origin.httpPort}/`, `http://[::]:${origin.httpPort}/`,
      ]) {
        const r = await viaProxy(G, url);
        expect(r.status, url).toBe(403);
        expect(r.headers['x-schoolgate-error'], url).toBe('SG_ERR_DESTINATION_DENIED');
      }
      expect(await raw(G, `CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n`)).toMatch(/^HTTP\/1\.1 403[^]*SG_ERR_DESTINATION_DENIED/);
      const inside = await insideTunnel(G, 'loop.test:443', sg.caCertPem);
      expect(inside).toMatchObject({ connect: 200, status: 403, code: 'SG_ERR_DESTINATION_DENIED' });
      // A bypassed (tunnelled, never decrypted) name that resolves to loopback.
      expect(await raw(G, `CONNECT bank.test:443 HTTP/1.1\r\nHost: bank.test:443\r\n\r\n`)).toMatch(/^HTTP\/1\.1 403[^]*SG_ERR_DESTINATION_DENIED[^]*loopback/);
      const ws = await wsUpgrade(G, `ws://loop.test:${origin.httpPort}/`);
      expect(statusOf(ws)).toBe(101);
      expect(origin.connections()).toBe(before);
      expect(gw.stats.upstreamErrors).toBe(0); // refused, not attempted and failed
    });

    it('refuses CONNECT to any port but 443', async () => {
      for (const port of [80, 22, 25, 8080, origin.httpsPort]) {
        const answer = await raw(G, `CONNECT example.test:${port} HTTP/1.1\r\nHost: example.test:${port}\r\n\r\n`);
        expect(statusOf(answer), String(port)).toBe(403);
        expect(answer).toContain(`CONNECT to port ${port} is not allowed`);
      }
    });

    it('refuses link-local and cloud-metadata addresses before connecting, as literals and after resolving a name', async () => {
      lookups.length = 0;
      for (const url of ['http://169.254.169.254/latest/meta-data/', 'http://[fe80::1]/', 'http://[::ffff:169.254.169.254]/', 'http://meta.test/latest/meta-data/', 'http://meta6.test/']) {
        const r = await viaProxy(G, url);
        expect(r.status, url).toBe(403);
        expect(r.headers['x-schoolgate-error'], url).toBe('SG_ERR_DESTINATION_DENIED');
        expect(r.body, url).toMatch(/link-local/);
      }
      // Literals never reach a lookup; the names did, and were refused on what they resolved to.
      expect(lookups).toEqual(['meta.test', 'meta6.test']);
      expect(await raw(G, `CONNECT 169.254.169.254:443 HTTP/1.1\r\nHost: 169.254.169.254:443\r\n\r\n`)).toMatch(/^HTTP\/1\.1 403/);
      const inside = await insideTunnel(G, 'meta.test:443', sg.caCertPem);
      expect(inside).toMatchObject({ connect: 200, status: 403, code: 'SG_ERR_DESTINATION_DENIED' });
      expect(gw.stats.upstreamErrors).toBe(0);
    });

    it('closes a private range when the configuration says so', async () => {
      for (const url of ['http://intranet.test/', 'http://10.1.2.3/']) {
        const r = await viaProxy(D, url);
        expect(r.status, url).toBe(403);
        expect(r.body, url).toContain('address range closed by the school');
      }
      expect(denied.stats.upstreamErrors).toBe(0);
    });
  });
});
