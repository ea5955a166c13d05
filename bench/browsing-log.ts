/**
 * What the browsing log (issue 13, point 3) costs: plain HTTP requests per second through two
 * gateways side by side, one with the log on and one with it off (SCHOOLGATE_BROWSING_LOG=0),
 * interleaved round by round so a neighbour's burst lands on both alike; and the bytes the log
 * stores per request. Target: req/s with the log within 10% of without.
 *
 *   node --import=tsx bench/browsing-log.ts [--rounds 4] [--duration 5] [--connections 50] [--flush-ms 5000]
 *
 * Each gateway is the real `schoolgate start` on its own fresh data folder (PGlite), passing every
 * request to a local origin on loopback. Bytes stored are read after the gateway has stopped (its
 * last flush included) with pg_total_relation_size (heap, indexes, TOAST) over the requests the
 * log counted; then, as the worst case, per row for rows of one request each (every request a
 * different person or host in its minute).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { silentLogger } from '../core/log';
import { openDb } from '../db/db';
import { browsingLogSize, upsertBrowsingRows, type BrowsingRowInput } from '../repos/browsing';
// The origin is bench/proxy.ts's 256-byte page: the request's fixed costs, not its bytes, are what is measured.
import { ORIGIN, perRequestCpu, startChild, startGatewayCli, type Child } from './proxy';

interface CannonResult { requests: { average: number; total: number }; non2xx: number; errors: number; timeouts: number }
type Cannon = (opts: { url: string; connections: number; duration: number; requests: Array<{ method: string; path: string; headers: Record<string, string> }> }) => Promise<CannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Cannon;

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '4' }, duration: { type: 'string', default: '5' }, connections: { type: 'string', default: '50' }, 'flush-ms': { type: 'string', default: '5000' },
  },
});
const rounds = Math.max(1, Number(values.rounds) || 4);
const duration = Math.max(2, Number(values.duration) || 5);
const connections = Math.max(1, Number(values.connections) || 50);
const flushMs = Math.max(100, Number(values['flush-ms']) || 5000);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

const load = (gw: Child, originPort: number, seconds: number) =>
  autocannon({
    url: `http://127.0.0.1:${gw.port}`,
    connections,
    duration: seconds,
    requests: [{ method: 'GET', path: `http://127.0.0.1:${originPort}/`, headers: { host: `127.0.0.1:${originPort}`, 'proxy-connection': 'keep-alive' } }],
  });

const tmp = mkdtempSync(path.join(os.tmpdir(), 'sg-bench-browsing-'));
const stops: Array<() => Promise<void>> = [];
console.log(
  `bench/browsing-log: plain HTTP GET to a local origin, ${connections} keep-alive connections, ${rounds} rounds of ${duration} s, interleaved; flush every ${flushMs} ms; ` +
    `node ${process.version}, ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(1)}`,
);
try {
  const origin = await startChild('origin', ['-e', ORIGIN]);
  stops.push(origin.stop);
  const subjects = [
    { label: 'log on ', gw: await startGatewayCli(tmp, { dataName: 'on', env: { SCHOOLGATE_BROWSING_LOG: '1', SCHOOLGATE_BROWSING_LOG_FLUSH_MS: String(flushMs) } }) },
    { label: 'log off', gw: await startGatewayCli(tmp, { dataName: 'off', env: { SCHOOLGATE_BROWSING_LOG: '0' } }) },
  ];
  for (const s of subjects) stops.push(s.gw.stop);
  for (const s of subjects) await load(s.gw, origin.port, 2); // warm-up
  const rps: number[][] = subjects.map(() => []);
  const cpu: number[][] = subjects.map(() => []);
  let loggedRequests = 0;
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first, so neither always runs while the other's flush or GC settles.
    for (const i of r % 2 === 0 ? [0, 1] : [1, 0]) {
      const { result, cpuPerReq } = await perRequestCpu(subjects[i].gw.child.pid, () => load(subjects[i].gw, origin.port, duration), (x) => x.requests.total);
      if (result.errors || result.timeouts || result.non2xx) console.log(`  WARNING ${subjects[i].label}: ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts`);
      rps[i].push(result.requests.average);
      if (cpuPerReq !== null) cpu[i].push(cpuPerReq);
      console.log(`  round ${r + 1} ${subjects[i].label}: ${result.requests.average.toFixed(0)} req/s, ${cpuPerReq?.toFixed(1) ?? '-'} µs CPU a request (all threads)`);
    }
  }
  const [on, off] = [median(rps[0]), median(rps[1])];
  const [cOn, cOff] = [median(cpu[0]), median(cpu[1])];
  console.log(`\n  log on : median ${on.toFixed(0)} req/s (${rps[0].map((x) => x.toFixed(0)).join(' ')}), ${cOn?.toFixed(1) ?? '-'} µs CPU a request`);
  console.log(`  log off: median ${off.toFixed(0)} req/s (${rps[1].map((x) => x.toFixed(0)).join(' ')}), ${cOff?.toFixed(1) ?? '-'} µs CPU a request`);
  console.log(`  on / off: ${(on / off).toFixed(3)}x req/s, ${cOn && cOff ? (cOn / cOff).toFixed(3) : '-'}x CPU a request`);
  console.log(`target ${on >= 0.9 * off ? 'MET' : 'MISSED'}: plain HTTP req/s with the browsing log within 10% of without`);

  // Stopped (SIGTERM flushes what is left), then its embedded database opened here.
  await subjects[0].gw.stop();
  const db = await openDb({ databaseUrl: null, dataDir: path.join(tmp, 'on'), logger: silentLogger });
  try {
    const size = await browsingLogSize(db);
    loggedRequests = size.requests;
    console.log(`\n  stored: ${size.rows} rows for ${size.requests} requests, ${size.bytes} bytes on disk (table, indexes, TOAST)`);
    console.log(`  bytes per logged request, this load (one client, one host: one row a minute): ${(size.bytes / Math.max(1, size.requests)).toFixed(3)}`);
    // The worst case: a row per request (every request a different person or host in its minute).
    const n = 20_000;
    const minute = new Date(Math.floor(Date.now() / 60_000) * 60_000);
    const rows: BrowsingRowInput[] = Array.from({ length: n }, (_, i) => ({
      minute, person: `pupil${i % 600}@school.example`, device: `lab-pc-${i % 600}`, host: `cdn${Math.floor(i / 600)}.some-school-site.example.co.uk`, verdict: 'allowed',
      clientIp: `10.20.${Math.floor((i % 600) / 250)}.${(i % 600) % 250}`, category: null, requests: 1, bytes: 18_000, searchTerms: i % 50 === 0 ? ['photosynthesis diagram'] : null,
    }));
    for (let i = 0; i < n; i += 2000) await upsertBrowsingRows(db, rows.slice(i, i + 2000));
    await db.query('VACUUM ANALYZE browsing_log');
    const after = await browsingLogSize(db);
    console.log(`  bytes per row, ${n} rows of one request each (worst case): ${((after.bytes - size.bytes) / n).toFixed(1)}`);
  } finally {
    await db.close();
  }
  if (!loggedRequests) console.log('  WARNING: the log counted no requests');
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => {});
  rmSync(tmp, { recursive: true, force: true });
}
