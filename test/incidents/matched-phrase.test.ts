/**
 * The phrase that flagged a search travels with the incident (issue 13, point 4): through the
 * queue, the journal and the spool into `incidents.matched_phrase`, on PGlite and PostgreSQL. A
 * spool line written before the field existed still replays, with no phrase. Also the SQL of the
 * phrase lists (repos/phrases.ts) on both backends: changes and the batched hit counts.
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
import { addPhraseHits, deletePhraseOff, insertPhraseChange, listPhraseChanges, listPhraseHits } from '../../repos/phrases';
import { need } from '../helpers/parts';

const pgSkip = need('PostgreSQL', await postgresMissing());

/** A pid no process has: its spool segments are a stopped writer's, adopted and replayed at start. */
const GONE_PID = 2 ** 22 + 12345;

const backends: Array<[string, boolean]> = [['PGlite', false], ['PostgreSQL', true]];

describe.each(backends)('%s', (_name, pg) => {
  let db: Db;
  let dir: string;
  let drop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'sg-phrase-'));
    if (pg) {
      if (pgSkip !== null) return;
      const tdb = await createTestDatabase('sg_phrase');
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

  it.skipIf(pg && pgSkip !== null)('stores the matched phrase, and replays an old spool line that has none', async () => {
    // A spool line as written before migration 014 (no `ph`), and one written after.
    const spool = path.join(dir, 'spool');
    mkdirSync(spool, { recursive: true });
    const base = { t: Date.now(), kind: 'flagged_search', user: 'old@school.example', device: null, ip: '10.0.0.1', gw: 'gw', host: 'www.google.com', cat: 'suicide', group: 'pupils', note: null, rel: null };
    writeFileSync(path.join(spool, `${GONE_PID}-abc-000000001.ndjson`), [
      JSON.stringify({ ...base, k: 'old-line', url: 'https://www.google.com/search?q=old', search: 'old' }),
      JSON.stringify({ ...base, k: 'new-line', url: 'https://www.google.com/search?q=new', search: 'new', ph: 'kill myself' }),
    ].join('\n') + '\n');
    const writer = new IncidentWriter({ db, dataDir: dir, logger: silentLogger, flushMs: 1 });
    writer.start();
    writer.record({ kind: 'flagged_search', user: 'live@school.example', url: 'https://www.youtube.com/results?search_query=x', host: 'www.youtube.com', category: 'self_harm', searchTerms: 'x', matchedPhrase: 'self harm', severity: 'alert' });
    expect(await writer.drained(20_000)).toBe(true);
    await writer.close();
    const rows = (await db.query<{ idempotency_key: string; user_name: string; matched_phrase: string | null }>(
      'SELECT idempotency_key, user_name, matched_phrase FROM incidents ORDER BY user_name, matched_phrase NULLS FIRST',
    )).rows;
    expect(rows.map((r) => [r.user_name, r.matched_phrase])).toEqual([
      ['live@school.example', 'self harm'],
      ['old@school.example', null],
      ['old@school.example', 'kill myself'],
    ]);
    expect(readdirSync(spool).filter((f) => f.startsWith(String(GONE_PID)))).toEqual([]);
  });

  it.skipIf(pg && pgSkip !== null)('keeps the school\'s phrase changes, one per list and phrase, and adds hit counts in one statement', async () => {
    const added = await insertPhraseChange(db, { category: 'bullying', phrase: 'Zorblax', action: 'add', reason: 'r', severity: 'alert', authorId: null, author: 'dsl@school.example' });
    expect(added).toMatchObject({ category: 'bullying', phrase: 'Zorblax', action: 'add', severity: 'alert' });
    await expect(insertPhraseChange(db, { category: 'bullying', phrase: 'zorblax', action: 'off', reason: 'r', severity: null, authorId: null, author: 'x' })).rejects.toMatchObject({ code: '23505' });
    await insertPhraseChange(db, { category: 'drugs', phrase: 'buy weed', action: 'off', reason: 'r', severity: null, authorId: null, author: 'x' });
    expect((await deletePhraseOff(db, 'drugs', 'BUY WEED'))?.phrase).toBe('buy weed');
    expect((await listPhraseChanges(db)).map((c) => c.phrase)).toEqual(['Zorblax']);

    const t = Date.UTC(2025, 0, 6, 9);
    await addPhraseHits(db, [{ category: 'suicide', phrase: 'kill myself', hits: 2, at: t }, { category: 'drugs', phrase: 'buy weed', hits: 1, at: t }]);
    await addPhraseHits(db, [{ category: 'suicide', phrase: 'kill myself', hits: 3, at: t - 1000 }]);
    const hits = (await listPhraseHits(db)).sort((a, b) => a.phrase.localeCompare(b.phrase));
    expect(hits.map((h) => [h.phrase, h.hits, new Date(h.last_hit!).getTime()])).toEqual([['buy weed', 1, t], ['kill myself', 5, t]]);
  });
});
