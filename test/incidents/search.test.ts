import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { migrate } from '../../db/migrate';
import { listIncidents, searchIndexed, type IncidentFilter } from '../../repos/incidents';
import type { Db, Queryable } from '../../db/types';
import { pgliteQuery } from '../../db/pglite-thread';
import { openDb } from '../../db/db';
import { createTestDatabase, postgresBaseUrl } from '../../harness/pg';
import { backends, openFresh, pgSkip, type Opened } from './helpers';
import { syntheticIncidentsSql, uniqueTerm } from './search-fixture';
import { Writable } from 'node:stream';
import { createLogger } from '../../core/log';
import { harness } from '../admin-api/helpers';

/**
 * The search as it was before migration 011 (seven ILIKEs, no index): the oracle the indexed search
 * must agree with, row for row and in the same order.
 */
async function oracle(db: Queryable, q: string, extra = ''): Promise<number[]> {
  const like = `%${q.replace(/[\\%_]/g, (c) => '\\' + c)}%`;
  const r = await db.query<{ id: number }>(
    `SELECT id FROM incidents WHERE (url ILIKE $1 OR host ILIKE $1 OR user_name ILIKE $1 OR device ILIKE $1
       OR search_terms ILIKE $1 OR note ILIKE $1 OR client_ip ILIKE $1) ${extra}
     ORDER BY occurred_at DESC, id DESC`,
    [like],
  );
  return r.rows.map((x) => Number(x.id));
}

/** Every id the search returns, walking all pages. */
async function searchAll(db: Queryable, f: IncidentFilter, limit = 7): Promise<number[]> {
  const ids: number[] = [];
  let cursor: string | null = null;
  do {
    const page: Awaited<ReturnType<typeof listIncidents>> = await listIncidents(db, f, { cursor, limit });
    ids.push(...page.rows.map((r) => r.id));
    cursor = page.nextCursor;
  } while (cursor);
  return ids;
}

/** Rows chosen to trip the rewrite: LIKE metacharacters, case, accents, NULLs, text either side of a column boundary. */
const TRICKY = `INSERT INTO incidents (idempotency_key, occurred_at, last_seen, kind, user_name, device, client_ip, url, host, search_terms, note)
  VALUES
  ('t1', '2026-02-01T10:00Z', '2026-02-01T10:00Z', 'blocked', 'Zoë.Smith@school.example', 'LAB-01', '10.9.9.1', 'http://ends-with-abc.example/', 'ends-with-abc.example', NULL, NULL),
  ('t2', '2026-02-01T10:01Z', '2026-02-01T10:01Z', 'flagged_search', 'defuser@school.example', NULL, NULL, 'https://search.example/?q=100%25', 'search.example', '100% free_vpn', NULL),
  ('t3', '2026-02-01T10:02Z', '2026-02-01T10:02Z', 'self_report', 'x@school.example', 'T-LAPTOP', '10.9.9.3', 'http://back\\slash.example/a_b', NULL, NULL, 'Pupil said "ÉCOLE" twice;' || E'\\n' || 'second line'),
  ('t4', '2026-02-01T10:03Z', '2026-02-01T10:03Z', 'blocked', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  ('t5', '2026-02-01T10:03Z', '2026-02-01T10:03Z', 'blocked', 'abc@school.example', 'abcdev', '10.9.9.5', 'http://abc.example/abc', 'abc.example', 'abc abc', 'abc')`;

const TERMS = [
  uniqueTerm(123), 'vpn free', 'VPN FREE', 'pupil1', 'site42', 'site4242.example', 'self harm', 'Year 9', '10.0.1.',
  'zoë', 'ZOË', 'école', '100%', '100%25', '%', '_', 'free_vpn', 'free%vpn', 'a_b', 'back\\slash', '\\', 'x', 'ab', 'zq',
  // across a column boundary: matched nothing before, must match nothing now
  'abc.example/abc.example', '/abcabc.example', '/pupil1', 'example\x1fpupil', '\x1f', 'abc\x1fabc',
  'twice;\nsecond', 'nothing-matches-this', 'LAB-01', 'dev-7', 'https://', '.example/p/',
];

describe.each(backends)('free-text search on $kind', ({ kind, skip }) => {
  let o: Opened;
  beforeAll(async () => {
    if (skip) return;
    o = await openFresh(kind);
    await o.db.query(syntheticIncidentsSql(3000));
    await o.db.query(TRICKY);
    await o.db.query('ANALYZE incidents');
  });
  afterAll(async () => {
    await o?.cleanup();
  });

  it.skipIf(!!skip)('has the trigram index after migrating', async () => {
    expect(await searchIndexed(o.db)).toBe(true);
  });

  it.skipIf(!!skip)('finds exactly the rows, in the order and pages, the unindexed search found', async () => {
    for (const q of TERMS) {
      const want = await oracle(o.db, q);
      expect(await searchAll(o.db, { q }, 500), JSON.stringify(q)).toEqual(want);
    }
    // paging through ties on occurred_at (t4, t5) and across many pages
    for (const q of ['abc', 'pupil14', 'site1']) {
      expect(await searchAll(o.db, { q }, 3), q).toEqual(await oracle(o.db, q));
    }
    // sanity: the set is not trivially empty or everything
    expect(await oracle(o.db, 'vpn free')).toHaveLength(15);
    expect(await oracle(o.db, uniqueTerm(123))).toHaveLength(1);
    expect(await oracle(o.db, 'abc.example/abc.example')).toHaveLength(0);
  });

  it.skipIf(!!skip)('combines with the other filters as before', async () => {
    const f: IncidentFilter = { q: 'site1', kind: ['blocked'], user: 'pupil101@school.example', from: new Date('2026-01-05T09:00:00Z') };
    const want = await oracle(o.db, 'site1', `AND kind = 'blocked' AND user_name = 'pupil101@school.example' AND occurred_at >= '2026-01-05T09:00:00Z'`);
    expect(want.length).toBeGreaterThan(0);
    expect(await searchAll(o.db, f)).toEqual(want);
  });
});

/** PGlite without its pg_trgm module: what a PostgreSQL without contrib looks like to migration 011. */
async function pgliteWithoutTrgm(): Promise<Db & { dir: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sg-notrgm-'));
  const lite = await PGlite.create(dir);
  return {
    dir,
    kind: 'pglite',
    query: (sql, params) => pgliteQuery(lite, sql, params),
    transaction: (fn) => lite.transaction((tx) => fn({ query: (sql, params) => pgliteQuery(tx, sql, params) })),
    listen: async () => async () => {},
    notify: async () => {},
    close: async () => {
      await lite.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('where pg_trgm is not available', () => {
  it('PGlite without the module: migration 011 applies, no index, search still exact (unindexed)', async () => {
    const db = await pgliteWithoutTrgm();
    try {
      const r = await migrate(db);
      expect(r.applied).toContain('011_incident_search.sql');
      expect(await searchIndexed(db)).toBe(false);
      await db.query(syntheticIncidentsSql(500));
      await db.query(TRICKY);
      for (const q of ['vpn free', uniqueTerm(77), 'zoë', '100%', 'ab', 'abc.example/abc.example']) {
        expect(await searchAll(db, { q }, 50), q).toEqual(await oracle(db, q));
      }
    } finally {
      await db.close();
    }
  });

  it('the server says at start which it is: "incident search: unindexed" without pg_trgm, "indexed" with it', async () => {
    // The admin app as `schoolgate start` builds it, with the app's real logger writing here.
    const startLog = async (db?: Db) => {
      const lines: Array<{ level: number; msg: string; search?: string }> = [];
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l));
          done();
        },
      });
      const h = await harness({ db, logger: createLogger({ level: 'info', destination: sink }) });
      await h.close();
      return lines.filter((l) => l.msg.startsWith('incident search:'));
    };
    const without = await pgliteWithoutTrgm();
    try {
      const said = await startLog(without);
      expect(said).toHaveLength(1);
      expect(said[0]).toMatchObject({ level: 40, search: 'unindexed' }); // a warning: it slows as incidents grow
      expect(said[0].msg).toMatch(/^incident search: unindexed \(pg_trgm not available/);
      expect(said[0].msg).toContain('postgresql-contrib'); // and what to do about it
    } finally {
      await without.close();
    }
    const indexed = await startLog(); // PGlite with its pg_trgm module
    expect(indexed).toHaveLength(1);
    expect(indexed[0]).toMatchObject({ level: 30, search: 'trigram', msg: 'incident search: indexed (pg_trgm)' });
  });

  it.skipIf(!!pgSkip)('PostgreSQL, a role that may not create extensions: migration applies unindexed; a database owner gets the index, and so does the first role once it may', async () => {
    const suffix = `${process.pid}_${Math.random().toString(16).slice(2, 8)}`;
    const app = `sg_app_${suffix}`;
    const owner = `sg_owner_${suffix}`;
    const admin = new pg.Client({ connectionString: postgresBaseUrl });
    await admin.connect();
    const dbs: Array<Awaited<ReturnType<typeof createTestDatabase>>> = [];
    try {
      await admin.query(`CREATE ROLE ${app} LOGIN`);
      await admin.query(`CREATE ROLE ${owner} LOGIN`);
      // a managed server's usual application role: tables in a schema it may use, no CREATE on the database
      const a = await createTestDatabase('sg_noext');
      dbs.push(a);
      const ca = new pg.Client({ connectionString: a.url });
      await ca.connect();
      await ca.query(`GRANT USAGE, CREATE ON SCHEMA public TO ${app}`);
      await ca.end();
      // pg_trgm is trusted (PG 13+): a non-superuser that owns the database may create it
      const b = await createTestDatabase('sg_owner');
      dbs.push(b);
      await admin.query(`ALTER DATABASE "${b.name}" OWNER TO ${owner}`);

      const as = (url: string, role: string) => {
        const u = new URL(url);
        u.username = role;
        return u.toString();
      };
      for (const [url, role, indexed] of [[a.url, app, false], [b.url, owner, true]] as const) {
        const dir = mkdtempSync(path.join(os.tmpdir(), 'sg-role-'));
        const db = await openDb({ databaseUrl: as(url, role), dataDir: dir });
        try {
          expect((await migrate(db)).applied, role).toContain('011_incident_search.sql');
          expect(await searchIndexed(db), role).toBe(indexed);
          await db.query(syntheticIncidentsSql(300));
          expect(await searchAll(db, { q: 'site12' }, 50)).toEqual(await oracle(db, 'site12'));
        } finally {
          await db.close();
          rmSync(dir, { recursive: true, force: true });
        }
      }
      // Given the right afterwards (as when contrib is installed afterwards), the next run builds it.
      await admin.query(`GRANT CREATE ON DATABASE "${a.name}" TO ${app}`);
      const dir = mkdtempSync(path.join(os.tmpdir(), 'sg-role-'));
      const later = await openDb({ databaseUrl: as(a.url, app), dataDir: dir });
      try {
        expect((await migrate(later)).applied).toEqual([]);
        expect(await searchIndexed(later)).toBe(true);
        expect(await searchAll(later, { q: 'site12' }, 50)).toEqual(await oracle(later, 'site12'));
      } finally {
        await later.close();
        rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      for (const d of dbs) await d.drop();
      await admin.query(`DROP ROLE IF EXISTS ${app}`);
      await admin.query(`DROP ROLE IF EXISTS ${owner}`);
      await admin.end();
    }
  });
});

/** Records the SQL listIncidents sends, so EXPLAIN runs the very statement the console runs. */
function capture(db: Queryable): { q: Queryable; last: () => { sql: string; params: unknown[] } } {
  let last = { sql: '', params: [] as unknown[] };
  return {
    q: { query: (sql, params) => ((last = { sql, params: params ?? [] }), db.query(sql, params)) },
    last: () => last,
  };
}

describe.skipIf(!!pgSkip)('the plan on real PostgreSQL (50,000 incidents, ANALYZEd)', () => {
  let o: Opened;
  beforeAll(async () => {
    o = await openFresh('pg');
    await o.db.query(syntheticIncidentsSql(50_000));
    await o.db.query('ANALYZE incidents');
  }, 120_000);
  afterAll(async () => {
    await o?.cleanup();
  });

  async function plan(f: IncidentFilter): Promise<string> {
    const c = capture(o.db);
    await listIncidents(c.q, f, { limit: 50 });
    const { sql, params } = c.last();
    const r = await o.db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${sql}`, params);
    return r.rows.map((x) => x['QUERY PLAN']).join('\n');
  }

  it('a selective term goes through the trigram index', async () => {
    const p = await plan({ q: uniqueTerm(31337) });
    expect(p).toMatch(/Bitmap Index Scan on incidents_search_trgm/);
    expect(p).not.toMatch(/Seq Scan/);
    expect((await listIncidents(o.db, { q: uniqueTerm(31337) }, { limit: 50 })).rows).toHaveLength(1);
    // Not asserted for a term in ten rows (say 'site4242.example'): PostgreSQL estimates a
    // '%term%' match from ANALYZE's random sample, and in about one run in fifty a matching row
    // lands in the histogram, the estimate jumps to 1% of the table, and the planner walks the
    // time index instead. Both plans give the same rows (the results test above checks them).
  });

  it('a term every row matches walks the time index instead (the first page is found at once)', async () => {
    expect(await plan({ q: 'pupil' })).toMatch(/Index Scan( Backward)? using incidents_time/);
  });

  it('a term shorter than three characters has no trigram: it is answered by a scan, not the index', async () => {
    const p = await plan({ q: 'zq' });
    expect(p).not.toMatch(/incidents_search_trgm/);
    expect((await listIncidents(o.db, { q: 'zq' }, { limit: 50 })).rows).toEqual([]);
  });
});
