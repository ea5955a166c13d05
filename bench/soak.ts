/**
 * Soak: many keep-alive connections for a long while through the gateway on the embedded
 * database, one request in ten to a blocked URL, the rest to a local origin (issue #11 targets).
 * Prints requests, errors (target 0), the gateway's RSS after warm-up and at the end (target:
 * growth under 10%), and blocks answered against incidents stored (target: every one).
 *
 *   node --import=tsx bench/soak.ts [--connections 200] [--duration 60] [--quick]
 *
 * The gateway runs in its own process (`startSchoolgate`, as `schoolgate start` does), so the
 * load generator never shares its event loop or its heap with what it measures. Every upstream
 * name resolves to the local origin through `upstreamLookup`: traffic stays on loopback.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Writable } from 'node:stream';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BLOCKED_HOST = 'casino.soak.test';
const ORIGIN_HOST = 'www.school-intranet.soak.test';

interface CannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  errors: number;
  timeouts: number;
  statusCodeStats: Record<string, { count: number }>;
}
type Cannon = (opts: {
  url: string;
  connections: number;
  duration: number;
  requests: Array<{ method: string; path: string; headers: Record<string, string>; setupRequest?: (req: { path: string }) => { path: string } }>;
}) => Promise<CannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Cannon;

/** The gateway process: startSchoolgate on a fresh data folder, names resolved to the origin. */
async function serve(dataDir: string, listsDir: string): Promise<void> {
  const { loadConfig } = await import('../core/config');
  const { createLogger } = await import('../core/log');
  const { startSchoolgate } = await import('../server/start');
  // Every name the gateway looks up is the local origin (the port stays in the URL).
  const lookup = ((_host: string, options: { all?: boolean }, cb: (...args: unknown[]) => void) => {
    if (options?.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
    else cb(null, '127.0.0.1', 4);
  }) as net.LookupFunction;
  const config = loadConfig({ 'data-dir': dataDir, lists: [listsDir], categories: 'gambling', 'proxy-port': '0', 'admin-port': '0' }, { DATABASE_URL: '' });
  const logger = createLogger({ level: 'warn' });
  const h = await startSchoolgate(config, { logger, out: new Writable({ write: (_c, _e, cb) => cb() }), upstreamLookup: lookup, allowLoopbackDestinationsForTests: true });
  process.stdout.write(`PORT ${h.proxyPort}\n`);
  process.once('SIGTERM', () => {
    h.close().then(
      () => {
        process.stdout.write(`STATS ${JSON.stringify({ gateway: h.gateway.stats, incidents: h.incidents.stats() })}\n`);
        process.exit(0);
      },
      () => process.exit(1),
    );
  });
}

const ORIGIN = `
const http = require('node:http');
const body = 'x'.repeat(512);
const s = http.createServer({ keepAliveTimeout: 120000 }, (req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
s.listen(0, '127.0.0.1', () => console.log('PORT ' + s.address().port));
`;

function startChild(label: string, args: string[]): Promise<{ child: ChildProcess; port: number; lines: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let out = '';
    let err = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${label} did not start: ${err.slice(-800)}`)); }, 90_000);
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); if (err.length > 20_000) err = err.slice(-10_000); });
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      let i;
      while ((i = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, i);
        out = out.slice(i + 1);
        lines.push(line);
        const m = /^PORT (\d+)$/.exec(line);
        if (m) { clearTimeout(timer); resolve({ child, port: Number(m[1]), lines }); }
      }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${label} exited with ${code}: ${err.slice(-800)}`)); });
  });
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', () => { clearTimeout(t); resolve(); });
    child.kill('SIGTERM');
  });
}

/** Resident set size of a process in bytes (Linux), null elsewhere. */
function rss(pid: number | undefined): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

const mb = (n: number | null) => (n === null ? '-' : `${(n / 1048576).toFixed(1)} MB`);

/** Sanity check before the load: one allowed and one blocked request answer as they should. */
function probe(port: number, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({ host: '127.0.0.1', port, path: url, headers: { host: u.host }, agent: false }, (res) => { res.resume(); res.once('end', () => resolve(res.statusCode ?? 0)); });
    req.once('error', reject);
    req.end();
  });
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      connections: { type: 'string', default: '200' },
      duration: { type: 'string', default: '60' },
      quick: { type: 'boolean', default: false },
    },
  });
  const connections = Math.max(1, Math.min(2000, Number(values.connections) || 200));
  const duration = values.quick ? 10 : Math.max(5, Math.min(3600, Number(values.duration) || 60));
  const warmup = values.quick ? 2 : 5;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sg-bench-soak-'));
  const stops: Array<() => Promise<void>> = [];
  try {
    const { makeLists } = await import('../harness/lists');
    const lists = makeLists({ gambling: { domains: [BLOCKED_HOST], name: 'Gambling/Casino games' } }, path.join(tmp, 'lists'));
    const origin = await startChild('origin', ['-e', ORIGIN]);
    stops.push(() => stop(origin.child));
    const gw = await startChild('gateway', ['--import=tsx', fileURLToPath(import.meta.url), '--serve', path.join(tmp, 'data'), lists]);
    stops.push(() => stop(gw.child));
    const allowedUrl = `http://${ORIGIN_HOST}:${origin.port}/page`;
    const blockedUrl = `http://${BLOCKED_HOST}/game`;
    const [a, b] = [await probe(gw.port, allowedUrl), await probe(gw.port, blockedUrl)];
    if (a !== 200 || b !== 403) throw new Error(`probe: allowed URL answered ${a} (want 200), blocked URL ${b} (want 403)`);

    console.log(
      `bench/soak: ${connections} keep-alive connections × ${duration} s after ${warmup} s warm-up, one request in ten blocked; ` +
        `gateway on PGlite in its own process; node ${process.version}, ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(1)}`,
    );
    let blockSeq = 0;
    const requests = [
      ...Array.from({ length: 9 }, () => ({ method: 'GET', path: allowedUrl, headers: { host: `${ORIGIN_HOST}:${origin.port}`, 'proxy-connection': 'keep-alive' } })),
      // Each blocked URL differs, so every block is a row of its own rather than a repeat folded
      // into one: the writer's batches, not only its counter, are what is checked.
      { method: 'GET', path: blockedUrl, headers: { host: BLOCKED_HOST, 'proxy-connection': 'keep-alive' }, setupRequest: (req: { path: string }) => ({ ...req, path: `${blockedUrl}?n=${++blockSeq}` }) },
    ];
    const load = (secs: number) => autocannon({ url: `http://127.0.0.1:${gw.port}`, connections, duration: secs, requests });
    const warm = await load(warmup);
    const rssStart = rss(gw.child.pid);
    const samples: number[] = [];
    const sampler = setInterval(() => { const r = rss(gw.child.pid); if (r !== null) samples.push(r); }, 5_000);
    const r = await load(duration);
    clearInterval(sampler);
    const rssEnd = rss(gw.child.pid);

    // Every block answered (warm-up included) must be in the database once the gateway has stopped.
    const answered = (x: CannonResult) => x.statusCodeStats['403']?.count ?? 0;
    // The client's count misses responses in flight when a run's clock ran out (at most one per
    // connection per run); the gateway's own counter has them all.
    const blocksSeen = answered(warm) + answered(r) + 1; // + the probe
    const codes = (x: CannonResult) => Object.entries(x.statusCodeStats).map(([c, s]) => `${c}: ${s.count}`).join(', ');
    const unexpected = Object.entries(r.statusCodeStats).filter(([c]) => c !== '200' && c !== '403').reduce((n, [, s]) => n + s.count, 0);
    const statsLine = new Promise<string | null>((resolve) => {
      gw.child.once('exit', () => resolve(gw.lines.find((l) => l.startsWith('STATS ')) ?? null));
    });
    await stop(gw.child);
    const stats = await statsLine;
    const gatewayBlocked: number | null = stats ? JSON.parse(stats.slice(6)).gateway.blocked : null;
    const { openDb } = await import('../db/db');
    const { silentLogger } = await import('../core/log');
    const db = await openDb({ databaseUrl: null, dataDir: path.join(tmp, 'data'), logger: silentLogger });
    const stored = (await db.query<{ rows: number; total: number }>("SELECT count(*)::int AS rows, coalesce(sum(count), 0)::int AS total FROM incidents WHERE kind = 'blocked'")).rows[0];
    await db.close();

    const growth = rssStart && rssEnd ? (rssEnd / rssStart - 1) * 100 : null;
    const errors = r.errors + r.timeouts + unexpected;
    console.log(`  requests:          ${r.requests.total} (${r.requests.average.toFixed(0)} req/s; p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms); status codes ${codes(r)}`);
    console.log(`  errors:            ${errors} (socket errors ${r.errors}, timeouts ${r.timeouts}, unexpected statuses ${unexpected})   target 0`);
    console.log(`  gateway RSS:       ${mb(rssStart)} after warm-up, ${mb(rssEnd)} at the end, peak ${mb(samples.length ? Math.max(...samples) : null)}; growth ${growth === null ? '-' : `${growth.toFixed(1)}%`}   target < 10%`);
    console.log(`  blocks answered:   ${gatewayBlocked ?? '-'} by the gateway's count; ${blocksSeen} block pages received by the client (warm-up and probe included)`);
    console.log(`  incidents stored:  ${stored.total} blocks in ${stored.rows} rows (repeats folded into counts)   target ${gatewayBlocked ?? '-'}, and at least ${blocksSeen}`);
    if (stats) console.log(`  gateway counters:  ${stats.slice(6)}`);
    const ok = errors === 0 && growth !== null && growth < 10 && gatewayBlocked !== null && stored.total === gatewayBlocked && stored.total >= blocksSeen;
    console.log(`targets ${ok ? 'MET' : 'MISSED'}: 0 errors, RSS growth under 10%, every block answered stored`);
    return ok ? 0 : 1;
  } finally {
    for (const s of stops.reverse()) await s().catch(() => {});
    rmSync(tmp, { recursive: true, force: true });
  }
}

const argv = process.argv.slice(2);
if (argv[0] === '--serve') await serve(argv[1], argv[2]);
else if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exit(await main());
