/**
 * The school's changes over the shipped safeguarding phrase lists, and how often each phrase
 * fired (migration 014). The lists themselves and what a change means are the filter's
 * (filter/phrase-book.ts); this is only the SQL.
 */
import type { Queryable } from '../db/types';
import { numeric } from './rows';

export type PhraseAction = 'add' | 'off';

export interface PhraseChangeRow {
  id: number;
  category: string;
  phrase: string;
  action: PhraseAction;
  reason: string;
  severity: 'log' | 'incident' | 'alert' | null;
  author: string;
  created_at: Date;
}

const COLUMNS = 'id, category, phrase, action, reason, severity, author, created_at';

export async function listPhraseChanges(db: Queryable): Promise<PhraseChangeRow[]> {
  const r = await db.query<PhraseChangeRow>(`SELECT ${COLUMNS} FROM safeguarding_phrases ORDER BY id`);
  return r.rows.map(numeric);
}

/** Throws the database's unique violation (23505) when the list already has a change for this phrase. */
export async function insertPhraseChange(
  db: Queryable,
  c: { category: string; phrase: string; action: PhraseAction; reason: string; severity: string | null; authorId: number | null; author: string },
): Promise<PhraseChangeRow> {
  const r = await db.query<PhraseChangeRow>(
    `INSERT INTO safeguarding_phrases (category, phrase, action, reason, severity, author_id, author)
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${COLUMNS}`,
    [c.category, c.phrase, c.action, c.reason, c.severity, c.authorId, c.author],
  );
  return numeric(r.rows[0]);
}

/** Deletes the change `id` if it is of `action`; returns it, or null when there is none. */
export async function deletePhraseChange(db: Queryable, id: number, action: PhraseAction): Promise<PhraseChangeRow | null> {
  const r = await db.query<PhraseChangeRow>(`DELETE FROM safeguarding_phrases WHERE id = $1 AND action = $2 RETURNING ${COLUMNS}`, [id, action]);
  return r.rows[0] ? numeric(r.rows[0]) : null;
}

/** The switch-off of a shipped phrase, found by list and phrase (case-insensitive, as the unique index). */
export async function deletePhraseOff(db: Queryable, category: string, phrase: string): Promise<PhraseChangeRow | null> {
  const r = await db.query<PhraseChangeRow>(
    `DELETE FROM safeguarding_phrases WHERE category = $1 AND lower(phrase) = lower($2) AND action = 'off' RETURNING ${COLUMNS}`,
    [category, phrase],
  );
  return r.rows[0] ? numeric(r.rows[0]) : null;
}

/** Changes to the table, for a gateway that missed a notification to notice it. */
export async function phraseFingerprint(db: Queryable): Promise<string> {
  const r = await db.query<{ fp: string }>("SELECT count(*) || ':' || coalesce(sum(id), 0) AS fp FROM safeguarding_phrases");
  return String(r.rows[0]?.fp ?? '');
}

export interface PhraseHits {
  category: string;
  phrase: string;
  hits: number;
  /** Latest hit in the batch (ms since the epoch). */
  at: number;
}

/** Adds a batch of counts in one statement: the gateways flush what they counted every few seconds. */
export async function addPhraseHits(db: Queryable, batch: readonly PhraseHits[]): Promise<void> {
  if (!batch.length) return;
  await db.query(
    `INSERT INTO safeguarding_phrase_hits (category, phrase, hits, last_hit)
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[])
     ON CONFLICT (category, phrase) DO UPDATE
       SET hits = safeguarding_phrase_hits.hits + excluded.hits,
           last_hit = greatest(safeguarding_phrase_hits.last_hit, excluded.last_hit)`,
    [batch.map((b) => b.category), batch.map((b) => b.phrase), batch.map((b) => b.hits), batch.map((b) => new Date(b.at).toISOString())],
  );
}

export interface PhraseHitRow {
  category: string;
  phrase: string;
  hits: number;
  last_hit: Date | null;
}

export async function listPhraseHits(db: Queryable): Promise<PhraseHitRow[]> {
  const r = await db.query<PhraseHitRow>('SELECT category, phrase, hits, last_hit FROM safeguarding_phrase_hits');
  return r.rows.map((row) => ({ ...row, hits: Number(row.hits) }));
}
