/**
 * Time to the first intercepted TLS handshake for new hosts (a unique SNI name each), through the
 * gateway (as installed today: ECDSA school CA; and with an RSA school CA, as older installs
 * have), through http-mitm-proxy with its defaults (an RSA key and an https.Server per host),
 * and direct to a local HTTPS origin, all measured in this run. Target: gateway ≤ 1.5 × direct.
 *
 *   node --import=tsx bench/tls.ts [--hosts 40] [--no-peer]
 *
 * Each server runs in its own process (the gateway as the real `schoolgate start` CLI): a gateway
 * answers CONNECT and signs the new host's certificate while the client sends its ClientHello,
 * and only separate processes let that overlap happen as it does on a network. Handshakes run
 * one at a time: a new host is a latency question, not a throughput one.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { selfSignedCert } from '../harness/certs';
import { Agent, ProxyAgent, request, type Dispatcher } from 'undici';
import { MITM_DEFAULTS, perRequestCpu, startChild, startGatewayCli, type Child } from './proxy';

const { values } = parseArgs({
  options: { hosts: { type: 'string', default: '40' }, 'no-peer': { type: 'boolean', default: false } },
});
const HOSTS = Math.max(5, Math.min(500, Number(values.hosts) || 40));
const run = randomBytes(3).toString('hex');
const WARMUP = 3;

const ORIGIN = `
const https = require('node:https');
const fs = require('node:fs');
const body = 'x'.repeat(256);
const s = https.createServer({ key: fs.readFileSync(process.argv[1]), cert: fs.readFileSync(process.argv[2]), keepAliveTimeout: 60000 }, (req, res) => res.end(body));
s.listen(0, '127.0.0.1', () => console.log('PORT ' + s.address().port));
`;

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

interface Subject {
  label: string;
  once: (host: string) => Promise<Sample>;
  /** A proxied handshake must be an interception: a leaf made for this very host. */
  intercepts: boolean;
  /** How many of the hosts it is measured on (the slow peer gets fewer). */
  hosts: number;
  total: number[];
  handshake: number[];
}

/**
 * Host i of every subject is measured back to back, so a burst of load on this machine lands on
 * all of them alike rather than on whichever happened to run then.
 */
async function measureInterleaved(subjects: Subject[]): Promise<void> {
  for (const sub of subjects) for (let i = 0; i < WARMUP; i++) await sub.once(`warm${i}-${run}-${sub.label}.tls-bench.test`);
  for (let i = 0; i < HOSTS; i++) {
    for (const sub of subjects) {
      if (i >= sub.hosts) continue;
      const host = `h${i}-${run}-${sub.label}.tls-bench.test`;
      const r = await sub.once(host);
      if (sub.intercepts && r.subject !== host) throw new Error(`${sub.label}: expected a certificate for ${host}, got ${r.subject}`);
      sub.total.push(r.total);
      sub.handshake.push(r.handshake);
    }
  }
}

/** 50 loops of keep-alive GETs for `ms`; every answer must be the origin's 200. */
async function hammer(url: string, dispatcher: Dispatcher, ms: number): Promise<{ rps: number; requests: number }> {
  let requests = 0;
  const t0 = performance.now();
  const end = t0 + ms;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (performance.now() < end) {
        const r = await request(url, { dispatcher });
        await r.body.text();
        if (r.statusCode !== 200) throw new Error(`${url}: status ${r.statusCode}`);
        requests++;
      }
    }),
  );
  return { rps: requests / ((performance.now() - t0) / 1000), requests };
}

const fmt = (s: Stats) => `median ${s.median.toFixed(2)} ms  p95 ${s.p95.toFixed(2)} ms  mean ${s.mean.toFixed(2)} ms`;

async function main() {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sg-bench-tls-'));
  const children: Child[] = [];
  try {
    const peerHosts = values['no-peer'] ? 0 : Math.min(HOSTS, 20);
    console.log(`bench/tls: ${HOSTS} new hosts each (unique SNI; ${peerHosts} for http-mitm-proxy), interleaved, after ${WARMUP} warm-up handshakes; node ${process.version}, ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(1)}`);
    const cert = selfSignedCert(['tls-bench.test', '*.tls-bench.test', '127.0.0.1']);
    writeFileSync(path.join(tmp, 'origin.key'), cert.key);
    writeFileSync(path.join(tmp, 'origin.crt'), cert.cert);
    const origin = await startChild('origin', ['-e', ORIGIN, path.join(tmp, 'origin.key'), path.join(tmp, 'origin.crt')]);
    children.push(origin);
    // The gateway trusts the bench origin's self-signed certificate when it fetches from it.
    const gw = await startGatewayCli(tmp, { env: { NODE_EXTRA_CA_CERTS: path.join(tmp, 'origin.crt') } });
    children.push(gw);
    const gwRsa = await startGatewayCli(tmp, { dataName: 'data-rsa', caKeyType: 'rsa' });
    children.push(gwRsa);
    const subject = (label: string, once: Subject['once'], intercepts: boolean, hosts = HOSTS): Subject => ({ label, once, intercepts, hosts, total: [], handshake: [] });
    const subjects = [
      subject('direct', (h) => direct(origin.port, h), false),
      subject('gateway', (h) => viaProxy(gw.port, h), true),
      // The host the gateway has just seen again: what is left once its leaf is cached.
      subject('gwrepeat', (h) => viaProxy(gw.port, h.replace('-gwrepeat.', '-gateway.')), false),
      subject('gwrsa', (h) => viaProxy(gwRsa.port, h), true),
    ];
    if (peerHosts) {
      const peer = await startChild('http-mitm-proxy', ['-e', MITM_DEFAULTS, path.join(tmp, 'mitm-ca')]);
      children.push(peer);
      subjects.push(subject('mitm', (h) => viaProxy(peer.port, h), true, peerHosts));
    }
    await measureInterleaved(subjects);

    const [d, g, gr, gRsa, m] = subjects.map((x) => ({ total: stats(x.total), handshake: stats(x.handshake) }));
    console.log(`  direct to origin         total    ${fmt(d.total)}`);
    console.log(`  schoolgate gateway       total    ${fmt(g.total)}`);
    console.log(`                           TLS only ${fmt(g.handshake)}`);
    console.log(`  gateway, repeat host     total    ${fmt(gr.total)}`);
    console.log(`  gateway, RSA school CA   total    ${fmt(gRsa.total)}`);
    if (m) {
      console.log(`  http-mitm-proxy defaults total    ${fmt(m.total)}`);
      console.log(`                           TLS only ${fmt(m.handshake)}`);
    }
    const r = (a: Stats, b: Stats) => (a.median / b.median).toFixed(2);
    console.log('ratios (median time from TCP connect to a finished handshake; proxied includes the CONNECT round trip):');
    console.log(`  gateway / direct            ${r(g.total, d.total)}x  (target ≤ 1.5x)`);
    console.log(`  gateway repeat / direct     ${r(gr.total, d.total)}x`);
    console.log(`  gateway RSA CA / direct     ${r(gRsa.total, d.total)}x  (installs made before ECDSA school CAs)`);
    if (m) {
      console.log(`  http-mitm-proxy / direct    ${r(m.total, d.total)}x`);
      console.log(`  http-mitm-proxy / gateway   ${r(m.total, g.total)}x`);
    }
    const ok = g.total.median <= 1.5 * d.total.median;
    console.log(`target ${ok ? 'MET' : 'MISSED'}: first intercepted handshake within 1.5x the direct one`);

    // What interception costs once connections are up: HTTPS GETs over 50 keep-alive
    // connections, direct and through the gateway (decrypt, classify, re-encrypt upstream).
    const originCa = readFileSync(path.join(tmp, 'origin.crt'), 'utf8');
    const schoolCa = readFileSync(path.join(tmp, 'data', 'ca', 'ca.crt'), 'utf8');
    const url = `https://127.0.0.1:${origin.port}/`;
    const directAgent = new Agent({ connections: 50, connect: { ca: originCa } });
    const gwAgent = new ProxyAgent({ uri: `http://127.0.0.1:${gw.port}`, requestTls: { ca: schoolCa }, connections: 50 });
    const rps: Record<'direct' | 'gateway', number[]> = { direct: [], gateway: [] };
    const cpu: number[] = [];
    await hammer(url, directAgent, 1000);
    await hammer(url, gwAgent, 1000);
    for (let round = 0; round < 2; round++) {
      rps.direct.push((await hammer(url, directAgent, 4000)).rps);
      const { result: h, cpuPerReq } = await perRequestCpu(gw.child.pid, () => hammer(url, gwAgent, 4000), (x) => x.requests);
      rps.gateway.push(h.rps);
      if (cpuPerReq !== null) cpu.push(cpuPerReq);
    }
    await directAgent.close();
    await gwAgent.close();
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    console.log('intercepted HTTPS requests, 50 keep-alive connections (2 rounds of 4 s, interleaved):');
    console.log(`  direct to origin         ${mean(rps.direct).toFixed(0)} req/s  (${rps.direct.map((x) => x.toFixed(0)).join(' ')})`);
    console.log(`  through the gateway      ${mean(rps.gateway).toFixed(0)} req/s  (${rps.gateway.map((x) => x.toFixed(0)).join(' ')})${cpu.length ? `, ${mean(cpu).toFixed(1)} µs gateway CPU a request` : ''}`);
    console.log(`  gateway / direct         ${(mean(rps.gateway) / mean(rps.direct)).toFixed(2)}x  (the client, here in this process, is part of both)`);
  } finally {
    for (const c of children.reverse()) await c.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
