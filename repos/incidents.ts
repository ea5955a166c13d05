/**
 * Every SQL statement on incidents, their history events and the keys folded into them: what the
 * incident writer stores, what the console lists, searches, triages and counts, and what retention
 * deletes. Parameterised only: filters add fixed fragments whose values travel as $n parameters.
 * Ordering is (occurred_at DESC, id DESC) everywhere so the incidents_time /
 * incidents_status_time indexes serve both the order and the keyset cursor; the queue sorted by
 * severity puts SEVERITY_RANK first (incidents_status_severity_time).
 */
import { createHash } from 'node:crypto';
import { SchoolgateError } from '../core/errors';
import type { IdentitySource, IncidentKind, IncidentStatus, Tier } from '../core/vocabulary';
import type { Db, Queryable } from '../db/types';
import { decodeCursor, encodeCursor, numeric } from './rows';

/**
 * One row of `incidents` as both backends return it. Ids (int8) are JS numbers in both pg and
 * PGlite (they stay far below 2^53); timestamptz columns are Dates. Columns are snake_case.
 */
export interface IncidentRow {
  id: number;
  idempotency_key: string;
  occurred_at: Date;
  last_seen: Date;
  count: number;
  kind: IncidentKind;
  status: IncidentStatus;
  severity: Tier;
  user_name: string | null;
  device: string | null;
  client_ip: string | null;
  gateway: string | null;
  url: string | null;
  host: string | null;
  category: string | null;
  policy_group: string | null;
  search_terms: string | null;
  note: string | null;
  related_key: string | null;
  assignee_id: number | null;
  updated_at: Date;
  /** The safeguarding phrase that flagged a search (migration 014). */
  matched_phrase: string | null;
  /** Which source named the person (migration 019); null before it and on console reports. */
  identity_source: IdentitySource | null;
}

export interface IncidentEventRow {
  id: number;
  incident_id: number;
  at: Date;
  actor_id: number | null;
  actor: string;
  action: string;
  from_status: string | null;
  to_status: string | null;
  note: string | null;
}

export interface IncidentFilter {
  status?: string[];
  kind?: string[];
  category?: string[];
  severity?: Tier[];
  /** User name, compared case-insensitively (staff see only their own: the route sets this to their email). */
  user?: string;
  from?: Date;
  /** Exclusive upper bound. */
  to?: Date;
  /** Case-insensitive substring of url, host, user, device, search terms, note or client IP. */
  q?: string;
}

const COLUMNS = `id, idempotency_key, occurred_at, last_seen, count, kind, status, severity, user_name, device, client_ip,
  gateway, url, host, category, policy_group, search_terms, note, related_key, assignee_id, updated_at, matched_phrase, identity_source`;

const likeEscape = (s: string) => s.replace(/[\\%_]/g, (c) => '\\' + c);

const SEARCH_SEPARATOR = '\x1f';

/**
 * The searched columns as one text, exactly as migration 011 indexes it (GIN, pg_trgm): the planner
 * only uses an expression index for the same expression. Joined by U+001F so that a term without
 * that character matches this text exactly when it matches one of the columns. Terms of fewer than
 * three characters have no trigram to look up: they still work, as a scan (by time, newest first).
 */
export const SEARCH_TEXT =
  `coalesce(url, '') || E'\\x1f' || coalesce(host, '') || E'\\x1f' || coalesce(user_name, '') || E'\\x1f' || coalesce(device, '')` +
  ` || E'\\x1f' || coalesce(search_terms, '') || E'\\x1f' || coalesce(note, '') || E'\\x1f' || coalesce(client_ip, '')`;

/** Whether migration 011 could build the trigram index (it cannot where pg_trgm is unavailable). */
export async function searchIndexed(db: Queryable): Promise<boolean> {
  const r = await db.query<{ ok: boolean }>(`SELECT to_regclass('incidents_search_trgm') IS NOT NULL AS ok`);
  return r.rows[0]?.ok === true;
}

/** WHERE fragments for a filter; values are appended to `params`. */
export function filterSql(f: IncidentFilter, params: unknown[]): string[] {
  const where: string[] = [];
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  if (f.status?.length) where.push(`status = ANY(${p(f.status)}::text[])`);
  if (f.kind?.length) where.push(`kind = ANY(${p(f.kind)}::text[])`);
  if (f.category?.length) where.push(`category = ANY(${p(f.category)}::text[])`);
  if (f.severity?.length) where.push(`severity = ANY(${p(f.severity)}::text[])`);
  // A person is one person however their name was typed: proxy sign-in lower-cases it, the
  // clients map keeps the school's spelling (incidents_user_lower_time).
  if (f.user !== undefined) where.push(`lower(user_name) = lower(${p(f.user)})`);
  if (f.from) where.push(`occurred_at >= ${p(f.from)}`);
  if (f.to) where.push(`occurred_at < ${p(f.to)}`);
  if (f.q) {
    const like = p(`%${likeEscape(f.q)}%`);
    // A term holding the separator could match across two columns in SEARCH_TEXT; only then does
    // the search go column by column (unindexed), which is what SEARCH_TEXT otherwise equals.
    where.push(
      f.q.includes(SEARCH_SEPARATOR)
        ? `(url ILIKE ${like} OR host ILIKE ${like} OR user_name ILIKE ${like} OR device ILIKE ${like}` +
            ` OR search_terms ILIKE ${like} OR note ILIKE ${like} OR client_ip ILIKE ${like})`
        : `(${SEARCH_TEXT}) ILIKE ${like}`,
    );
  }
  return where;
}

/** Spelled as migration 013's incidents_status_severity_time index spells it, so the planner can use it. */
const SEVERITY_RANK = `(CASE severity WHEN 'alert' THEN 2 WHEN 'incident' THEN 1 ELSE 0 END)`;

/** `time`: newest first. `severity`: alert first, then incident, then log, newest first within each. */
export type IncidentSort = 'time' | 'severity';

/** One page; nextCursor is null on the last page. */
export async function listIncidents(
  db: Queryable,
  f: IncidentFilter,
  page: { cursor?: string | null; limit: number; sort?: IncidentSort },
): Promise<{ rows: IncidentRow[]; nextCursor: string | null }> {
  const params: unknown[] = [];
  const where = filterSql(f, params);
  const bySeverity = page.sort === 'severity';
  if (page.cursor) {
    params.push(decodeCursor(page.cursor));
    // The cursor names the last row seen; its own sort key is the exact keyset bound, so a page
    // never skips or repeats a row whatever was stored since.
    where.push(
      bySeverity
        ? `(${SEVERITY_RANK}, occurred_at, id) < (SELECT ${SEVERITY_RANK.replace('severity', 'c.severity')}, c.occurred_at, c.id FROM incidents c WHERE c.id = $${params.length})`
        : `(occurred_at, id) < (SELECT c.occurred_at, c.id FROM incidents c WHERE c.id = $${params.length})`,
    );
  }
  params.push(page.limit + 1);
  const sql = `SELECT ${COLUMNS} FROM incidents ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
    ORDER BY ${bySeverity ? `${SEVERITY_RANK} DESC, ` : ''}occurred_at DESC, id DESC LIMIT $${params.length}`;
  const r = await db.query<IncidentRow>(sql, params);
  const rows = r.rows.map(numeric);
  const more = rows.length > page.limit;
  if (more) rows.length = page.limit;
  return { rows, nextCursor: more ? encodeCursor(rows[rows.length - 1].id) : null };
}

export async function getIncident(db: Queryable, id: number, opts: { forUpdate?: boolean } = {}): Promise<IncidentRow | null> {
  const r = await db.query<IncidentRow>(`SELECT ${COLUMNS} FROM incidents WHERE id = $1${opts.forUpdate ? ' FOR UPDATE' : ''}`, [id]);
  return r.rows[0] ? numeric(r.rows[0]) : null;
}

/**
 * The incident holding an idempotency key: its own row, or the earlier row the writer folded this
 * repeat into (a block page's reference may name a repeat; see incident_folds and writer's
 * incidentIdForKey). Both branches are primary-key look-ups.
 */
export async function getIncidentByKey(db: Queryable, key: string): Promise<IncidentRow | null> {
  const r = await db.query<IncidentRow>(
    `SELECT ${COLUMNS} FROM incidents WHERE idempotency_key = $1
     UNION ALL
     SELECT ${COLUMNS} FROM incidents WHERE id = (SELECT f.incident_id FROM incident_folds f WHERE f.idempotency_key = $1)
     LIMIT 1`,
    [key],
  );
  return r.rows[0] ? numeric(r.rows[0]) : null;
}

/** One attempt folded into an incident: when, and at which address. */
export interface AttemptRow {
  at: Date;
  url: string | null;
}

/**
 * An incident's attempts in time order: its own first one, then each repeat folded into it (at
 * most `max`; `count` says how many there were in all). Repeats folded before migration 013 have
 * no address of their own.
 */
export async function incidentAttempts(db: Queryable, row: IncidentRow, max = 500): Promise<AttemptRow[]> {
  const r = await db.query<{ at: Date; url: string | null }>(
    'SELECT occurred_at AS at, url FROM incident_folds WHERE incident_id = $1 ORDER BY occurred_at, idempotency_key LIMIT $2',
    [row.id, Math.max(0, max - 1)],
  );
  const folds = r.rows.map((f) => ({ at: new Date(f.at), url: f.url }));
  // The row's own attempt is dated by occurred_at, which a replayed older repeat can move earlier.
  return [{ at: new Date(row.occurred_at), url: row.url }, ...folds].sort((a, b) => a.at.getTime() - b.at.getTime());
}

/**
 * The block a report refers to, and the reports that refer to this block. A report names the block
 * by the key its page was sealed with, which may be a repeat folded into an earlier incident (the
 * second page of a site within the fold window): both ways go through incident_folds, so the link
 * holds whichever attempt's page the report came from. Index look-ups only (incidents_related,
 * the folds' primary key and incident_folds_incident).
 */
export async function relatedIncidents(db: Queryable, row: IncidentRow): Promise<IncidentRow[]> {
  const r = await db.query<IncidentRow>(
    // One index look-up per branch; a single WHERE with these ORs would scan the table.
    `SELECT * FROM (
       SELECT ${COLUMNS} FROM incidents WHERE related_key = $1
       UNION
       SELECT ${COLUMNS} FROM incidents WHERE related_key IN (SELECT f.idempotency_key FROM incident_folds f WHERE f.incident_id = $3)
       UNION
       SELECT ${COLUMNS} FROM incidents WHERE idempotency_key = $2
       UNION
       SELECT ${COLUMNS} FROM incidents WHERE id = (SELECT f.incident_id FROM incident_folds f WHERE f.idempotency_key = $2)
     ) linked
     WHERE id <> $3 ORDER BY occurred_at, id LIMIT 100`,
    [row.idempotency_key, row.related_key ?? '', row.id],
  );
  return r.rows.map(numeric);
}

export async function incidentEvents(db: Queryable, incidentId: number): Promise<IncidentEventRow[]> {
  const r = await db.query<IncidentEventRow>(
    'SELECT id, incident_id, at, actor_id, actor, action, from_status, to_status, note FROM incident_events WHERE incident_id = $1 ORDER BY at, id',
    [incidentId],
  );
  return r.rows.map(numeric);
}

/** One line of an incident's history, written in the transaction that makes the change it records. */
export async function addIncidentEvent(
  tx: Queryable,
  e: { incidentId: number; actor: { id: number | null; email: string }; action: string; from: string | null; to: string | null; note: string | null },
): Promise<void> {
  await tx.query(
    'INSERT INTO incident_events (incident_id, actor_id, actor, action, from_status, to_status, note) VALUES ($1, $2, $3, $4, $5, $6, $7)',
    [e.incidentId, e.actor.id, e.actor.email, e.action, e.from, e.to, e.note],
  );
}

/** Sets the triage fields; the caller has locked the row (getIncident forUpdate) and checked the change. */
export async function setIncidentTriage(tx: Queryable, id: number, status: IncidentStatus, assigneeId: number | null): Promise<IncidentRow> {
  const r = await tx.query<IncidentRow>(
    `UPDATE incidents SET status = $2, assignee_id = $3, updated_at = now() WHERE id = $1 RETURNING ${COLUMNS}`,
    [id, status, assigneeId],
  );
  return numeric(r.rows[0]);
}

// ---------------------------------------------------------------------------------------------
// Stats

export interface Stats {
  perDay: Array<{ day: string; category: string | null; count: number; attempts: number }>;
  perStatus: Array<{ status: string; count: number }>;
  perCategory: Array<{ category: string | null; count: number; attempts: number }>;
}

/**
 * `count` is incidents as the queue lists them (a row, however many repeats were folded into it),
 * each on the day it first happened, so a chart of `count` and the queue filtered to that day agree;
 * `attempts` adds the folded repeats (sum of count), for charts that say "attempts".
 */
const knownZones = new Set<string>(['UTC']);

/**
 * Whether the database's zone files know `zone` (AT TIME ZONE needs them to): Intl and PostgreSQL
 * carry their own copies of the tz database, and an older server may lack a newer zone.
 */
export async function databaseKnowsZone(db: Queryable, zone: string): Promise<boolean> {
  if (knownZones.has(zone)) return true;
  // pg_timezone_names reads the zone files: slow enough to ask once per zone, not per request.
  const known = await db.query('SELECT 1 FROM pg_timezone_names WHERE name = $1', [zone]);
  if (known.rowCount === 0) return false;
  knownZones.add(zone);
  return true;
}

export async function incidentStats(
  db: Queryable,
  range: { from: Date; to: Date; timeZone?: string },
  f: { kind?: string[] } = {},
): Promise<Stats> {
  const params: unknown[] = [range.from, range.to];
  let where = 'occurred_at >= $1 AND occurred_at < $2';
  if (f.kind?.length) {
    params.push(f.kind);
    where += ` AND kind = ANY($${params.length}::text[])`;
  }
  const zone = range.timeZone ?? 'UTC';
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$/.test(zone)) throw new SchoolgateError('SG_ERR_VALIDATION', `not a time zone: ${JSON.stringify(zone.slice(0, 70))}`);
  if (!(await databaseKnowsZone(db, zone))) throw new SchoolgateError('SG_ERR_VALIDATION', `unknown time zone ${zone}`);
  const dayParams = [...params, zone];
  const [perDay, perStatus, perCategory] = await Promise.all([
    db.query<{ day: string; category: string | null; count: number | string; attempts: number | string }>(
      // Days as the school counts them: a block at 00:30 BST belongs to that morning, not the day before.
      `SELECT to_char(occurred_at AT TIME ZONE $${dayParams.length}, 'YYYY-MM-DD') AS day, category, count(*) AS count, sum(count) AS attempts
         FROM incidents WHERE ${where} GROUP BY 1, 2 ORDER BY 1, 2`,
      dayParams,
    ),
    db.query<{ status: string; count: number | string }>(
      `SELECT status, count(*) AS count FROM incidents WHERE ${where} GROUP BY 1 ORDER BY 1`,
      params,
    ),
    db.query<{ category: string | null; count: number | string; attempts: number | string }>(
      `SELECT category, count(*) AS count, sum(count) AS attempts FROM incidents WHERE ${where} GROUP BY 1 ORDER BY 2 DESC, 3 DESC, 1`,
      params,
    ),
  ]);
  return {
    perDay: perDay.rows.map((r) => ({ day: r.day, category: r.category, count: Number(r.count), attempts: Number(r.attempts) })),
    perStatus: perStatus.rows.map((r) => ({ status: r.status, count: Number(r.count) })),
    perCategory: perCategory.rows.map((r) => ({ category: r.category, count: Number(r.count), attempts: Number(r.attempts) })),
  };
}

/** Every matching row (up to `max`), newest first, fetched a keyset page at a time. */
export async function* exportRows(db: Queryable, f: IncidentFilter, max = 100_000): AsyncGenerator<IncidentRow> {
  let cursor: string | null = null;
  let sent = 0;
  do {
    const page: { rows: IncidentRow[]; nextCursor: string | null } = await listIncidents(db, f, { cursor, limit: Math.min(1000, max - sent) });
    for (const r of page.rows) yield r;
    sent += page.rows.length;
    cursor = page.nextCursor;
  } while (cursor && sent < max);
}

/** What the CSV export adds to a page of incidents: who each is assigned to, and the DSL's notes on it. */
export interface ExportDetails {
  assignees: Map<number, string>;
  /** Each incident's history lines that carry a note, oldest first. */
  notes: Map<number, Array<{ at: Date; actor: string; action: string; to_status: string | null; note: string }>>;
}

export async function exportDetails(db: Queryable, ids: number[]): Promise<ExportDetails> {
  const assignees = new Map<number, string>();
  const notes: ExportDetails['notes'] = new Map();
  if (ids.length === 0) return { assignees, notes };
  const [a, e] = await Promise.all([
    db.query<{ id: number; email: string }>('SELECT i.id, u.email FROM incidents i JOIN users u ON u.id = i.assignee_id WHERE i.id = ANY($1::bigint[])', [ids]),
    db.query<{ incident_id: number; at: Date; actor: string; action: string; to_status: string | null; note: string }>(
      `SELECT incident_id, at, actor, action, to_status, note FROM incident_events
        WHERE incident_id = ANY($1::bigint[]) AND note IS NOT NULL ORDER BY incident_id, at, id`,
      [ids],
    ),
  ]);
  for (const r of a.rows) assignees.set(Number(r.id), r.email);
  for (const r of e.rows) {
    const id = Number(r.incident_id);
    let list = notes.get(id);
    if (!list) notes.set(id, (list = []));
    list.push({ at: new Date(r.at), actor: r.actor, action: r.action, to_status: r.to_status, note: r.note });
  }
  return { assignees, notes };
}

// ---------------------------------------------------------------------------------------------
// The incident writer's batches

/** Self-reports and unblock requests are a person's own words: each stays its own incident. */
const FOLDABLE = new Set<IncidentKind>(['blocked', 'flagged_search']);

/**
 * One incident as the writer queues, spools and hands it here in batches (the writer calls it
 * `Rec`): short keys because every spooled line carries them.
 */
export interface IncidentRecord {
  k: string;
  /** occurred_at, ms since the epoch */
  t: number;
  kind: IncidentKind;
  user: string | null;
  device: string | null;
  ip: string | null;
  gw: string | null;
  url: string | null;
  host: string | null;
  cat: string | null;
  group: string | null;
  search: string | null;
  note: string | null;
  rel: string | null;
  /** Severity; absent in spool lines written before tiers: 'incident'. */
  sev?: Tier;
  /** The registrable domain of `host` (core/host.ts siteOf), which repeats of a block fold by. */
  site?: string | null;
  /**
   * The safeguarding phrase that flagged a search. Optional: lines spooled or journalled before
   * migration 014 have none, and replay them as they are.
   */
  ph?: string | null;
  /**
   * Which source named the person (core/vocabulary.ts IDENTITY_SOURCES). Optional: lines spooled
   * or journalled before migration 019 have none, and are stored with identity_source null.
   */
  src?: IdentitySource | null;
  /**
   * Set while the record was sent in a write whose outcome is unknown (the connection died before
   * the COMMIT reply). If a later write finds its key already stored, that lost write stored it and
   * nobody has announced it yet: it is announced then. Kept in the spool so a restart knows too.
   */
  u?: 1;
}

/**
 * Another writer stored one of a batch's keys between the look-up and the insert: the batch is
 * written again at once, and that key is then skipped (the writer classifies this as 'retry').
 */
export class ConcurrentKeyError extends Error {}

interface Group {
  first: IncidentRecord;
  /** foldKeyOf(first), computed once. */
  foldKey: string | null;
  rest: IncidentRecord[];
  firstAt: number;
  lastAt: number;
  /** Only the earliest group of a repeat key in a batch may fold into an existing row. */
  canFoldIntoDb: boolean;
}

/**
 * Repeats share this key (stored as incidents.fold_key): same kind and severity, same person (user
 * name ignoring case, or client IP when nobody is named), and for a block the same site (HTTP and
 * HTTPS, any page of it: the person went back to it), for a flagged search the same URL (another
 * search is another thing they looked for). Severity is part of it so that an alerting attempt
 * never hides in a row that did not alert. Hashed: URLs run to 2000 characters, an index row to 2.7 kB.
 */
export function foldKeyOf(r: IncidentRecord): string | null {
  if (!FOLDABLE.has(r.kind)) return null;
  const where = r.kind === 'blocked' ? (r.site ?? r.host?.toLowerCase() ?? r.url) : r.url;
  if (!where) return null;
  const who = r.user ? `u\u0000${r.user.toLowerCase()}` : r.ip ? `i\u0000${r.ip}` : null;
  if (!who) return null;
  return createHash('sha256').update(`${r.kind}\u0000${r.sev ?? 'incident'}\u0000${where}\u0000${who}`).digest('base64url');
}

const iso = (ms: number) => new Date(ms).toISOString();

// Finding the row to fold into and updating it are two statements on purpose: joined in one,
// the planner hash-joins the update against a sequential scan of the whole table.
export const FIND_SQL = `
SELECT g.idx, t.id
  FROM unnest($1::int[], $2::text[], $3::timestamptz[], $4::timestamptz[]) AS g(idx, fold_key, first_at, last_at)
 CROSS JOIN LATERAL (
   SELECT i.id FROM incidents i
    WHERE i.fold_key = g.fold_key AND i.status = 'new'
      AND i.last_seen >= g.first_at - make_interval(secs => $5::double precision)
      AND i.occurred_at <= g.last_at + make_interval(secs => $5::double precision)
    ORDER BY i.last_seen DESC
    LIMIT 1
 ) t`;

const FOLD_SQL = `
UPDATE incidents i
   SET count = i.count + u.n,
       last_seen = greatest(i.last_seen, u.last_at),
       occurred_at = least(i.occurred_at, u.first_at),
       updated_at = now()
  FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::timestamptz[]) AS u(id, n, first_at, last_at)
 WHERE i.id = u.id
RETURNING i.*`;

const INSERT_SQL = `
INSERT INTO incidents (idempotency_key, occurred_at, last_seen, count, kind, user_name, device, client_ip, gateway,
                       url, host, category, policy_group, search_terms, note, related_key, severity, fold_key, matched_phrase, identity_source)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[],
                     $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
                     $17::text[], $18::text[], $19::text[], $20::text[])
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id, idempotency_key`;

// One index probe per key whatever the table size: the LIMIT keeps the planner from turning this
// into a hash join over a sequential scan of incidents.
export const SEEN_SQL = `
SELECT k FROM unnest($1::text[]) AS k, LATERAL (SELECT 1 FROM incidents i WHERE i.idempotency_key = k LIMIT 1) hit
UNION ALL
SELECT k FROM unnest($1::text[]) AS k, LATERAL (SELECT 1 FROM incident_folds f WHERE f.idempotency_key = k LIMIT 1) hit`;

// What a write whose COMMIT reply was lost made of keys it sent: the key's own incident ('stored')
// or the incident it was folded into ('repeated'). Index probes per key, as in SEEN_SQL.
export const FOUND_SQL = `
SELECT true AS own, i.* FROM unnest($1::text[]) AS k
 CROSS JOIN LATERAL (SELECT * FROM incidents x WHERE x.idempotency_key = k LIMIT 1) i
UNION ALL
SELECT false AS own, i.* FROM unnest($1::text[]) AS k
 CROSS JOIN LATERAL (SELECT f.incident_id FROM incident_folds f WHERE f.idempotency_key = k LIMIT 1) f
 JOIN incidents i ON i.id = f.incident_id`;

/**
 * The rows to announce for keys a lost write stored: each incident once, and an incident that
 * is announced as new is not announced again for the repeats folded into it.
 */
async function foundRows(tx: Queryable, keys: string[]): Promise<{ stored: IncidentRow[]; repeated: IncidentRow[] }> {
  const rows = (await tx.query<IncidentRow & { own: boolean }>(FOUND_SQL, [keys])).rows;
  const stored = new Map<number, IncidentRow>();
  const repeated = new Map<number, IncidentRow>();
  for (const { own, ...row } of rows) if (own) stored.set(row.id, row);
  for (const { own, ...row } of rows) if (!own && !stored.has(row.id)) repeated.set(row.id, row);
  return { stored: [...stored.values()], repeated: [...repeated.values()] };
}

const FOLDS_SQL = `
INSERT INTO incident_folds (idempotency_key, incident_id, occurred_at, url)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[])`;

/**
 * Writes one batch in one transaction: drops keys already stored, folds repeats within the batch,
 * then into recent rows, inserts the rest, and remembers every folded key.
 */
export async function writeBatch(
  db: Db,
  recs: IncidentRecord[],
  windowMs: number,
  /** True for a record whose key this process made and never sent: it cannot be stored yet. */
  neverSent: (r: IncidentRecord) => boolean = () => false,
): Promise<{ inserted: IncidentRow[]; folded: IncidentRow[]; skipped: number }> {
  const keys = recs.filter((r) => !neverSent(r)).map((r) => r.k); // now, before any await
  return db.transaction(async (tx: Queryable) => {
    const seen = new Set(keys.length ? (await tx.query<{ k: string }>(SEEN_SQL, [keys])).rows.map((r) => r.k) : []);
    // Keys a lost write of ours stored: announced (and counted) now, since nobody has yet.
    const lost = [...new Set(recs.filter((r) => r.u === 1 && seen.has(r.k)).map((r) => r.k))];
    const found = lost.length ? await foundRows(tx, lost) : { stored: [], repeated: [] };
    const fresh: IncidentRecord[] = [];
    for (const r of recs) {
      if (seen.has(r.k)) continue;
      seen.add(r.k); // a key twice in one batch counts once
      fresh.push(r);
    }
    const skipped = recs.length - fresh.length - lost.length;
    if (fresh.length === 0) return { inserted: found.stored, folded: found.repeated, skipped };

    // Fold within the batch: sorted by time, a repeat joins the open group of its key while it is
    // within the window of that group's latest event.
    fresh.sort((a, b) => a.t - b.t);
    const groups: Group[] = [];
    const open = new Map<string, Group>();
    for (const r of fresh) {
      const fk = foldKeyOf(r);
      const g = fk ? open.get(fk) : undefined;
      if (g && r.t - g.lastAt <= windowMs) {
        g.rest.push(r);
        g.lastAt = r.t;
        continue;
      }
      const ng: Group = { first: r, foldKey: fk, rest: [], firstAt: r.t, lastAt: r.t, canFoldIntoDb: fk !== null && !g };
      groups.push(ng);
      if (fk) open.set(fk, ng);
    }

    const folded: IncidentRow[] = [];
    const foldKeys: string[] = [];
    const foldIds: number[] = [];
    const foldAts: string[] = [];
    const foldUrls: Array<string | null> = [];
    const remember = (r: IncidentRecord, id: number) => {
      foldKeys.push(r.k);
      foldIds.push(id);
      foldAts.push(iso(r.t));
      foldUrls.push(r.url);
    };

    // Fold groups into recent rows of the same repeat key.
    const candidates = groups.map((g, idx) => ({ g, idx })).filter(({ g }) => g.canFoldIntoDb);
    const foldedInto = new Map<number, number>();
    if (candidates.length > 0) {
      const found = await tx.query<{ idx: number; id: number }>(FIND_SQL, [
        candidates.map((c) => c.idx),
        candidates.map((c) => c.g.foldKey),
        candidates.map((c) => iso(c.g.firstAt)),
        candidates.map((c) => iso(c.g.lastAt)),
        windowMs / 1000,
      ]);
      const claimed = new Set<number>();
      for (const { idx, id } of found.rows) {
        if (claimed.has(id)) continue; // cannot happen with distinct repeat keys; never count twice if it does
        claimed.add(id);
        foldedInto.set(idx, id);
      }
      if (foldedInto.size > 0) {
        const entries = [...foldedInto];
        const res = await tx.query<IncidentRow>(FOLD_SQL, [
          entries.map(([, id]) => id),
          entries.map(([idx]) => 1 + groups[idx].rest.length),
          entries.map(([idx]) => iso(groups[idx].firstAt)),
          entries.map(([idx]) => iso(groups[idx].lastAt)),
        ]);
        folded.push(...res.rows);
      }
    }

    const toInsert = groups.filter((_, idx) => !foldedInto.has(idx));
    const inserted: IncidentRow[] = [];
    if (toInsert.length > 0) {
      const col = <T>(f: (g: Group) => T) => toInsert.map(f);
      const res = await tx.query<{ id: number; idempotency_key: string }>(INSERT_SQL, [
        col((g) => g.first.k),
        col((g) => iso(g.firstAt)),
        col((g) => iso(g.lastAt)),
        col((g) => 1 + g.rest.length),
        col((g) => g.first.kind),
        col((g) => g.first.user),
        col((g) => g.first.device),
        col((g) => g.first.ip),
        col((g) => g.first.gw),
        col((g) => g.first.url),
        col((g) => g.first.host),
        col((g) => g.first.cat),
        col((g) => g.first.group),
        col((g) => g.first.search),
        col((g) => g.first.note),
        col((g) => g.first.rel),
        col((g) => g.first.sev ?? 'incident'),
        col((g) => g.foldKey),
        col((g) => g.first.ph ?? null),
        col((g) => g.first.src ?? null),
      ]);
      // Another writer stored one of these keys since SEEN_SQL ran: start over and let it be skipped.
      if (res.rows.length !== toInsert.length) throw new ConcurrentKeyError('idempotency key stored concurrently');
      // Rows for the 'stored' event are built here from what was inserted: parsing a full
      // RETURNING * (three timestamps a row) cost more than the INSERT itself.
      const ids = new Map(res.rows.map((r) => [r.idempotency_key, r.id]));
      const now = new Date();
      for (const g of toInsert) {
        const id = ids.get(g.first.k)!;
        inserted.push(rowOf(id, g, now));
        for (const r of g.rest) remember(r, id);
      }
    }
    groups.forEach((g, idx) => {
      const id = foldedInto.get(idx);
      if (id === undefined) return;
      remember(g.first, id);
      for (const r of g.rest) remember(r, id);
    });
    if (foldKeys.length > 0) await tx.query(FOLDS_SQL, [foldKeys, foldIds, foldAts, foldUrls]);
    return { inserted: found.stored.concat(inserted), folded: found.repeated.concat(folded), skipped };
  });
}

function rowOf(id: number, g: Group, now: Date): IncidentRow {
  const r = g.first;
  return {
    id,
    idempotency_key: r.k,
    occurred_at: new Date(g.firstAt),
    last_seen: new Date(g.lastAt),
    count: 1 + g.rest.length,
    kind: r.kind,
    status: 'new',
    severity: r.sev ?? 'incident',
    user_name: r.user,
    device: r.device,
    client_ip: r.ip,
    gateway: r.gw,
    url: r.url,
    host: r.host,
    category: r.cat,
    policy_group: r.group,
    search_terms: r.search,
    note: r.note,
    related_key: r.rel,
    assignee_id: null,
    updated_at: now,
    matched_phrase: r.ph ?? null,
    identity_source: r.src ?? null,
  };
}


// ---------------------------------------------------------------------------------------------
// Retention and health

/**
 * Deletes the incidents in `statuses` last seen before `cutoff`; returns how many, and the span of
 * their occurred_at for the audit record.
 */
export async function deleteIncidentsLastSeenBefore(
  tx: Queryable,
  cutoff: Date,
  statuses: readonly IncidentStatus[],
): Promise<{ deleted: number; oldest: Date | null; newest: Date | null }> {
  const res = await tx.query<{ deleted: number; oldest: Date | null; newest: Date | null }>(
    `WITH d AS (
       DELETE FROM incidents
        WHERE status = ANY ($2::text[]) AND last_seen < $1
       RETURNING occurred_at
     )
     SELECT count(*)::int AS deleted, min(occurred_at) AS oldest, max(occurred_at) AS newest FROM d`,
    [cutoff.toISOString(), [...statuses]],
  );
  return res.rows[0];
}

/**
 * One person's incidents (user, else client address, matched case-insensitively: the expression
 * migration 015 indexes) that occurred in [from, to), oldest first, at most `limit`.
 */
export async function incidentsForPerson(db: Queryable, person: string, from: Date, to: Date, limit: number): Promise<IncidentRow[]> {
  const r = await db.query<IncidentRow>(
    `SELECT ${COLUMNS} FROM incidents
      WHERE lower(coalesce(user_name, client_ip)) = lower($1) AND occurred_at >= $2 AND occurred_at < $3
      ORDER BY occurred_at, id
      LIMIT $4`,
    [person, from.toISOString(), to.toISOString(), limit],
  );
  return r.rows.map(numeric);
}

/** Whether the database answers a trivial query at all (/metrics' schoolgate_database_up). */
export async function databaseAnswers(db: Queryable): Promise<true> {
  await db.query('SELECT 1');
  return true;
}
