/**
 * Which source named the person travels with the incident (issue 15, point 5): through the queue,
 * the journal and the spool into `incidents.identity_source`, on PGlite and PostgreSQL. Journal and
 * spool lines written before the field existed still replay, with none; a value outside the
 * vocabulary is left out rather than have the column's CHECK refuse the incident.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/log';
import { openDb } from '../../db/db';
import { migrate } from '../../db/migrate';
import type { Db } from '../../db/types';
import { createTestDatabase, postgresMissing } from '../../harness/pg';
import { IncidentWriter } from '../../incidents/writer';
import { need } from '../helpers/parts';

const pgSkip = need('PostgreSQL', await postgresMissing());

/** A pid no process has: its journal and spool segments are a stopped writer's, adopted and replayed at start. */
const GONE_PID = 2 ** 22 + 23456;

const backends: Array<[string, boolean]> = [['PGlite', false], ['PostgreSQL', true]];

describe.each(backends)('%s', (_name, pg) => {
  let db: Db;
  let dir: string;
  let drop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'sg-idsrc-'));
    if (pg) {
      if (pgSkip !== null) return;
      const tdb = await createTestDatabase('sg_idsrc');
      drop = tdb.drop;
      db = await openDb({ databaseUrl: tdb.url, dataDir: dir, logger: silentLogger });
    } else db = await openDb({ databaseUrl: null, dataDir: dir, logger: silentLogger });
    await migrate(db);
  });
  afterAll(async () => {
    await db?.close();
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(pg && pgSkip !== null)('stores the identity source, and replays old journal and spool lines that have none', async () => {
    const base = { t: Date.now(), kind: 'blocked', device: null, gw: 'gw', cat: 'gambling', group: 'pupils', search: null, note: null, rel: null };
    const line = (k: string, user: string, host: string, src?: string) => JSON.stringify({ ...base, k, user, ip: '10.0.0.1', url: `http://${host}/`, host, site: host, ...(src ? { src } : {}) });
    for (const folder of ['spool', 'journal']) mkdirSync(path.join(dir, folder), { recursive: true });
    // As written before migration 019 (no `src`), and after.
    writeFileSync(path.join(dir, 'spool', `${GONE_PID}-abc-000000001.ndjson`), [line('spool-old', 'old@school.example', 'a.test'), line('spool-new', 'new@school.example', 'b.test', 'radius')].join('\n') + '\n');
    writeFileSync(path.join(dir, 'journal', `${GONE_PID}-def-000000001.ndjson`), [line('journal-old', 'jold@school.example', 'c.test'), line('journal-new', 'jnew@school.example', 'd.test', 'clients')].join('\n') + '\n');
    const writer = new IncidentWriter({ db, dataDir: dir, logger: silentLogger, flushMs: 1 });
    writer.start();
    writer.record({ kind: 'blocked', user: 'live@school.example', url: 'http://e.test/', host: 'e.test', category: 'gambling', identitySource: 'proxy_auth' });
    writer.record({ kind: 'blocked', user: 'odd@school.example', url: 'http://f.test/', host: 'f.test', category: 'gambling', identitySource: 'carrier_pigeon' as never });
    expect(await writer.drained(20_000)).toBe(true);
    await writer.close();
    const rows = (await db.query<{ user_name: string; identity_source: string | null }>('SELECT user_name, identity_source FROM incidents ORDER BY user_name')).rows;
    expect(rows.map((r) => [r.user_name, r.identity_source])).toEqual([
      ['jnew@school.example', 'clients'],
      ['jold@school.example', null],
      ['live@school.example', 'proxy_auth'],
      ['new@school.example', 'radius'],
      ['odd@school.example', null],
      ['old@school.example', null],
    ]);
    expect(readdirSync(path.join(dir, 'spool')).filter((f) => f.startsWith(String(GONE_PID)))).toEqual([]);
  });
});
