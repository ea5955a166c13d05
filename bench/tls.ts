/**
 * Time to the first intercepted TLS handshake for new hosts (a unique SNI name each), through the
 * gateway, through http-mitm-proxy with its defaults (an RSA key and an https.Server per host),
 * and direct to a local HTTPS origin, all measured in this run. Target: gateway ≤ 1.5 × direct.
 *
 *   node --import=tsx bench/tls.ts [--hosts 40] [--no-peer]
 *
 * Handshakes run one at a time (a new host is a latency question, not a throughput one), so all
 * servers can share this process without queueing behind the client.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { Proxy as MitmProxy } from 'http-mitm-proxy';
import { loadConfig } from '../core/config';
import { silentLogger } from '../core/log';
import { startSchoolgate } from '../proxy/start';
import { makeLists, startHttpsOrigin } from '../test/e2e/fixtures';

const { values } = parseArgs({
  options: { hosts: { type: 'string', default: '40' }, 'no-peer': { type: 'boolean', default: false } },
});
const HOSTS = Math.max(5, Math.min(500, Number(values.hosts) || 40));
const run = randomBytes(3).toString('hex');
const WARMUP = 3;

interface Sample {
  /** TCP connect (+ CONNECT round trip when proxied) + TLS handshake, ms. */
  total: number;
  /** From sending the ClientHello to the handshake being done, ms. */
  handshake: number;
  subject: string;
}

function done(resolve: (s: Sample) => void, t0: number, t1: number, sock: tls.TLSSocket) {
  const t2 = performance.now();
  const cert = sock.getPeerCertificate();
  sock.destroy();
  resolve({ total: t2 - t0, handshake: t2 - t1, subject: String(cert?.subject?.CN ?? cert?.subject?.O ?? '') });
}

function direct(port: number, servername: string): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const raw = net.connect({ port, host: '127.0.0.1' }, () => {
      const t1 = performance.now();
      const s = tls.connect({ socket: raw, servername, rejectUnauthorized: false });
      s.once('secureConnect', () => done(resolve, t0, t1, s));
      s.once('error', reject);
    });
    raw.once('error', reject);
  });
}

function viaProxy(proxyPort: number, servername: string): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const raw = net.connect({ port: proxyPort, host: '127.0.0.1' });
    const timer = setTimeout(() => { raw.destroy(); reject(new Error(`handshake for ${servername} timed out`)); }, 20_000);
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      raw.off('data', onData);
      if (!/^HTTP\/1\.[01] 200/.test(head)) {
        clearTimeout(timer);
        raw.destroy();
        reject(new Error(`CONNECT ${servername}: ${head.split('\r\n')[0]}`));
        return;
      }
      const t1 = performance.now();
      const s = tls.connect({ socket: raw, servername, rejectUnauthorized: false });
      s.once('secureConnect', () => { clearTimeout(timer); done(resolve, t0, t1, s); });
      s.once('error', (e) => { clearTimeout(timer); reject(e); });
    };
    raw.on('data', onData);
    raw.once('error', reject);
    raw.write(`CONNECT ${servername}:443 HTTP/1.1\r\nHost: ${servername}:443\r\nProxy-Connection: keep-alive\r\n\r\n`);
  });
}

interface Stats { median: number; p95: number; mean: number; n: number }
function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
  return { median: q(0.5), p95: q(0.95), mean: s.reduce((a, b) => a + b, 0) / s.length, n: s.length };
}

async function measure(label: string, once: (host: string) => Promise<Sample>, expectSubject: boolean): Promise<{ total: Stats; handshake: Stats }> {
  // Warm the code paths (JIT, TLS library) on hosts that are not counted.
  for (let i = 0; i < WARMUP; i++) await once(`warm${i}-${run}-${label}.tls-bench.test`);
  const total: number[] = [];
  const handshake: number[] = [];
  for (let i = 0; i < HOSTS; i++) {
    const host = `h${i}-${run}-${label}.tls-bench.test`;
    const s = await once(host);
    // A proxied handshake must be an interception (a leaf made for this host), never a cached or tunnelled one.
    if (expectSubject && s.subject !== host) throw new Error(`${label}: expected a certificate for ${host}, got ${s.subject}`);
    total.push(s.total);
    handshake.push(s.handshake);
  }
  return { total: stats(total), handshake: stats(handshake) };
}

async function startMitmDefaults(caDir: string): Promise<{ port: number; close: () => void }> {
  const proxy = new MitmProxy();
  proxy.onError(() => {});
  await new Promise<void>((resolve, reject) => proxy.listen({ port: 0, host: '127.0.0.1', sslCaDir: caDir }, (e) => (e ? reject(e) : resolve())));
  return { port: proxy.httpPort, close: () => proxy.close() };
}

const fmt = (s: Stats) => `median ${s.median.toFixed(2)} ms  p95 ${s.p95.toFixed(2)} ms  mean ${s.mean.toFixed(2)} ms`;

async function main() {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sg-bench-tls-'));
  const saved = { debug: console.debug, info: console.info, error: console.error };
  const origin = await startHttpsOrigin('tls-bench-origin', ['tls-bench.test']);
  const results: Record<string, { total: Stats; handshake: Stats }> = {};
  const closers: Array<() => unknown> = [origin.close];
  try {
    console.log(`bench/tls: ${HOSTS} new hosts each (unique SNI), ${WARMUP} warm-up handshakes not counted; node ${process.version}`);
    results.direct = await measure('direct', (h) => direct(origin.port, h), false);
    console.log(`  direct to origin        total ${fmt(results.direct.total)}`);

    const lists = makeLists({ gambling: { domains: ['casino.tls-bench.test'], name: 'Gambling/Casino games' } }, path.join(tmp, 'lists'));
    const config = loadConfig(
      { 'data-dir': path.join(tmp, 'data'), lists: [lists], categories: 'gambling', 'proxy-port': '0', 'admin-port': '0', listen: '127.0.0.1' },
      {},
      tmp,
    );
    const gw = await startSchoolgate(config, { logger: silentLogger });
    closers.push(() => gw.close());
    results.gateway = await measure('gateway', (h) => viaProxy(gw.proxyPort, h), true);
    console.log(`  schoolgate gateway      total ${fmt(results.gateway.total)}`);
    console.log(`                          TLS only ${fmt(results.gateway.handshake)}`);

    if (!values['no-peer']) {
      // http-mitm-proxy logs every new host's server, and every client hang-up as an error, on the console.
      console.debug = console.info = console.error = () => {};
      const peer = await startMitmDefaults(path.join(tmp, 'mitm-ca'));
      closers.push(peer.close);
      results.peer = await measure('mitm', (h) => viaProxy(peer.port, h), true);
      console.log(`  http-mitm-proxy default total ${fmt(results.peer.total)}`);
      console.log(`                          TLS only ${fmt(results.peer.handshake)}`);
    }

    const r = (a: Stats, b: Stats) => (a.median / b.median).toFixed(2);
    console.log('ratios (median, total time to a finished handshake):');
    console.log(`  gateway / direct            ${r(results.gateway.total, results.direct.total)}x  (target ≤ 1.5x)`);
    if (results.peer) {
      console.log(`  http-mitm-proxy / direct    ${r(results.peer.total, results.direct.total)}x`);
      console.log(`  http-mitm-proxy / gateway   ${r(results.peer.total, results.gateway.total)}x`);
    }
    const ok = results.gateway.total.median <= 1.5 * results.direct.total.median;
    console.log(`target ${ok ? 'MET' : 'MISSED'}: first intercepted handshake within 1.5x the direct one`);
  } finally {
    for (const c of closers.reverse()) await c();
    Object.assign(console, saved);
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
// http-mitm-proxy leaves per-host servers' handles behind; the bench is over, so do not wait on them.
process.exit(0);
