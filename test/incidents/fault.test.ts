import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import type { Worker } from 'node:worker_threads';
import { isSchoolgateError } from '../../core/errors';
import { createLogger } from '../../core/log';
import { openDb, pgliteWorker } from '../../db/db';
import { migrate } from '../../db/migrate';
import { IncidentWriter } from '../../incidents/writer';
import type { Db } from '../../db/types';
import type { IncidentRow } from '../../incidents/types';
import { createTestDatabase } from '../../harness/pg';
import { projectRoot } from '../helpers/parts';
import { expectStoredOnce, ledger, openFresh, pgSkip, Relay, tmpDir } from './helpers';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function waitUntil(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(50);
  }
}
const segments = (dataDir: string) =>
  existsSync(path.join(dataDir, 'spool')) ? readdirSync(path.join(dataDir, 'spool')).filter((f) => f.endsWith('.ndjson') && f !== 'rejected.ndjson') : [];

const runChild = (args: string[]) => {
  const child = spawn(process.execPath, ['--import=tsx', 'test/incidents/fixtures/writer-child.ts', ...args], {
    cwd: projectRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // 'close' comes after the pipes are drained: every line printed before a SIGKILL is in `lines`.
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return { child, lines, exited, closed, stderr: () => stderr };
};
const until = async (c: { lines: string[]; stderr: () => string; exited: Promise<unknown> }, pred: (l: string) => boolean, ms = 60_000) => {
  const end = Date.now() + ms;
  let done = false;
  void c.exited.then(() => (done = true));
  for (;;) {
    const hit = c.lines.find(pred);
    if (hit) return hit;
    if (done || Date.now() > end) throw new Error(`child never printed the line; stdout=${c.lines.join('|')} stderr=${c.stderr()}`);
    await sleep(5);
  }
};
const kill = async (c: { child: ChildProcess; exited: Promise<unknown>; closed: Promise<void> }) => {
  c.child.kill('SIGKILL');
  await c.exited;
  await c.closed;
};


describe.skipIf(pgSkip !== null)('writer faults on PostgreSQL', () => {
  let tdb: Awaited<ReturnType<typeof createTestDatabase>>;
  let direct: Db;
  beforeAll(async () => {
    tdb = await createTestDatabase('sg_fault');
    direct = await openDb({ databaseUrl: tdb.url, dataDir: tmpDir() });
    await migrate(direct);
  });
  afterAll(async () => {
    await direct?.close();
    await tdb?.drop();
  });

  it('stores 10,000 incidents exactly once across a cut and restored connection', async () => {
    const relay = new Relay(Number(new URL(tdb.url).port || 5432));
    await relay.open();
    const dataDir = tmpDir();
    const db = await openDb({ databaseUrl: relay.urlFor(tdb.url), dataDir });
    const w = new IncidentWriter({ db, dataDir, retryMaxMs: 200, flushMs: 2 });
    const before = await ledger(direct);
    let spooledWhileDown = 0;
    const n = 10_000;
    for (let i = 0; i < n; i++) {
      // Repeats (same user and URL) make folding part of what must survive the cut.
      w.record({ idempotencyKey: `relay-${i}`, kind: 'blocked', user: `relay-u${i % 13}`, url: `http://relay.example/${i % 211}` });
      if (i % 250 === 249) await sleep(2);
      if (i === 3000) await relay.cut();
      if (i === 8000) {
        await w.flush();
        spooledWhileDown = w.stats().spooled;
        await relay.open();
      }
    }
    await w.flush();
    expect(await w.drained(60_000)).toBe(true);
    const after = await ledger(direct);
    expect(spooledWhileDown).toBeGreaterThan(4000);
    expect(w.stats()).toMatchObject({ queued: 0, spooled: 0, rejected: 0 });
    expect(w.stats().failures).toBeGreaterThan(0);
    expectStoredOnce(before, after, n);
    for (let i = 0; i < n; i++) if (!after.keys.has(`relay-${i}`)) throw new Error(`relay-${i} lost`);
    expect(segments(dataDir)).toEqual([]);
    await w.close();
    await db.close();
    await relay.cut();
  });

  it('empties the spool while traffic keeps coming (replay is never starved)', async () => {
    const relay = new Relay(Number(new URL(tdb.url).port || 5432));
    await relay.open();
    const dataDir = tmpDir();
    const db = await openDb({ databaseUrl: relay.urlFor(tdb.url), dataDir });
    const w = new IncidentWriter({ db, dataDir, retryMaxMs: 100, flushMs: 1 });
    const before = await ledger(direct);
    let n = 0;
    let flowing = true;
    // Steady traffic (about 3,000/s, well within what the database takes) arriving on every turn
    // of the event loop, so the queue is never empty when the writer looks: replay must still get its turn.
    const t0 = Date.now();
    const tick = () => {
      if (!flowing) return;
      if (n < (Date.now() - t0) * 3) {
        w.record({ idempotencyKey: `steady-${n}`, kind: 'blocked', user: `st${n % 11}`, url: `http://steady.example/${n % 53}` });
        n++;
      }
      setImmediate(tick);
    };
    tick();
    // And one more the moment each spool write finishes: on a slow disk that is what a busy
    // gateway does, and it leaves the writer a non-empty queue every single time it looks.
    const spool = (w as unknown as { spool: { append: (lines: string[]) => Promise<void> } }).spool;
    const append = spool.append.bind(spool);
    spool.append = async (lines) => {
      await append(lines);
      if (flowing) w.record({ idempotencyKey: `steady-${n++}`, kind: 'blocked', user: 'st-disk', url: 'http://steady.example/disk' });
    };
    try {
      await sleep(200);
      await relay.cut();
      await sleep(600);
      await w.flush();
      expect(w.stats().spooled).toBeGreaterThan(0);
      await relay.open();
      await waitUntil(() => w.stats().spooled === 0, 30_000); // with traffic still flowing
    } finally {
      flowing = false;
    }
    expect(await w.drained(30_000)).toBe(true);
    const after = await ledger(direct);
    expectStoredOnce(before, after, n);
    await w.close();
    await db.close();
    await relay.cut();
  });

  it('counts once when a write times out on a black-holed network and commits after all', async () => {
    const relay = new Relay(Number(new URL(tdb.url).port || 5432));
    await relay.open();
    const dataDir = tmpDir();
    const db = await openDb({ databaseUrl: relay.urlFor(tdb.url), dataDir });
    // A short write timeout: a frozen write is given up on (and spooled) while it is still in flight.
    // The relay holds it until thaw(), however long that is, so the timeout need not be tight:
    // 1 s leaves a loaded machine's ordinary writes well clear of it.
    const w = new IncidentWriter({ db, dataDir, retryMaxMs: 200, writeTimeoutMs: 1000 });
    const storedKeys = new Set<string>();
    let repeatedCount = 0;
    w.on('stored', (rows: IncidentRow[]) => rows.forEach((r) => storedKeys.add(r.idempotency_key)));
    w.on('repeated', (rows: IncidentRow[]) => (repeatedCount += rows.length));
    const before = await ledger(direct);
    const rec = (i: number) => w.record({ idempotencyKey: `frozen-${i}`, kind: 'blocked', user: `fz${i % 7}`, url: `http://frozen.example/${i % 31}` });
    for (let i = 0; i < 500; i++) rec(i);
    await w.flush();
    relay.freeze();
    for (let i = 500; i < 1500; i++) rec(i);
    await w.flush(); // given up on after 1 s, and spooled
    expect(w.stats().failures).toBeGreaterThan(0);
    relay.thaw(); // the held batch now reaches the server and may commit: replay must not count it again
    for (let i = 1500; i < 2000; i++) rec(i);
    await w.flush();
    expect(await w.drained(60_000)).toBe(true);
    // No transaction of this test's may still be open when the ledger is read: the thawed
    // original could otherwise commit after it. Waited for by asking the server, not by a sleep.
    await waitUntil(async () => {
      const r = await direct.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'",
      );
      return r.rows[0].n === 0;
    }, 30_000);
    const after = await ledger(direct);
    expectStoredOnce(before, after, 2000);
    // The timed-out batch committed late and the replay skipped it; it still counts (and alerts) once.
    expect(w.stats().stored).toBe(2000);
    const rows = await direct.query<{ k: string }>("SELECT idempotency_key AS k FROM incidents WHERE idempotency_key LIKE 'frozen-%'");
    expect(rows.rows.filter((r) => !storedKeys.has(r.k))).toEqual([]); // every new incident was announced
    expect(storedKeys.size).toBe(rows.rows.length);
    expect(repeatedCount).toBeGreaterThan(0);
    await w.close();
    await db.close();
    await relay.cut();
  });

  describe('a batch that commits just before the connection resets (COMMIT reply lost)', () => {
    const lostKeys = async (prefix: string) =>
      (await direct.query<{ k: string; count: number }>('SELECT idempotency_key AS k, count FROM incidents WHERE idempotency_key LIKE $1', [`${prefix}-%`])).rows;
    /** Records n incidents through a relay that passes the first COMMIT on, then loses its reply and resets. */
    const loseCommitReply = async (prefix: string, n: number) => {
      const relay = new Relay(Number(new URL(tdb.url).port || 5432));
      await relay.open();
      const dataDir = tmpDir();
      const db = await openDb({ databaseUrl: relay.urlFor(tdb.url), dataDir });
      const w = new IncidentWriter({ db, dataDir, retryMaxMs: 200 });
      const stored: string[] = [];
      w.on('stored', (rows: IncidentRow[]) => stored.push(...rows.map((r) => r.idempotency_key)));
      const committed = relay.holdRepliesAfterCommit();
      for (let i = 0; i < n; i++) w.record({ idempotencyKey: `${prefix}-${i}`, kind: 'blocked', user: `${prefix}-u${i % 9}`, url: `http://${prefix}.example/${i % 5}` });
      await committed;
      await waitUntil(async () => (await lostKeys(prefix)).length > 0); // the server did commit it
      await relay.cut();
      await w.flush(); // the writer saw a lost connection and spooled the batch
      expect(w.stats().failures).toBeGreaterThan(0);
      expect(w.stats().spooled).toBe(n);
      return { relay, dataDir, db, w, stored };
    };
    /** Every incident stored (as a row or a fold) and every row announced as new exactly once. */
    const announcedOnce = async (prefix: string, n: number, stored: string[]) => {
      const rows = await lostKeys(prefix);
      expect(rows.reduce((a, r) => a + r.count, 0)).toBe(n);
      expect([...stored].sort()).toEqual(rows.map((r) => r.k).sort());
    };

    it('announces each incident once when the retry finds it already stored', async () => {
      const n = 120; // one lane: the whole batch is the lost transaction
      const { relay, db, w, stored } = await loseCommitReply('lostreply', n);
      await relay.open();
      expect(await w.drained(30_000)).toBe(true);
      await announcedOnce('lostreply', n, stored);
      expect(w.stats()).toMatchObject({ stored: n, queued: 0, spooled: 0 });
      await w.close();
      await db.close();
      await relay.cut();
    });

    it('announces them once across lanes, where some lanes committed and others did not', async () => {
      const n = 1000; // four lanes in parallel: the first COMMIT is lost, the other lanes are cut mid-way
      const { relay, db, w, stored } = await loseCommitReply('lostlanes', n);
      await relay.open();
      expect(await w.drained(30_000)).toBe(true);
      await announcedOnce('lostlanes', n, stored);
      expect(w.stats().stored).toBe(n);
      await w.close();
      await db.close();
      await relay.cut();
    });

    it('announces them from the next writer when the spool outlives the process', async () => {
      const n = 120;
      const { relay, dataDir, db, w, stored } = await loseCommitReply('lostrestart', n);
      await w.close(); // database still down: the batch stays in the spool for the next start
      await db.close();
      await relay.cut();
      expect(stored.filter((k) => k.startsWith('lostrestart-'))).toEqual([]);
      const w2 = new IncidentWriter({ db: direct, dataDir });
      const stored2: string[] = [];
      w2.on('stored', (rows: IncidentRow[]) => stored2.push(...rows.map((r) => r.idempotency_key)));
      w2.start();
      expect(await w2.drained(30_000)).toBe(true);
      await announcedOnce('lostrestart', n, stored2);
      expect(w2.stats().stored).toBe(n);
      await w2.close();
    });
  });

  it('never throws at callers and shuts down in bounded time when neither the database nor the spool works', async () => {
    const relay = new Relay(Number(new URL(tdb.url).port || 5432));
    await relay.open();
    const dataDir = tmpDir();
    writeFileSync(path.join(dataDir, 'spool'), 'not a folder');
    const db = await openDb({ databaseUrl: relay.urlFor(tdb.url), dataDir });
    await relay.cut();
    const w = new IncidentWriter({ db, dataDir, retryMaxMs: 100 });
    for (let i = 0; i < 10; i++) expect(typeof w.record({ kind: 'blocked', user: 'stuck', url: `http://stuck.example/${i}` })).toBe('string');
    // Several failed rounds of database and spool, counted rather than timed.
    await waitUntil(() => w.stats().failures >= 3, 30_000);
    expect(w.stats().queued).toBe(10); // held in memory, not dropped
    const t0 = Date.now();
    await w.close(500);
    expect(Date.now() - t0).toBeLessThan(5000);
    await db.close();
  });

  it('keeps LISTEN subscriptions across a lost connection', async () => {
    const relay = new Relay(Number(new URL(tdb.url).port || 5432));
    await relay.open();
    const db = await openDb({ databaseUrl: relay.urlFor(tdb.url), dataDir: tmpDir() });
    try {
      const got: string[] = [];
      await db.listen('sg_fault_channel', (p) => got.push(p));
      await direct.notify('sg_fault_channel', 'before');
      await waitUntil(() => got.includes('before'));
      await relay.cut();
      await relay.open();
      // The listener reconnects on its own; keep notifying until it hears one.
      let n = 0;
      await waitUntil(async () => {
        await direct.notify('sg_fault_channel', `after-${n++}`);
        return got.some((g) => g.startsWith('after-'));
      }, 20_000);
      // Queries through the pool work again too.
      expect((await db.query<{ x: number }>('SELECT 1 AS x')).rows[0].x).toBe(1);
    } finally {
      await db.close();
      await relay.cut();
    }
  });

  it('sets aside an incident the database refuses and stores the rest of its batch', async () => {
    await direct.query("ALTER TABLE incidents ADD CONSTRAINT test_poison CHECK (url IS DISTINCT FROM 'http://poison.example/')");
    try {
      const dataDir = tmpDir();
      const w = new IncidentWriter({ db: direct, dataDir });
      const good = Array.from({ length: 10 }, (_, i) => w.record({ kind: 'blocked', user: `p${i}`, url: 'http://fine.example/' }));
      const bad = w.record({ kind: 'blocked', user: 'p-bad', url: 'http://poison.example/' });
      await w.flush();
      const r = await direct.query<{ k: string }>('SELECT idempotency_key AS k FROM incidents WHERE idempotency_key = ANY($1)', [[...good, bad]]);
      expect(r.rows.map((x) => x.k).sort()).toEqual([...good].sort());
      expect(w.stats()).toMatchObject({ rejected: 1, spooled: 0, queued: 0 });
      const rejected = readFileSync(path.join(dataDir, 'spool', 'rejected.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      expect(rejected).toHaveLength(1);
      expect(rejected[0].record.k).toBe(bad);
      expect(rejected[0].error).toContain('test_poison');
      await w.close();
    } finally {
      await direct.query('ALTER TABLE incidents DROP CONSTRAINT test_poison');
    }
  });

  describe('a writer process killed with SIGKILL', () => {
    it('mid-spool and again mid-replay loses and duplicates nothing it acknowledged', async () => {
      const dataDir = tmpDir();
      const n = 20_000;
      const before = await ledger(direct);

      const spooler = runChild(['spool', tdb.url, dataDir, 'crash', String(n)]);
      await until(spooler, (l) => l.startsWith('acked ') && Number(l.slice(6)) >= 3000);
      await kill(spooler);
      const acked = Math.max(...spooler.lines.filter((l) => l.startsWith('acked ')).map((l) => Number(l.slice(6))));
      expect(acked).toBeLessThan(n); // it really died mid-spool
      expect(segments(dataDir).length).toBeGreaterThan(0);

      // First restart: killed as soon as the first replayed batch is in the database.
      const replay1 = runChild(['replay', tdb.url, dataDir, '50']);
      await until(replay1, (l) => l.startsWith('stored ') || l.startsWith('repeated '));
      await kill(replay1);

      // Second restart: runs to the end.
      const replay2 = runChild(['replay', tdb.url, dataDir, '1000']);
      const last = await until(replay2, (l) => l.startsWith('drained') || l === 'not drained');
      expect(last).toMatch(/^drained /);
      expect(await replay2.exited).toBe(0);

      const after = await ledger(direct);
      const mine = [...after.keys].filter((k) => k.startsWith('crash-'));
      expect(after.dupKeys).toBe(0);
      expect(after.sumCount - before.sumCount).toBe(after.keys.size - before.keys.size);
      for (let i = 0; i < acked; i++) if (!after.keys.has(`crash-${i}`)) throw new Error(`acknowledged crash-${i} lost`);
      // Nothing invented: the stored keys are exactly the keys the child sent. It records in steps
      // of 100 and prints "acked K" after each step is durable, so when it died it had sent
      // crash-0 … crash-(m-1) for some m in [acked, acked + 100]; the spool writes in order, so
      // what survived is a gap-free prefix of that.
      const sent = mine.length;
      expect(sent).toBeGreaterThanOrEqual(acked);
      expect(sent).toBeLessThanOrEqual(acked + 100);
      expect(new Set(mine)).toEqual(new Set(Array.from({ length: sent }, (_, i) => `crash-${i}`)));
      // And each key landed on an incident with what was sent under it (folded repeats on theirs).
      const rows = await direct.query<{ k: string; url: string; user_name: string | null }>(
        `SELECT i.idempotency_key AS k, i.url, i.user_name FROM incidents i WHERE i.idempotency_key LIKE 'crash-%'
         UNION ALL
         SELECT f.idempotency_key, i.url, i.user_name FROM incident_folds f JOIN incidents i ON i.id = f.incident_id WHERE f.idempotency_key LIKE 'crash-%'`,
      );
      expect(rows.rows).toHaveLength(sent);
      for (const r of rows.rows) {
        const i = Number(r.k.slice(6));
        expect({ url: r.url, user: r.user_name }, r.k).toEqual({ url: `http://crash.example/${i % 97}`, user: `u${i % 5}` });
      }
      expect(segments(dataDir)).toEqual([]);
    });
  });
});

describe('writer faults on PGlite', () => {
  it('spools while the database is gone and a later writer on the same folder replays it once', async () => {
    const o = await openFresh('pglite');
    try {
      const before = await ledger(o.db);
      const w1 = new IncidentWriter({ db: o.db, dataDir: o.dataDir, retryMaxMs: 100 });
      for (let i = 0; i < 200; i++) w1.record({ idempotencyKey: `lite-${i}`, kind: 'blocked', user: `lu${i % 3}`, url: `http://lite.example/${i % 7}` });
      await w1.flush();
      await o.db.close(); // the database disappears under the writer
      for (let i = 200; i < 1200; i++) w1.record({ idempotencyKey: `lite-${i}`, kind: 'blocked', user: `lu${i % 3}`, url: `http://lite.example/${i % 7}` });
      await w1.flush();
      expect(w1.stats().spooled).toBe(1000);
      expect(w1.stats().failures).toBeGreaterThan(0);
      await w1.close();

      const db2 = await openDb({ databaseUrl: null, dataDir: o.dataDir });
      try {
        const w2 = new IncidentWriter({ db: db2, dataDir: o.dataDir });
        w2.start();
        expect(await w2.drained(30_000)).toBe(true);
        await w2.close();
        expectStoredOnce(before, await ledger(db2), 1200);
        expect(segments(o.dataDir)).toEqual([]);
      } finally {
        await db2.close();
      }
    } finally {
      await o.cleanup();
    }
  });
});

describe('the embedded database thread dies', () => {
  it('fails calls with SG_ERR_DB_UNAVAILABLE, restarts, listens again, and the writer stores everything once', async () => {
    const o = await openFresh('pglite');
    try {
      const before = await ledger(o.db);
      const heard: string[] = [];
      await o.db.listen('lists', (p) => heard.push(p));
      const w = new IncidentWriter({ db: o.db, dataDir: o.dataDir, retryMaxMs: 100 });
      w.start();
      for (let i = 0; i < 300; i++) w.record({ idempotencyKey: `crash-${i}`, kind: 'blocked', user: `cu${i % 3}`, url: `http://crash.example/${i % 7}` });
      await w.flush();
      const worker = (o.db as unknown as { [pgliteWorker]: () => Worker | null })[pgliteWorker]();
      expect(worker).not.toBeNull();
      const slow = o.db.query('SELECT count(*) FROM generate_series(1, 20000000)');
      await worker!.terminate(); // what a WebAssembly abort looks like from outside the thread
      expect(isSchoolgateError(await slow.catch((e) => e), 'SG_ERR_DB_UNAVAILABLE')).toBe(true);
      // The gateway keeps recording meanwhile: the writer spools, then replays once it is back.
      for (let i = 300; i < 600; i++) w.record({ idempotencyKey: `crash-${i}`, kind: 'blocked', user: `cu${i % 3}`, url: `http://crash.example/${i % 7}` });
      await expect.poll(async () => (await o.db.query<{ one: number }>('SELECT 1 AS one').catch(() => null))?.rows[0].one, { timeout: 30_000, interval: 200 }).toBe(1);
      expect(await w.drained(30_000)).toBe(true);
      await w.close();
      expectStoredOnce(before, await ledger(o.db), 600);
      await o.db.notify('lists', 'reload');
      await expect.poll(() => heard).toEqual(['reload']);
    } finally {
      await o.cleanup();
    }
  });
});

describe('writer with neither a database nor a spool', () => {
  it('holds at most maxQueued incidents in memory, and counts and logs the ones it drops', async () => {
    const o = await openFresh('pglite');
    try {
      writeFileSync(path.join(o.dataDir, 'spool'), 'not a folder');
      await o.db.close();
      const logs: Array<{ code?: string; msg: string; dropped?: number }> = [];
      const logger = createLogger({ level: 'warn', destination: new Writable({ write: (c, _e, cb) => (logs.push(JSON.parse(String(c))), cb()) }) });
      const cap = 1000;
      const w = new IncidentWriter({ db: o.db, dataDir: o.dataDir, retryMaxMs: 50, maxQueued: cap, logger });
      let recorded = 0;
      const burst = (n: number) => {
        for (let i = 0; i < n; i++, recorded++) expect(typeof w.record({ kind: 'blocked', user: `full${recorded % 7}`, url: `http://full.example/${recorded}` })).toBe('string');
      };
      burst(cap);
      expect(w.stats()).toMatchObject({ queued: cap, dropped: 0 });
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      burst(1500); // while the pump holds the first batch (database write failing): it counts against the cap
      const failed = w.stats().failures;
      await waitUntil(() => w.stats().failures >= failed + 3, 30_000); // several failed rounds of database and spool
      burst(500);
      const st = w.stats();
      expect(st.queued).toBe(cap); // the first ones recorded are the ones kept
      expect(st.dropped).toBe(recorded - cap);
      const dropLogs = logs.filter((l) => l.code === 'SG_ERR_INCIDENT_DROPPED');
      expect(dropLogs.length).toBeGreaterThanOrEqual(1);
      expect(dropLogs.length).toBeLessThan(5); // not a line per incident
      await w.close(300);
    } finally {
      await o.cleanup();
    }
  });
});

describe('embedded database killed mid-write', () => {
  it('keeps every acknowledged incident exactly once after SIGKILL and restart', async () => {
    const dataDir = tmpDir();
    const writer = runChild(['lite', '-', dataDir, 'litecrash', '50000']);
    await until(writer, (l) => l.startsWith('acked ') && Number(l.slice(6)) >= 1500, 120_000);
    await kill(writer);
    const acked = Math.max(...writer.lines.filter((l) => l.startsWith('acked ')).map((l) => Number(l.slice(6))));
    expect(acked).toBeLessThan(50_000);
    // The killed process's lock is stale: reopening recovers the database and takes the lock over.
    const db = await openDb({ databaseUrl: null, dataDir });
    try {
      expect((await migrate(db)).applied).toEqual([]);
      const w = new IncidentWriter({ db, dataDir });
      w.start();
      expect(await w.drained(30_000)).toBe(true);
      expect(w.stats().failures).toBe(0);
      await w.close();
      const l = await ledger(db);
      expect(l.dupKeys).toBe(0);
      expect(l.sumCount).toBe(l.keys.size);
      for (let i = 0; i < acked; i++) if (!l.keys.has(`litecrash-${i}`)) throw new Error(`acknowledged litecrash-${i} lost`);
    } finally {
      await db.close();
    }
  });
});

describe('embedded database lock', () => {
  it('refuses a second opener (another live process, or this one) and takes over a dead process\'s lock', async () => {
    const dataDir = tmpDir();
    const lock = path.join(dataDir, 'pglite.lock');
    mkdirSync(path.join(dataDir, 'pglite'), { recursive: true });
    const holder = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      writeFileSync(lock, `${holder.pid}\n`);
      const err = await openDb({ databaseUrl: null, dataDir }).catch((e) => e);
      expect(isSchoolgateError(err, 'SG_ERR_DB_UNAVAILABLE')).toBe(true);
      expect(err.message).toContain(`in use by process ${holder.pid}`);
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
    }
    // The holder is gone: its lock is stale and taken over.
    const db = await openDb({ databaseUrl: null, dataDir });
    try {
      expect(readFileSync(lock, 'utf8').trim()).toBe(String(process.pid));
      const again = await openDb({ databaseUrl: null, dataDir }).catch((e) => e);
      expect(isSchoolgateError(again, 'SG_ERR_DB_UNAVAILABLE')).toBe(true);
      expect((await db.query<{ x: number }>('SELECT 1 AS x')).rows[0].x).toBe(1);
    } finally {
      await db.close();
    }
    expect(existsSync(lock)).toBe(false);
  });
});
