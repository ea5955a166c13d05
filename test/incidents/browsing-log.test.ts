/**
 * The browsing log (issue 13, point 3): every request through the real gateway, allowed and
 * blocked, becomes rows per person × host × minute with counts, bytes, verdict, category and
 * search terms; written in batches off the request path; kept in memory (bounded) while the
 * database is away; deleted by retention.
 */
import http from 'node:http';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrowsingLog } from '../../incidents/browsing-log';
import { createMetrics } from '../../admin-api/metrics';
import type { ListStoreLike } from '../../admin-api/deps';
import { runRetention } from '../../incidents/retention';
import { upsertBrowsingRows } from '../../repos/browsing';
import type { Db, Queryable } from '../../db/types';
import { createTestDatabase } from '../../harness/pg';
import { startOrigin, startTestGateway, tmpDir as proxyTmp, type Origin } from '../proxy/helpers';
import { backends, openFresh, pgSkip, Relay, type Opened } from './helpers';
import type { SchoolgateHandle } from '../../server/start';

interface LogRow { minute: Date; person: string; device: string; host: string; verdict: string; category: string | null; requests: number; bytes: number; search_terms: string[] | null }

const rowsOf = async (db: Queryable) =>
  (await db.query<LogRow>('SELECT minute, person, device, host, verdict, category, requests::int AS requests, bytes::int AS bytes, search_terms FROM browsing_log ORDER BY person, host, verdict, minute')).rows;

/** Sums a person's rows for one host and verdict across minutes (a test may straddle a minute). */
function total(rows: LogRow[], person: string, host: string, verdict: string) {
  const mine = rows.filter((r) => r.person === person && r.host === host && r.verdict === verdict);
  return {
    rows: mine.length,
    requests: mine.reduce((n, r) => n + Number(r.requests), 0),
    bytes: mine.reduce((n, r) => n + Number(r.bytes), 0),
    categories: [...new Set(mine.map((r) => r.category))],
    terms: [...new Set(mine.flatMap((r) => r.search_terms ?? []))],
  };
}

/** A GET through the proxy from a given loopback address, keep-alive on `agent`; resolves with the body's byte length. */
function get(proxyPort: number, url: string, from: string, agent?: http.Agent): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({ host: '127.0.0.1', port: proxyPort, path: url, localAddress: from, headers: { host: u.host }, agent: agent ?? false }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => (bytes += d.length));
      res.on('end', () => resolve({ status: res.statusCode!, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('browsing log through the real gateway (PGlite)', () => {
  let origin: Origin;
  let gw: SchoolgateHandle;
  const dirs: string[] = [];
  beforeAll(async () => {
    origin = await startOrigin();
    gw = await startTestGateway(origin, dirs);
  });
  afterAll(async () => {
    await gw?.close();
    await origin?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('turns allowed and blocked requests by two clients into rows with counts, bytes, verdict, category and search terms', async () => {
    const p = gw.proxyPort;
    const site = `http://site.test:${origin.httpPort}`;
    let aBytes = 0;
    for (let i = 0; i < 3; i++) {
      const r = await get(p, `${site}/page-${i}`, '127.0.0.1');
      expect(r.status).toBe(200);
      aBytes += r.bytes;
    }
    const search = await get(p, `http://www.google.com:${origin.httpPort}/search?q=volcano+homework`, '127.0.0.1');
    expect(search.status).toBe(200);
    expect((await get(p, 'http://blocked.test/anything', '127.0.0.1')).status).toBe(403);
    expect((await get(p, 'http://duckduckgo.com/?q=how+to+self+harm', '127.0.0.1')).status).toBe(403);
    let bBytes = 0;
    for (let i = 0; i < 2; i++) bBytes += (await get(p, `${site}/b-${i}`, '127.0.0.2')).bytes;
    expect((await get(p, 'http://blocked.test/again', '127.0.0.2')).status).toBe(403);

    await gw.browsingLog!.flush();
    const rows = await rowsOf(gw.db);
    expect(total(rows, '127.0.0.1', 'site.test', 'allowed')).toMatchObject({ requests: 3, bytes: aBytes, categories: [null] });
    expect(aBytes).toBeGreaterThan(0);
    expect(total(rows, '127.0.0.1', 'www.google.com', 'allowed')).toMatchObject({ requests: 1, bytes: search.bytes, terms: ['volcano homework'] });
    expect(total(rows, '127.0.0.1', 'blocked.test', 'blocked')).toMatchObject({ requests: 1, bytes: 0, categories: ['testblock'] });
    expect(total(rows, '127.0.0.1', 'duckduckgo.com', 'blocked')).toMatchObject({ requests: 1, categories: ['testblock'], terms: ['how to self harm'] });
    expect(total(rows, '127.0.0.2', 'site.test', 'allowed')).toMatchObject({ requests: 2, bytes: bBytes });
    expect(total(rows, '127.0.0.2', 'blocked.test', 'blocked')).toMatchObject({ requests: 1, categories: ['testblock'] });
    // Neither client's requests are counted under the other.
    expect(rows.filter((r) => r.person === '127.0.0.2').map((r) => r.host).sort()).toEqual(['blocked.test', 'site.test']);
    expect(gw.browsingLog!.stats()).toMatchObject({ pending: 0, droppedRequests: 0, failures: 0 });
  });

  it('aggregates many requests into one row a minute, written in one statement', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const n = 300;
    await Promise.all(Array.from({ length: n }, (_, i) => get(gw.proxyPort, `http://many.test:${origin.httpPort}/r${i}`, '127.0.0.3', agent)));
    agent.destroy();
    const storedBefore = gw.browsingLog!.stats().storedRows;
    await gw.browsingLog!.flush();
    const rows = (await rowsOf(gw.db)).filter((r) => r.person === '127.0.0.3');
    const t = total(rows, '127.0.0.3', 'many.test', 'allowed');
    expect(t.requests).toBe(n);
    // One row per minute: at most two if the burst straddled a minute boundary.
    expect(t.rows).toBeLessThanOrEqual(2);
    expect(gw.browsingLog!.stats().storedRows - storedBefore).toBeLessThanOrEqual(2);
  });
});

describe('the aggregator', () => {
  /** A database that answers (or fails) every query, counting them. */
  function fakeDb(fail: () => boolean) {
    const calls: Array<{ sql: string; params: unknown[] }> = [];
    const db = {
      kind: 'pg',
      async query(sql: string, params: unknown[] = []) {
        calls.push({ sql, params });
        if (fail()) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
        return { rows: [], rowCount: 0 };
      },
    } as unknown as Db;
    return { db, calls };
  }
  const who = (ip: string, user: string | null = null, device: string | null = null) => ({ clientIp: ip, user, device });

  it('writes 10,000 requests from 50 people to 20 hosts as one statement of one row each per person, host and verdict', async () => {
    const { db, calls } = fakeDb(() => false);
    let now = Date.parse('2027-03-01T10:00:05Z');
    const log = new BrowsingLog({ db, now: () => now });
    for (let i = 0; i < 10_000; i++) {
      const w = who(`10.0.0.${i % 50}`);
      if (i % 10 === 0) log.blocked(w, `h${i % 20}.example`, 'adult', null);
      else log.allowed(w, `h${i % 20}.example`, 100);
    }
    now += 1000;
    await log.flush();
    expect(calls).toHaveLength(1);
    const [minutes, people, , hosts, verdicts, , , requests, bytes] = calls[0].params as [string[], string[], string[], string[], string[], string[], string[], number[], number[]];
    expect(minutes.every((m) => m === '2027-03-01T10:00:00.000Z')).toBe(true);
    // i % 50 and i % 20 pair up 100 ways; i % 10 === 0 picks blocked for one in each pair's residues.
    expect(new Set(people.map((p, i) => `${p} ${hosts[i]} ${verdicts[i]}`)).size).toBe(people.length);
    expect(requests.reduce((a, b) => a + b, 0)).toBe(10_000);
    expect(bytes.reduce((a, b) => a + b, 0)).toBe(9_000 * 100);
    expect(log.stats()).toMatchObject({ pending: 0, storedRequests: 10_000, droppedRequests: 0 });
  });

  it('keeps one user case-insensitively as one person, and a new minute as a new row', async () => {
    const { db, calls } = fakeDb(() => false);
    let now = Date.parse('2027-03-01T10:00:59Z');
    const log = new BrowsingLog({ db, now: () => now });
    log.allowed(who('10.0.0.1', 'Pupil@School.example'), 'a.example', 1);
    log.allowed(who('10.0.0.1', 'pupil@school.example'), 'a.example', 2);
    now += 2000;
    log.allowed(who('10.0.0.1', 'pupil@school.example'), 'a.example', 4);
    log.search(who('10.0.0.1', 'pupil@school.example'), 'a.example', 'sel');
    log.search(who('10.0.0.1', 'pupil@school.example'), 'a.example', 'self help');
    await log.flush();
    const [minutes, people, , , , , , requests, bytes, terms] = calls[0].params as [string[], string[], string[], string[], string[], string[], string[], number[], number[], Array<string | null>];
    expect(people).toEqual(['pupil@school.example', 'pupil@school.example']);
    expect(minutes).toEqual(['2027-03-01T10:00:00.000Z', '2027-03-01T10:01:00.000Z']);
    expect(requests).toEqual([2, 1]);
    expect(bytes).toEqual([3, 4]);
    // Type-ahead's "sel" is replaced by the search it grew into.
    expect(terms).toEqual([null, 'self help']);
  });

  it('keeps what fits while the database is away, counts what it drops, and writes the rest once it is back', async () => {
    let down = true;
    const { db, calls } = fakeDb(() => down);
    const log = new BrowsingLog({ db, maxPending: 1000 });
    for (let i = 0; i < 800; i++) log.allowed(who(`10.1.0.${i % 200}`), `h${i}.example`, 10);
    await log.flush();
    expect(log.stats()).toMatchObject({ pending: 800, failures: 1, droppedRequests: 0 });
    // 800 kept, room for 200 more people × hosts: the rest of these are dropped and counted.
    for (let i = 0; i < 500; i++) log.allowed(who(`10.2.0.${i % 200}`), `k${i}.example`, 10);
    // A request to a row already being counted costs no memory and is never dropped.
    log.allowed(who('10.2.0.0'), 'k0.example', 10);
    expect(log.stats()).toMatchObject({ pending: 1000, droppedRequests: 300 });
    // /metrics reads the same counters at scrape time.
    const lists = { loaded: true, report: { entries: 0, categories: [], sources: [] } } as unknown as ListStoreLike;
    const text = await createMetrics({ db, lists, browsingLogStats: () => log.stats() }).metrics();
    expect(text).toMatch(/^schoolgate_browsing_log_pending 1000$/m);
    expect(text).toMatch(/^schoolgate_browsing_log_requests_dropped_total 300$/m);
    expect(text).toMatch(/^schoolgate_browsing_log_write_failures_total 1$/m);
    down = false;
    await log.flush();
    const last = calls[calls.length - 1].params as unknown[][];
    expect(last[0]).toHaveLength(1000);
    expect((last[7] as number[]).reduce((a, b) => a + b, 0)).toBe(1001);
    expect(log.stats()).toMatchObject({ pending: 0, storedRequests: 1001, droppedRequests: 300 });
  });
});

for (const b of backends) {
  describe.skipIf(b.skip !== null)(`browsing log store on ${b.kind}`, () => {
    let o: Opened;
    beforeAll(async () => {
      o = await openFresh(b.kind);
    });
    afterAll(async () => {
      await o?.cleanup();
    });

    it('adds repeated flushes of the same minute into one row, merging search terms distinct and bounded', async () => {
      const minute = new Date('2027-05-31T09:00:00Z');
      const row = (requests: number, terms: string[] | null) => ({
        minute, person: 'merge@school.example', device: '', host: 'www.bing.com', verdict: 'allowed' as const, clientIp: '10.0.0.5', category: null, requests, bytes: requests * 10, searchTerms: terms,
      });
      await upsertBrowsingRows(o.db, [row(2, ['volcanoes'])]);
      await upsertBrowsingRows(o.db, [row(3, ['volcanoes', 'lava'])]);
      await upsertBrowsingRows(o.db, [row(1, Array.from({ length: 40 }, (_, i) => `t${i}`))]);
      const rows = (await rowsOf(o.db)).filter((r) => r.person === 'merge@school.example');
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ requests: 6, bytes: 60 });
      expect(rows[0].search_terms!.slice(0, 2)).toEqual(['volcanoes', 'lava']);
      expect(rows[0].search_terms).toHaveLength(20);
    });

    it('retention deletes rows older than browsingLogRetentionDays, keeps newer ones, and audits it', async () => {
      const now = new Date('2027-06-01T00:00:00Z');
      const at = (days: number) => new Date(now.getTime() - days * 86_400_000);
      const row = (minute: Date, host: string) => ({ minute, person: 'ret@school.example', device: '', host, verdict: 'allowed' as const, clientIp: '10.0.0.6', category: null, requests: 1, bytes: 1, searchTerms: null });
      await upsertBrowsingRows(o.db, [row(at(45), 'old.example'), row(at(31), 'older.example'), row(at(29), 'recent.example'), row(at(1), 'new.example')]);
      const r = await runRetention(o.db, { days: 365, browsingLogDays: 30, now });
      expect(r.browsingRowsDeleted).toBe(2);
      const left = (await rowsOf(o.db)).filter((x) => x.person === 'ret@school.example').map((x) => x.host).sort();
      expect(left).toEqual(['new.example', 'recent.example']);
      const audit = await o.db.query<{ details: Record<string, unknown> }>("SELECT details FROM audit_log WHERE action = 'retention.delete' AND target = 'browsing_log' ORDER BY id DESC LIMIT 1");
      expect(audit.rows[0].details).toMatchObject({ deleted: 2, days: 30 });
      // The default is 30 days.
      await upsertBrowsingRows(o.db, [row(at(31), 'default.example')]);
      expect((await runRetention(o.db, { days: 365, now })).browsingRowsDeleted).toBe(1);
    });
  });
}

describe.skipIf(pgSkip !== null)('browsing log while PostgreSQL is away', () => {
  let tdb: Awaited<ReturnType<typeof createTestDatabase>>;
  let relay: Relay;
  let origin: Origin;
  let gw: SchoolgateHandle;
  const dirs: string[] = [];
  beforeAll(async () => {
    tdb = await createTestDatabase('sg_browsing');
    relay = new Relay(Number(new URL(tdb.url).port || 5432));
    await relay.open();
    origin = await startOrigin();
    const cfgDir = proxyTmp('sg-cfg-');
    dirs.push(cfgDir);
    const file = path.join(cfgDir, 'schoolgate.json');
    writeFileSync(file, JSON.stringify({ databaseUrl: relay.urlFor(tdb.url), browsingLogFlushMs: 60_000 }));
    gw = await startTestGateway(origin, dirs, { config: file });
  });
  afterAll(async () => {
    await gw?.close();
    await origin?.close();
    await relay?.cut();
    await tdb?.drop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('keeps serving, keeps the rows, and writes them once the database is back', async () => {
    expect(gw.config.databaseUrl).toContain(String(relay.port));
    await relay.cut();
    const site = `http://down.test:${origin.httpPort}`;
    for (let i = 0; i < 5; i++) expect((await get(gw.proxyPort, `${site}/${i}`, '127.0.0.1')).status).toBe(200);
    expect((await get(gw.proxyPort, 'http://blocked.test/while-down', '127.0.0.1')).status).toBe(403);
    await gw.browsingLog!.flush();
    expect(gw.browsingLog!.stats()).toMatchObject({ failures: 1, droppedRequests: 0 });
    expect(gw.browsingLog!.stats().pending).toBeGreaterThanOrEqual(2);
    await relay.open();
    // The pool may hand out a connection the cut left dead: a flush or two until one answers.
    const end = Date.now() + 20_000;
    while (gw.browsingLog!.stats().pending > 0 && Date.now() < end) {
      await gw.browsingLog!.flush();
      if (gw.browsingLog!.stats().pending > 0) await new Promise((r) => setTimeout(r, 200));
    }
    const rows = await rowsOf(gw.db);
    expect(total(rows, '127.0.0.1', 'down.test', 'allowed').requests).toBe(5);
    expect(total(rows, '127.0.0.1', 'blocked.test', 'blocked').requests).toBe(1);
    expect(gw.browsingLog!.stats()).toMatchObject({ pending: 0, droppedRequests: 0 });
  });
});
