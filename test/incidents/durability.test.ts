import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { loadConfig } from '../../core/config';
import { startSchoolgate, type SchoolgateHandle } from '../../server/start';
import { tempDir, waitFor } from '../e2e/fixtures';
import { makeLists } from '../../harness/lists';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/log';
import { openDb } from '../../db/db';
import { migrate } from '../../db/migrate';
import type { Db } from '../../db/types';
import { IncidentWriter, type Rec } from '../../incidents/writer';
import { createTestDatabase } from '../../harness/pg';
import { expectStoredOnce, ledger, openFresh, pgSkip, Relay, tmpDir } from './helpers';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The pid of a process that has exited: files named for it belong to a writer that is gone. */
function deadPid(): number {
  const r = spawnSync('true');
  return r.pid!;
}

function captureLogs(level = 'info') {
  const logs: Array<{ code?: string; msg: string; level: number }> = [];
  const logger = createLogger({ level, destination: new Writable({ write: (c, _e, cb) => (logs.push(JSON.parse(String(c))), cb()) }) });
  return { logs, logger };
}

const rec = (k: string, i: number): Rec => ({
  k, t: Date.now() - 1000 + i, kind: 'blocked', user: `torn-u${i}`, device: null, ip: '127.0.0.1', gw: 'test', url: `http://torn.example/${i}`,
  host: 'torn.example', cat: 'gambling', group: null, search: null, note: null, rel: null,
});

describe.skipIf(pgSkip !== null)('a database outage while the spool cannot be written (#11 point 10)', () => {
  let tdb: Awaited<ReturnType<typeof createTestDatabase>>;
  let direct: Db;
  beforeAll(async () => {
    tdb = await createTestDatabase('sg_dur');
    direct = await openDb({ databaseUrl: tdb.url, dataDir: tmpDir() });
    await migrate(direct);
  });
  afterAll(async () => {
    await direct?.close();
    await tdb?.drop();
  });

  it('stores everything held in memory once the database is back, and logs the spool failure once, not on every retry', async () => {
    const relay = new Relay(Number(new URL(tdb.url).port || 5432));
    await relay.open();
    const dataDir = tmpDir();
    writeFileSync(path.join(dataDir, 'spool'), 'not a folder'); // the spool cannot be written (as on a full or read-only disk)
    const db = await openDb({ databaseUrl: relay.urlFor(tdb.url), dataDir });
    const { logs, logger } = captureLogs();
    const w = new IncidentWriter({ db, dataDir, retryMaxMs: 200, logger });
    try {
      await relay.cut();
      const keys: string[] = [];
      for (let i = 0; i < 50; i++) keys.push(w.record({ kind: 'blocked', user: `stuck${i}`, url: `http://stuck.example/${i}` }));
      await sleep(1500); // many rounds of failing database and spool
      expect(w.stats()).toMatchObject({ queued: 50, dropped: 0 });
      const spoolErrors = logs.filter((l) => l.code === 'SG_ERR_SPOOL').length;
      expect(spoolErrors).toBeGreaterThanOrEqual(1);
      expect(spoolErrors).toBeLessThanOrEqual(2);
      expect(logs.filter((l) => l.code === 'SG_ERR_DB_UNAVAILABLE').length).toBeLessThanOrEqual(2);

      await relay.open(); // the database is back; the spool still is not
      expect(await w.drained(20_000)).toBe(true);
      const r = await direct.query<{ k: string }>('SELECT idempotency_key AS k FROM incidents WHERE idempotency_key = ANY($1)', [keys]);
      expect(r.rows.map((x) => x.k).sort()).toEqual([...keys].sort());
      expect(w.stats()).toMatchObject({ queued: 0, dropped: 0 });
    } finally {
      await w.close(2000);
      await db.close();
      await relay.cut();
    }
  });
});

describe.skipIf(pgSkip !== null)('the incident journal (#11 point 9)', () => {
  let tdb: Awaited<ReturnType<typeof createTestDatabase>>;
  let direct: Db;
  beforeAll(async () => {
    tdb = await createTestDatabase('sg_journal');
    direct = await openDb({ databaseUrl: tdb.url, dataDir: tmpDir() });
    await migrate(direct);
  });
  afterAll(async () => {
    await direct?.close();
    await tdb?.drop();
  });
  const journalFiles = (dataDir: string) => {
    try {
      return readdirSync(path.join(dataDir, 'journal'));
    } catch {
      return [];
    }
  };

  it('keeps what neither the database nor the spool took at shutdown, and the next writer stores it once', async () => {
    const relay = new Relay(Number(new URL(tdb.url).port || 5432));
    await relay.open();
    const dataDir = tmpDir();
    writeFileSync(path.join(dataDir, 'spool'), 'not a folder');
    const db = await openDb({ databaseUrl: relay.urlFor(tdb.url), dataDir });
    await relay.cut();
    const w1 = new IncidentWriter({ db, dataDir, retryMaxMs: 100 });
    const keys: string[] = [];
    for (let i = 0; i < 30; i++) keys.push(w1.record({ kind: 'blocked', user: `held${i}`, url: `http://held.example/${i}` }));
    await w1.close(500); // database down, spool not writable: before the journal these were lost here
    await db.close();
    expect(journalFiles(dataDir).length).toBe(1);

    unlinkSync(path.join(dataDir, 'spool')); // the disk is usable again, and so is the database
    const before = await ledger(direct);
    const w2 = new IncidentWriter({ db: direct, dataDir });
    w2.start();
    expect(await w2.drained(30_000)).toBe(true);
    await w2.close();
    const after = await ledger(direct);
    for (const k of keys) expect(after.keys.has(k)).toBe(true);
    expectStoredOnce(before, after, 30);
    expect(journalFiles(dataDir)).toEqual([]);
    await relay.cut();
  });

  it('after a reboot, replays segments whose pid now belongs to an unrelated process', async () => {
    const dataDir = tmpDir();
    const other = spawn('sleep', ['30'], { stdio: 'ignore' }); // the pid the stopped gateway had, reused after the reboot
    try {
      const before = new Date('2020-01-01T00:00:00Z'); // last written before this boot
      for (const [folder, key, inst] of [['journal', 'reboot-journal', '0abcdef0'], ['spool', 'reboot-spool', '0abcdef1']] as const) {
        mkdirSync(path.join(dataDir, folder), { recursive: true });
        const file = path.join(dataDir, folder, `${other.pid}-${inst}-000000001.ndjson`);
        writeFileSync(file, JSON.stringify(rec(key, 1)) + '\n');
        utimesSync(file, before, before);
      }
      const w = new IncidentWriter({ db: direct, dataDir });
      w.start();
      expect(await w.drained(30_000)).toBe(true);
      await w.close();
      const l = await ledger(direct);
      expect(l.keys.has('reboot-journal')).toBe(true);
      expect(l.keys.has('reboot-spool')).toBe(true);
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('drops what is stored: the journal does not grow while the database takes everything', async () => {
    const dataDir = tmpDir();
    const w = new IncidentWriter({ db: direct, dataDir, batchSize: 500 });
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 5000; i++) w.record({ kind: 'blocked', user: `grow${i % 50}`, url: `http://grow.example/${round}/${i}`, note: 'x'.repeat(200) });
      await w.flush();
    }
    // 20,000 records of ~500 bytes were journaled (~10 MB): committed segments are gone or emptied.
    const size = journalFiles(dataDir).reduce((n, f) => n + statSync(path.join(dataDir, 'journal', f)).size, 0);
    expect(size).toBeLessThan(4 * 1024 * 1024);
    await w.close();
    expect(journalFiles(dataDir)).toEqual([]); // everything stored: nothing left to replay
  });
});

describe('a torn spool line (#11 point 10)', () => {
  it('costs no record: a whole record written after a fragment on the same line is replayed, the fragment reported', async () => {
    const o = await openFresh('pglite');
    try {
      const spoolDir = path.join(o.dataDir, 'spool');
      mkdirSync(spoolDir, { recursive: true });
      const a = JSON.stringify(rec('torn-a', 1));
      const b = JSON.stringify(rec('torn-b', 2));
      const c = JSON.stringify(rec('torn-c', 3));
      const d = JSON.stringify(rec('torn-d', 4));
      // What a disk that filled up mid-append leaves: part of a line, then the next append runs on
      // from it; and a crash mid-append leaves a last line with no newline.
      const text = `${a}\n${b.slice(0, 40)}${c}\n${d}\n${b.slice(0, 25)}`;
      writeFileSync(path.join(spoolDir, `${deadPid()}-0badc0de-000000001.ndjson`), text);
      const before = await ledger(o.db);
      const w = new IncidentWriter({ db: o.db, dataDir: o.dataDir });
      w.start();
      expect(await w.drained(30_000)).toBe(true);
      await w.close();
      const after = await ledger(o.db);
      for (const k of ['torn-a', 'torn-c', 'torn-d']) expect(after.keys.has(k)).toBe(true);
      expect(after.keys.size - before.keys.size).toBe(3);
      expect(w.stats().rejected).toBe(0);
      const rejected = readFileSync(path.join(spoolDir, 'rejected.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      expect(rejected.map((r) => r.record).sort()).toEqual([b.slice(0, 25), b.slice(0, 40)].sort());
      expect(rejected.every((r) => r.error === 'torn spool line')).toBe(true);
    } finally {
      await o.cleanup();
    }
  });
});

/** A plain-HTTP request through the gateway; resolves with the status and the block page's reference. */
function viaProxy(proxyPort: number, url: string): Promise<{ status: number; reference: string | null }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: proxyPort, path: url, headers: { host: u.host } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, reference: /<dt>Reference<\/dt><dd><code>([^<]+)<\/code>/.exec(body)?.[1] ?? null }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe.skipIf(pgSkip !== null)('schoolgate start while PostgreSQL is down (#11 point 11)', () => {
  it('starts, filters and keeps incidents; the console says the database is away; migrations and the incidents follow once it is back', async () => {
    const tdb = await createTestDatabase('sg_dur_start'); // fresh: not migrated yet
    const relay = new Relay(Number(new URL(tdb.url).port || 5432));
    await relay.open();
    await relay.cut(); // the server is down: connections to it are refused
    const tmp = tempDir('sg-dur-start-');
    const { logs, logger } = captureLogs('warn');
    let gw: SchoolgateHandle | null = null;
    const direct = await openDb({ databaseUrl: tdb.url, dataDir: tmpDir() });
    try {
      const lists = makeLists({ gambling: { name: 'Gambling', domains: ['outage-casino.example'] } }, path.join(tmp.dir, 'lists'));
      const config = loadConfig(
        { 'data-dir': path.join(tmp.dir, 'data'), lists: [lists], categories: 'gambling', 'proxy-port': '0', 'admin-port': '0', listen: '127.0.0.1' },
        { DATABASE_URL: relay.urlFor(tdb.url) },
        tmp.dir,
      );
      gw = await startSchoolgate(config, { logger, out: new PassThrough() });
      expect(gw.database.ready).toBe(false);
      expect(gw.accounts).toBeNull();
      expect(logs.some((l) => l.code === 'SG_ERR_DB_UNAVAILABLE')).toBe(true);

      // The web is filtered meanwhile, and the block is kept.
      const blocked = await viaProxy(gw.proxyPort, 'http://outage-casino.example/poker');
      expect(blocked.status).toBe(403);
      expect(blocked.reference).toBeTruthy();

      // The console says why nobody can sign in: a 503 with the database code, not a 500.
      const login = await gw.admin.inject({ method: 'POST', url: '/api/login', payload: { email: 'dsl@school.example', password: 'a long passphrase' } });
      expect(login.statusCode).toBe(503);
      expect(login.json().error.code).toBe('SG_ERR_DB_UNAVAILABLE');

      await relay.open(); // the database is back
      await waitFor(() => gw!.database.ready, 'migrations and list sync once the database is back', 60_000, 200);
      const migrated = await direct.query<{ n: number }>("SELECT count(*)::int AS n FROM information_schema.tables WHERE table_name = 'incidents'");
      expect(migrated.rows[0].n).toBe(1);
      await waitFor(async () => {
        const r = await direct.query('SELECT 1 FROM incidents WHERE idempotency_key = $1', [blocked.reference]);
        return r.rows.length === 1;
      }, 'the block recorded during the outage in the database', 60_000, 200);
      const again = await gw.admin.inject({ method: 'POST', url: '/api/login', payload: { email: 'dsl@school.example', password: 'a long passphrase' } });
      expect(again.statusCode).not.toBe(503); // now an ordinary wrong-password answer
    } finally {
      await gw?.close();
      await direct.close();
      await relay.cut();
      await tdb.drop();
      tmp.remove();
    }
  }, 180_000);
});

describe('the embedded database lock after a reboot', () => {
  it('takes over a lock written before this boot even when its pid now belongs to another process', async () => {
    const dataDir = tmpDir();
    mkdirSync(path.join(dataDir, 'pglite'), { recursive: true });
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      const lock = path.join(dataDir, 'pglite.lock');
      writeFileSync(lock, `${other.pid}\n`);
      const before = new Date('2020-01-01T00:00:00Z');
      utimesSync(lock, before, before);
      const db = await openDb({ databaseUrl: null, dataDir });
      try {
        expect(readFileSync(lock, 'utf8').trim()).toBe(String(process.pid));
      } finally {
        await db.close();
      }
    } finally {
      other.kill('SIGKILL');
    }
  }, 120_000);
});
