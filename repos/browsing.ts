/**
 * Every SQL statement on the browsing log (migration 015): the aggregator's batched upsert, the
 * timeline's read of one person's rows, and retention. Parameterised only.
 */
import type { Queryable } from '../db/types';

export type Verdict = 'allowed' | 'blocked';

/** One aggregated row as the aggregator hands it over: already merged on the table's key. */
export interface BrowsingRowInput {
  minute: Date;
  /** Lower case: user, else client address. */
  person: string;
  /** '' when unknown. */
  device: string;
  host: string;
  verdict: Verdict;
  clientIp: string;
  category: string | null;
  requests: number;
  bytes: number;
  /** Distinct search terms seen, or null. */
  searchTerms: string[] | null;
}

export interface BrowsingRow {
  minute: Date;
  person: string;
  device: string;
  host: string;
  verdict: Verdict;
  client_ip: string;
  category: string | null;
  requests: number;
  bytes: number;
  search_terms: string[] | null;
}

/** At most this many distinct search terms are kept on one row (a minute of type-ahead is dozens). */
export const MAX_TERMS_PER_ROW = 20;

// Terms travel as one newline-joined text per row: unnest() flattens a two-dimensional array into
// one column, so a text[] per row cannot be passed as an array parameter. extractSearch collapses
// whitespace, so a term never holds a newline. A conflict adds counts and merges terms, distinct
// and bounded; a row whose terms are already full is left alone rather than unnested again.
const UPSERT_SQL = `
INSERT INTO browsing_log AS b (minute, person, device, host, verdict, client_ip, category, requests, bytes, search_terms)
SELECT g.minute, g.person, g.device, g.host, g.verdict, g.client_ip, g.category, g.requests, g.bytes,
       CASE WHEN g.terms IS NULL THEN NULL ELSE string_to_array(g.terms, E'\\n') END
  FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::bigint[], $10::text[])
       AS g(minute, person, device, host, verdict, client_ip, category, requests, bytes, terms)
ON CONFLICT (person, minute, host, device, verdict) DO UPDATE
   SET requests = b.requests + EXCLUDED.requests,
       bytes = b.bytes + EXCLUDED.bytes,
       client_ip = EXCLUDED.client_ip,
       category = coalesce(EXCLUDED.category, b.category),
       search_terms = CASE
         WHEN EXCLUDED.search_terms IS NULL THEN b.search_terms
         WHEN b.search_terms IS NULL THEN EXCLUDED.search_terms
         WHEN cardinality(b.search_terms) >= ${MAX_TERMS_PER_ROW} THEN b.search_terms
         ELSE b.search_terms || ARRAY(
           SELECT t FROM unnest(EXCLUDED.search_terms) t WHERE t <> ALL (b.search_terms)
            LIMIT ${MAX_TERMS_PER_ROW} - cardinality(b.search_terms))
       END`;

/** Writes one batch in one statement; rows must be unique on the table's key (the aggregator merges them). */
export async function upsertBrowsingRows(db: Queryable, rows: readonly BrowsingRowInput[]): Promise<void> {
  if (!rows.length) return;
  const n = rows.length;
  const minute = new Array<string>(n);
  const person = new Array<string>(n);
  const device = new Array<string>(n);
  const host = new Array<string>(n);
  const verdict = new Array<string>(n);
  const clientIp = new Array<string>(n);
  const category = new Array<string | null>(n);
  const requests = new Array<number>(n);
  const bytes = new Array<number>(n);
  const terms = new Array<string | null>(n);
  for (let i = 0; i < n; i++) {
    const r = rows[i];
    minute[i] = r.minute.toISOString();
    person[i] = r.person;
    device[i] = r.device;
    host[i] = r.host;
    verdict[i] = r.verdict;
    clientIp[i] = r.clientIp;
    category[i] = r.category;
    requests[i] = r.requests;
    bytes[i] = r.bytes;
    terms[i] = r.searchTerms?.length ? r.searchTerms.join('\n') : null;
  }
  await db.query(UPSERT_SQL, [minute, person, device, host, verdict, clientIp, category, requests, bytes, terms]);
}

/**
 * One person's rows (matched case-insensitively) whose minute falls in any of `windows` (each
 * [from, to)), oldest first, at most `limit`. The primary key's (person, minute) range covers the
 * span of all windows; the windows then pick rows within it.
 */
export async function browsingRowsFor(db: Queryable, person: string, windows: ReadonlyArray<{ from: Date; to: Date }>, limit: number): Promise<BrowsingRow[]> {
  if (!windows.length) return [];
  const from = new Date(Math.min(...windows.map((w) => w.from.getTime())));
  const to = new Date(Math.max(...windows.map((w) => w.to.getTime())));
  const r = await db.query<BrowsingRow>(
    `SELECT minute, person, device, host, verdict, client_ip, category, requests, bytes, search_terms
       FROM browsing_log
      WHERE person = lower($1) AND minute >= $2 AND minute < $3
        AND EXISTS (SELECT 1 FROM unnest($4::timestamptz[], $5::timestamptz[]) AS w(a, b) WHERE minute >= w.a AND minute < w.b)
      ORDER BY minute, host, verdict
      LIMIT $6`,
    [person, from.toISOString(), to.toISOString(), windows.map((w) => w.from.toISOString()), windows.map((w) => w.to.toISOString()), limit],
  );
  for (const row of r.rows) {
    if (!(row.minute instanceof Date)) row.minute = new Date(row.minute as unknown as string);
    row.requests = Number(row.requests);
    row.bytes = Number(row.bytes);
  }
  return r.rows;
}

/** Deletes rows older than `cutoff`; returns how many, and the span of their minutes for the audit record. */
export async function deleteBrowsingRowsBefore(tx: Queryable, cutoff: Date): Promise<{ deleted: number; oldest: Date | null; newest: Date | null }> {
  const res = await tx.query<{ deleted: number; oldest: Date | null; newest: Date | null }>(
    `WITH d AS (DELETE FROM browsing_log WHERE minute < $1 RETURNING minute)
     SELECT count(*)::int AS deleted, min(minute) AS oldest, max(minute) AS newest FROM d`,
    [cutoff.toISOString()],
  );
  return res.rows[0];
}

/** The table's size on disk, indexes and TOAST included (bench/browsing-log.ts). */
export async function browsingLogSize(db: Queryable): Promise<{ bytes: number; rows: number; requests: number }> {
  const r = await db.query<{ bytes: number; rows: number; requests: number }>(
    `SELECT pg_total_relation_size('browsing_log')::bigint AS bytes, count(*)::bigint AS rows, coalesce(sum(requests), 0)::bigint AS requests FROM browsing_log`,
  );
  const row = r.rows[0];
  return { bytes: Number(row.bytes), rows: Number(row.rows), requests: Number(row.requests) };
}
