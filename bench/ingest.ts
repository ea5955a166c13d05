/**
 * Incident ingest: incidents/s sustained into real PostgreSQL and into PGlite through
 * IncidentWriter, the cost of `record()` on the caller, and the spool while the database is down.
 * Peers measured in the same run on the same table: one autocommitted INSERT per incident (what a
 * plain logger does with a database), and the unsynced text log line squidGuard / e2guardian write
 * per block (fast, but neither queryable, durable nor idempotent).
 * Targets: ≥ 20,000/s into PostgreSQL, ≥ 2,000/s into PGlite, record() p99 < 50 µs, zero lost or duplicated.
 * Then the console's free-text search over what was ingested (trigram-indexed where pg_trgm is there).
 *
 *   node --import=tsx bench/ingest.ts [--pg 200000] [--pglite 30000] [--seconds 20]
 *
 * Bounded: every phase stops at its count or at --seconds, whichever comes first.
 */
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openDb } from '../db/db';
import { migrate } from '../db/migrate';
import { listIncidents, searchIndexed } from '../repos/incidents';
import { IncidentWriter } from '../incidents/writer';
import type { Db } from '../db/types';
import type { IncidentInput } from '../incidents/types';
import { createTestDatabase, postgresMissing } from '../harness/pg';
import { Relay } from '../harness/relay';

const { values } = parseArgs({
  options: {
    pg: { type: 'string', default: '200000' },
    pglite: { type: 'string', default: '30000' },
    seconds: { type: 'string', default: '20' },
  },
});
const N_PG = Math.max(1000, Number(values.pg) || 200_000);
const N_LITE = Math.max(1000, Number(values.pglite) || 30_000);
const PHASE_MS = Math.max(2, Math.min(120, Number(values.seconds) || 20)) * 1000;

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'sg-bench-ingest-'));
const fmt = (n: number) => Math.round(n).toLocaleString('en-GB');
const results: Array<[string, string]> = [];
const report = (label: string, value: string) => {
  results.push([label, value]);
  console.log(`${label.padEnd(58)} ${value}`);
};

/** A school-day mix: most blocks are new, about one in five is a repeat of a recent one. */
function incident(i: number, run: string): IncidentInput {
  const repeat = i % 5 === 4;
  const n = repeat ? i - 3 : i;
  // No idempotency key: like the gateway, let the writer make one; `gateway` tags the run.
  return {
    gateway: run,
    kind: i % 50 === 0 ? 'flagged_search' : 'blocked',
    user: `pupil${n % 1500}@school.example`,
    clientIp: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
    device: `dev-${n % 900}`,
    url: `https://site${n % 20_000}.example/path/${n}`,
    host: `site${n % 20_000}.example`,
    category: ['adult', 'gambling', 'games', 'social_networks', 'drogue'][n % 5],
    policyGroup: n % 3 ? 'pupils' : 'staff',
    searchTerms: i % 50 === 0 ? 'how to bypass filter' : null,
  };
}

/** Speed depends on the machine; losing or doubling an incident never does, so that fails the run. */
let lost = false;
const target = (met: boolean, what: string) => `[target ${what}: ${met ? 'met' : 'NOT met'}]`;
function exact(r: { sum: number; rows: number; folds: number; recorded: number }): string {
  const ok = r.sum === r.recorded && r.rows + r.folds === r.recorded;
  if (!ok) lost = true;
  return ok ? 'yes' : 'NO';
}

async function yieldNow() {
  await new Promise<void>((r) => setImmediate(r));
}

/**
 * Offers incidents as fast as the caller can while the writer drains them; measures the rate at
 * which they become durable in the database, and the time each record() call takes.
 */
async function sustained(db: Db, n: number, label: string) {
  const dataDir = tmp();
  const w = new IncidentWriter({ db, dataDir }); // defaults, as the gateway runs it
  const run = `${label}-${Date.now()}`;
  const lat: number[] = [];
  const start = performance.now();
  const deadline = start + PHASE_MS;
  let recorded = 0;
  while (recorded < n && performance.now() < deadline) {
    // Offer in slices, then let the event loop run the writer, as a busy gateway would.
    for (let j = 0; j < 2000 && recorded < n; j++, recorded++) {
      const input = incident(recorded, run);
      const t0 = process.hrtime.bigint();
      w.record(input);
      lat.push(Number(process.hrtime.bigint() - t0));
    }
    // Keep the backlog bounded so we measure what the database sustains, not queue growth.
    while (w.stats().queued > 20_000) await new Promise((r) => setTimeout(r, 1));
    await yieldNow();
  }
  await w.flush();
  const ms = performance.now() - start;
  const stats = w.stats();
  await w.close();
  rmSync(dataDir, { recursive: true, force: true });
  const check = await db.query<{ rows: number; sum: number; folds: number }>(
    `SELECT (SELECT count(*) FROM incidents WHERE gateway = $1) AS rows,
            (SELECT coalesce(sum(count), 0)::int FROM incidents WHERE gateway = $1) AS sum,
            (SELECT count(*) FROM incident_folds f JOIN incidents i ON i.id = f.incident_id WHERE i.gateway = $1) AS folds`,
    [run],
  );
  const c = check.rows[0];
  lat.sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] / 1000;
  return { recorded, ms, rate: (recorded / ms) * 1000, stats, ...c, p50: pct(50), p99: pct(99), p999: pct(99.9), max: lat[lat.length - 1] / 1000 };
}

/**
 * The console's first page for a term one incident has (three or more characters: the trigram
 * index can serve it) and for a two-character term none has (no trigram: always a scan).
 */
async function searchFigures(db: Db, label: string, recorded: number) {
  await db.query('ANALYZE incidents');
  let i = Math.floor(recorded / 2);
  if (i % 5 === 4) i--; // a repeat folds into an earlier row and has no URL of its own
  const median = async (q: string) => {
    const ms: number[] = [];
    let rows = 0;
    for (let k = 0; k < 5; k++) {
      const t = performance.now();
      rows = (await listIncidents(db, { q }, { limit: 50 })).rows.length;
      ms.push(performance.now() - t);
    }
    return { ms: ms.sort((a, b) => a - b)[2], rows };
  };
  const one = await median(`/path/${i}`);
  const short = await median('zq');
  const mode = (await searchIndexed(db)) ? 'trigram index' : 'no index: pg_trgm unavailable';
  report(`${label}: search, first page, term in 1 of ${fmt(recorded)}`, `${one.ms.toFixed(1)} ms  (${one.rows} row; ${mode})`);
  report(`${label}: search, 2-character term (never indexed)`, `${short.ms.toFixed(1)} ms  (${short.rows} rows)`);
}

async function naiveInserts(db: Db, limitMs: number, n: number) {
  const run = `naive-${Date.now()}`;
  const start = performance.now();
  let i = 0;
  for (; i < n && performance.now() - start < limitMs; i++) {
    const x = incident(i, run);
    await db.query(
      `INSERT INTO incidents (idempotency_key, occurred_at, last_seen, kind, user_name, client_ip, device, url, host, category, policy_group, search_terms)
       VALUES ($1, now(), now(), $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (idempotency_key) DO NOTHING`,
      [`${run}-${i}`, x.kind, x.user, x.clientIp, x.device, x.url, x.host, x.category, x.policyGroup, x.searchTerms],
    );
  }
  return (i / (performance.now() - start)) * 1000;
}

async function logLines(n: number) {
  const dir = tmp();
  const out = createWriteStream(path.join(dir, 'blocked.log'));
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const x = incident(i, 'log');
    // squidGuard's redirect log line: date, pid, "Request(...)" with src/dst/category
    if (!out.write(`${new Date().toISOString()} [${process.pid}] Request(${x.policyGroup}/${x.category}/-) ${x.url} ${x.clientIp}/- ${x.user} GET REDIRECT\n`)) {
      await new Promise<void>((r) => out.once('drain', () => r()));
    }
  }
  await new Promise<void>((r) => out.end(() => r()));
  const rate = (n / (performance.now() - start)) * 1000;
  rmSync(dir, { recursive: true, force: true });
  return rate;
}

async function spoolWhileDown(url: string, n: number) {
  const relay = new Relay(Number(new URL(url).port || 5432));
  await relay.open();
  const dataDir = tmp();
  const db = await openDb({ databaseUrl: relay.urlFor(url), dataDir });
  const w = new IncidentWriter({ db, dataDir, batchSize: 2000, retryMaxMs: 60_000 });
  await relay.cut();
  const run = `spool-${Date.now()}`;
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    w.record(incident(i, run));
    if (i % 2000 === 1999) await yieldNow();
  }
  await w.flush();
  const spoolMs = performance.now() - start;
  const spooled = w.stats().spooled;
  await relay.open();
  const t1 = performance.now();
  const drained = await w.drained(PHASE_MS * 3);
  const replayMs = performance.now() - t1;
  await w.close();
  await db.close();
  await relay.cut();
  rmSync(dataDir, { recursive: true, force: true });
  return { spoolRate: (n / spoolMs) * 1000, spooled, drained, replayRate: (n / replayMs) * 1000 };
}

async function main() {
  // Figures on a shared machine are only comparable within one run: say how busy it was.
  console.log(`# incident ingest (node ${process.version}, ${os.cpus().length} cpus, load average ${os.loadavg()[0].toFixed(1)})\n`);
  const logRate = await logLines(Math.min(N_PG, 200_000));
  let pgFigures: Awaited<ReturnType<typeof sustained>> | null = null;

  const missing = await postgresMissing();
  if (missing) {
    console.log(`PostgreSQL skipped: ${missing}`);
  } else {
    const tdb = await createTestDatabase('sg_bench');
    try {
      const db = await openDb({ databaseUrl: tdb.url, dataDir: tmp() });
      await migrate(db);
      const r = await sustained(db, N_PG, 'pg');
      pgFigures = r;
      report('PostgreSQL: incidents/s sustained via IncidentWriter', `${fmt(r.rate)}/s  (${fmt(r.recorded)} in ${(r.ms / 1000).toFixed(2)} s)  ${target(r.rate >= 20_000, '≥ 20,000/s')}`);
      report('PostgreSQL: stored exactly once (sum(count) = recorded)', `${exact(r)}  rows=${fmt(r.rows)} folded=${fmt(r.folds)} sum=${fmt(r.sum)}`);
      await searchFigures(db, 'PostgreSQL', r.recorded);
      const naive = await naiveInserts(db, Math.min(PHASE_MS, 5000), N_PG);
      report('peer: one autocommitted INSERT per incident', `${fmt(naive)}/s  (writer is ${(r.rate / naive).toFixed(1)}x)`);
      report('peer: squidGuard/e2guardian-style text log line (no fsync)', `${fmt(logRate)}/s  (writer is ${(r.rate / logRate).toFixed(2)}x)`);
      const s = await spoolWhileDown(tdb.url, Math.min(N_PG, 50_000));
      report('PostgreSQL down: incidents/s into the fsync\'d spool', `${fmt(s.spoolRate)}/s  (${fmt(s.spooled)} spooled)`);
      if (!s.drained) lost = true;
      report('PostgreSQL back: spool replay incidents/s', `${s.drained ? fmt(s.replayRate) + '/s' : 'DID NOT DRAIN'}`);
      await db.close();
    } finally {
      await tdb.drop();
    }
  }

  const liteDir = tmp();
  try {
    const lite = await openDb({ databaseUrl: null, dataDir: liteDir });
    await migrate(lite);
    const r = await sustained(lite, N_LITE, 'lite');
    report('PGlite: incidents/s sustained via IncidentWriter', `${fmt(r.rate)}/s  (${fmt(r.recorded)} in ${(r.ms / 1000).toFixed(2)} s)  ${target(r.rate >= 2_000, '≥ 2,000/s')}`);
    report('PGlite: stored exactly once (sum(count) = recorded)', `${exact(r)}  rows=${fmt(r.rows)} folded=${fmt(r.folds)}`);
    await searchFigures(lite, 'PGlite', r.recorded);
    const naive = await naiveInserts(lite, Math.min(PHASE_MS, 3000), N_LITE);
    report('PGlite peer: one INSERT per incident', `${fmt(naive)}/s  (writer is ${(r.rate / naive).toFixed(1)}x)`);
    await lite.close();
    const lat = pgFigures ?? r;
    report('record() on the caller: p50 / p99 / p99.9 / max', `${lat.p50.toFixed(2)} / ${lat.p99.toFixed(2)} / ${lat.p999.toFixed(2)} / ${lat.max.toFixed(0)} µs  ${target(lat.p99 < 50, 'p99 < 50 µs')}`);
  } finally {
    rmSync(liteDir, { recursive: true, force: true });
  }
}

const guard = setTimeout(() => {
  console.error('bench/ingest: overall time limit reached');
  process.exit(1);
}, PHASE_MS * 12 + 60_000);
guard.unref();

main().then(
  () => process.exit(lost ? 1 : 0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
