/**
 * Plain HTTP requests per second through the gateway, through Debian squid (a plain forward proxy),
 * through http-mitm-proxy with its defaults, and direct to the origin, side by side in one run.
 * Keep-alive on both sides: autocannon holds its connections, and the origin counts the TCP
 * connections each proxy opened to it. Target: gateway ≥ squid.
 *
 *   node --import=tsx bench/proxy.ts [--duration 5] [--rounds 3] [--connections 50] [--no-peer] [--no-squid]
 *
 * Every server runs in its own process (the gateway as the real `schoolgate start` CLI), so
 * autocannon in this process never shares an event loop with what it measures.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { squidBinary, startSquid } from './peers/squid';
import { makeLists } from '../harness/lists';

/** The part of autocannon's API used here (it ships no types, and @types/autocannon is not worth a dependency). */
interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}
type Cannon = (opts: {
  url: string;
  connections: number;
  duration: number;
  requests: Array<{ method: string; path: string; headers: Record<string, string> }>;
}) => Promise<CannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Cannon;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let DURATION = 10;
let CONNECTIONS = 50;
const WARMUP = 2;

export interface Child { port: number; child: ChildProcess; stop: () => Promise<void> }

/** Runs a small inline server script that prints its port on the first line of stdout. */
export function startChild(label: string, args: string[], cwd = root): Promise<Child> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${label} did not start: ${err.slice(-500)}`)); }, 30_000);
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^PORT (\d+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ port: Number(m[1]), child, stop: () => stopChild(child) });
      }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${label} exited with ${code}: ${err.slice(-500)}`)); });
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => { clearTimeout(t); resolve(); });
    child.kill('SIGTERM');
  });
}

/** The bench origin: a 256-byte page, counting its connections (`/__connections`) to check upstream keep-alive. */
export const ORIGIN = `
const http = require('node:http');
let connections = 0;
const counted = new WeakSet();
const body = 'x'.repeat(256);
const s = http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
  if (req.url === '/__connections') { res.end(String(connections)); return; }
  if (!counted.has(req.socket)) { counted.add(req.socket); connections++; }
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
s.listen(0, '127.0.0.1', () => console.log('PORT ' + s.address().port));
`;

/**
 * The floor: the least a Node proxy can do per request (Node's http server in, undici out, no
 * classification, no logging). It shows what Node itself costs on the machine in hand, so the
 * gateway's own overhead can be read apart from the platform's.
 */
const BARE_FORWARDER = `
const http = require('node:http');
const { Agent } = require('undici');
const agent = new Agent({ connections: 512, keepAliveTimeout: 60000, headersTimeout: 0, bodyTimeout: 0 });
const s = http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
  const u = new URL(req.url);
  const headers = { ...req.headers };
  delete headers['proxy-connection'];
  delete headers.connection;
  agent.dispatch({ origin: u.origin, path: u.pathname + u.search, method: req.method, headers }, {
    onRequestStart() {},
    onResponseStart(c, status, h) { delete h.connection; delete h['keep-alive']; res.writeHead(status, h); },
    onResponseData(c, chunk) { res.write(chunk); },
    onResponseEnd() { res.end(); },
    onResponseError() { res.destroy(); },
  });
});
s.listen(0, '127.0.0.1', () => console.log('PORT ' + s.address().port));
`;

export const MITM_DEFAULTS = `
const { Proxy } = require('http-mitm-proxy');
console.debug = console.info = console.error = () => {};
const p = new Proxy();
p.onError(() => {});
p.listen({ port: 0, host: '127.0.0.1', sslCaDir: process.argv[1] }, () => console.log('PORT ' + p.httpPort));
`;

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * `schoolgate start` as a school runs it, on a fresh data folder (`dataName` under tmp). With
 * `caKeyType: 'rsa'` the folder first gets an RSA school CA, as installs made before EC CAs have.
 */
export async function startGatewayCli(tmp: string, opts: { dataName?: string; caKeyType?: 'ec' | 'rsa'; env?: Record<string, string> } = {}): Promise<Child> {
  const lists = makeLists({ gambling: { domains: ['casino.bench.test'], name: 'Gambling/Casino games' } }, path.join(tmp, 'lists'));
  const proxyPort = await freePort();
  const adminPort = await freePort();
  const dataDir = path.join(tmp, opts.dataName ?? 'data');
  if (opts.caKeyType) {
    const init = spawnSync(process.execPath, ['--import=tsx', 'bin/schoolgate.ts', 'ca', 'init', '--key-type', opts.caKeyType, '--data-dir', dataDir], { cwd: root, encoding: 'utf8' });
    if (init.status !== 0) throw new Error(`ca init --key-type ${opts.caKeyType}: ${init.stderr}`);
  }
  const child = spawn(
    process.execPath,
    [...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []), '--import=tsx', 'bin/schoolgate.ts', 'start', '--lists', lists, '--categories', 'gambling', '--proxy-port', String(proxyPort), '--admin-port', String(adminPort), '--data-dir', dataDir, '--log-level', 'warn'],
    // The bench origins listen on loopback, on random ports: open those to the gateway, as a school
    // would open a service on the gateway's own machine (its own ports stay refused).
    { cwd: root, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DATABASE_URL: '', SCHOOLGATE_ALLOWED_DESTINATIONS: '127.0.0.1', SCHOOLGATE_CONNECT_PORTS: '1-65535', ...opts.env } },
  );
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const deadline = Date.now() + 90_000;
  while (!(await canConnect(proxyPort))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`schoolgate start did not listen on ${proxyPort}: ${err.slice(-1000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { port: proxyPort, child, stop: () => stopChild(child) };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** Two requests on one client connection: does the proxy keep the client connection open? */
function clientKeepAlive(proxyPort: number, url: string, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port: proxyPort, host: '127.0.0.1' });
    const req = `GET ${url} HTTP/1.1\r\nHost: ${host}\r\nConnection: keep-alive\r\nProxy-Connection: keep-alive\r\n\r\n`;
    let buf = '';
    let answered = 0;
    const timer = setTimeout(() => { s.destroy(); resolve(false); }, 5_000);
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      const n = buf.split(/HTTP\/1\.[01] 200 /).length - 1;
      if (n > answered) {
        answered = n;
        if (answered === 1) s.write(req);
        else { clearTimeout(timer); s.destroy(); resolve(true); }
      }
    });
    s.once('close', () => { clearTimeout(timer); resolve(answered >= 2); });
    s.once('error', () => {});
    s.write(req);
  });
}

async function originConnections(port: number): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${port}/__connections`);
  return Number(await r.text());
}

/**
 * CPU time a process (all its threads) has used, in µs, from Linux's schedstat; null elsewhere.
 * Requests per CPU-second is steadier than req/s on a shared machine: a neighbour's burst slows
 * every subject's clock but not the work each request costs.
 */
function cpuMicros(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    let ns = 0;
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try { ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]); } catch { /* the thread ended */ }
    }
    return ns / 1000;
  } catch {
    return null;
  }
}

/** Runs `load`, and says how many µs of CPU `pid` spent on each of its `count(result)` requests (null off Linux). */
export async function perRequestCpu<T>(pid: number | undefined, load: () => Promise<T>, count: (r: T) => number): Promise<{ result: T; cpuPerReq: number | null }> {
  const before = cpuMicros(pid);
  const result = await load();
  const after = cpuMicros(pid);
  const n = count(result);
  return { result, cpuPerReq: before !== null && after !== null && n > 0 ? (after - before) / n : null };
}

interface Row { label: string; rps: number; cpuPerReq: number | null; p50: number; p99: number; non2xx: number; errors: number; upstreamConns: number | null; clientKeepAlive: boolean | null; requests: number }

async function cannon(port: number, pathOrUrl: string, host: string, duration: number) {
  return autocannon({
    url: `http://127.0.0.1:${port}`,
    connections: CONNECTIONS,
    duration,
    requests: [{ method: 'GET', path: pathOrUrl, headers: { host, 'proxy-connection': 'keep-alive' } }],
  });
}

interface SubjectSpec { label: string; port: number; pid: number | undefined; proxied: boolean; rounds: number }

async function measureRound(sub: SubjectSpec, origin: number): Promise<Row> {
  const url = sub.proxied ? `http://127.0.0.1:${origin}/` : '/';
  const host = `127.0.0.1:${origin}`;
  const before = await originConnections(origin);
  const { result: r, cpuPerReq } = await perRequestCpu(sub.pid, () => cannon(sub.port, url, host, DURATION), (x) => x.requests.total);
  const after = await originConnections(origin);
  return {
    label: sub.label, rps: r.requests.average, cpuPerReq, p50: r.latency.p50, p99: r.latency.p99, non2xx: r.non2xx,
    errors: r.errors + r.timeouts, upstreamConns: after - before, clientKeepAlive: null, requests: r.requests.total,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

async function main() {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '3' },
      connections: { type: 'string', default: '50' },
      'no-peer': { type: 'boolean', default: false },
      'no-squid': { type: 'boolean', default: false },
    },
  });
  DURATION = Math.max(2, Math.min(60, Number(values.duration) || 5));
  CONNECTIONS = Math.max(1, Math.min(500, Number(values.connections) || 50));
  const ROUNDS = Math.max(1, Math.min(10, Number(values.rounds) || 3));
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sg-bench-proxy-'));
  const stops: Array<() => Promise<void>> = [];
  try {
    console.log(
      `bench/proxy: plain HTTP GET, ${CONNECTIONS} keep-alive connections, ${ROUNDS} rounds of ${DURATION} s per subject, interleaved, ` +
        `after ${WARMUP} s warm-up; node ${process.version}, ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(1)}`,
    );
    const origin = await startChild('origin', ['-e', ORIGIN]);
    stops.push(origin.stop);
    const subjects: SubjectSpec[] = [{ label: 'direct to origin', port: origin.port, pid: origin.child.pid, proxied: false, rounds: ROUNDS }];
    const gw = await startGatewayCli(tmp);
    stops.push(gw.stop);
    subjects.push({ label: 'schoolgate gateway', port: gw.port, pid: gw.child.pid, proxied: true, rounds: ROUNDS });
    const bare = await startChild('bare forwarder', ['-e', BARE_FORWARDER]);
    stops.push(bare.stop);
    subjects.push({ label: 'bare Node forwarder', port: bare.port, pid: bare.child.pid, proxied: true, rounds: ROUNDS });
    if (values['no-squid']) console.log('  squid: skipped (--no-squid)');
    else if (!squidBinary) console.log('  squid: not installed (apt-get install squid), skipped');
    else {
      const sq = await startSquid();
      stops.push(sq.stop);
      subjects.push({ label: 'squid (Debian, plain)', port: sq.port, pid: sq.pid, proxied: true, rounds: ROUNDS });
    }
    if (!values['no-peer']) {
      const peer = await startChild('http-mitm-proxy', ['-e', MITM_DEFAULTS, path.join(tmp, 'mitm-ca')]);
      stops.push(peer.stop);
      // It closes every connection: one round says all there is to say, and spares the machine.
      subjects.push({ label: 'http-mitm-proxy defaults', port: peer.port, pid: peer.child.pid, proxied: true, rounds: 1 });
    }

    const keepAlive = new Map<string, boolean | null>();
    for (const sub of subjects) {
      const url = sub.proxied ? `http://127.0.0.1:${origin.port}/` : '/';
      keepAlive.set(sub.label, sub.proxied ? await clientKeepAlive(sub.port, url, `127.0.0.1:${origin.port}`) : null);
      await cannon(sub.port, url, `127.0.0.1:${origin.port}`, WARMUP);
    }
    // Round by round, so a burst of load on this machine lands on every subject alike.
    const runs = new Map<string, Row[]>(subjects.map((x) => [x.label, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const sub of subjects) if (round < sub.rounds) runs.get(sub.label)!.push(await measureRound(sub, origin.port));
    }
    // Blocked requests cost more than passed ones (block page, signed reference, incident): schools
    // whose lists hold ad and tracker hosts see many. Rate and CPU per request, incidents included.
    const gwSub = subjects.find((x) => x.label.startsWith('schoolgate'))!;
    const { result: blocked, cpuPerReq: blockedCpu } = await perRequestCpu(gwSub.pid, () => cannon(gwSub.port, 'http://casino.bench.test/page', 'casino.bench.test', DURATION), (x) => x.requests.total);
    const rows: Row[] = subjects.map((sub) => {
      const rs = runs.get(sub.label)!;
      const mid = rs.find((r) => r.rps === median(rs.map((x) => x.rps)))!;
      return {
        ...mid,
        non2xx: rs.reduce((a, r) => a + r.non2xx, 0),
        errors: rs.reduce((a, r) => a + r.errors, 0),
        upstreamConns: rs.reduce((a, r) => a + (r.upstreamConns ?? 0), 0),
        requests: rs.reduce((a, r) => a + r.requests, 0),
        cpuPerReq: rs.every((r) => r.cpuPerReq !== null) ? median(rs.map((r) => r.cpuPerReq!)) : null,
        clientKeepAlive: keepAlive.get(sub.label) ?? null,
      };
    });

    console.log('');
    console.log('  subject                     req/s (median round; all rounds)      CPU µs/req  p50 ms  p99 ms  non-2xx  errors  new origin conns  client keep-alive');
    for (const r of rows) {
      const all = runs.get(r.label)!.map((x) => x.rps.toFixed(0)).join(' ');
      console.log(
        `  ${r.label.padEnd(26)} ${r.rps.toFixed(0).padStart(7)}  (${all})`.padEnd(68) +
          `${(r.cpuPerReq === null ? '-' : r.cpuPerReq.toFixed(1)).padStart(10)}  ` +
          `${String(r.p50).padStart(7)} ${String(r.p99).padStart(7)}  ${String(r.non2xx).padStart(7)} ${String(r.errors).padStart(7)}  ${(r.label.startsWith('direct') ? '-' : String(r.upstreamConns ?? '')).padStart(16)}  ${r.clientKeepAlive === null ? '-' : r.clientKeepAlive ? 'yes' : 'NO'}`,
      );
    }
    const by = (l: string) => rows.find((r) => r.label.startsWith(l));
    const g = by('schoolgate')!;
    const sq = by('squid');
    const d = by('direct')!;
    const m = by('http-mitm-proxy');
    const floor = by('bare Node');
    console.log(
      `  gateway, blocked URL: ${blocked.requests.average.toFixed(0)} req/s, ${blockedCpu === null ? '-' : blockedCpu.toFixed(1)} µs CPU a request (block page, signed reference, incident; all threads), ` +
        `${blocked.non2xx} answered 403, ${blocked.errors + blocked.timeouts} errors`,
    );
    console.log('ratios (req/s, median rounds):');
    console.log(`  gateway / direct            ${(g.rps / d.rps).toFixed(2)}x`);
    if (sq) console.log(`  gateway / squid             ${(g.rps / sq.rps).toFixed(2)}x  (target ≥ 1.0x)`);
    if (sq && g.cpuPerReq && sq.cpuPerReq) console.log(`  squid CPU / gateway CPU     ${(sq.cpuPerReq / g.cpuPerReq).toFixed(2)}x  (per request, the proxy process's own CPU time; above 1.0x the gateway does a request with less)`);
    if (floor) console.log(`  gateway / bare forwarder    ${(g.rps / floor.rps).toFixed(2)}x  (what classifying, identifying and logging cost over Node's own floor)`);
    if (floor && sq) console.log(`  bare forwarder / squid      ${(floor.rps / sq.rps).toFixed(2)}x  (Node's floor on this machine)`);
    if (m) console.log(`  gateway / http-mitm-proxy   ${(g.rps / m.rps).toFixed(2)}x`);
    if (g.non2xx || g.errors) console.log(`  WARNING: the gateway answered ${g.non2xx} non-2xx and ${g.errors} errors/timeouts`);
    if (sq) console.log(`target ${g.rps >= sq.rps ? 'MET' : 'MISSED'}: plain HTTP through the gateway at least squid's req/s`);
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    rmSync(tmp, { recursive: true, force: true });
  }
}

// bench/tls.ts borrows the process helpers above; only a direct run measures.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
