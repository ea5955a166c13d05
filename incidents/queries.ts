/**
 * The SQL the admin console runs. Parameterised only: filters add fixed fragments whose values
 * travel as $n parameters. Ordering is (occurred_at DESC, id DESC) everywhere so the
 * incidents_time / incidents_status_time indexes serve both the order and the keyset cursor.
 */
import { SchoolgateError } from '../core/errors';
import type { Queryable } from '../db/types';
import type { IncidentKind, IncidentRow, IncidentStatus } from './types';

export type { IncidentRow };

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
  /** Exact user name (staff see only their own: the route sets this to their email). */
  user?: string;
  from?: Date;
  /** Exclusive upper bound. */
  to?: Date;
  /** Case-insensitive substring of url, host, user, device, search terms, note or client IP. */
  q?: string;
}

const COLUMNS = `id, idempotency_key, occurred_at, last_seen, count, kind, status, user_name, device, client_ip,
  gateway, url, host, category, policy_group, search_terms, note, related_key, assignee_id, updated_at`;

/** ids and counts as numbers whichever driver answered (pg may hand back int8 as strings). */
function numeric<T extends { id: unknown }>(row: T): T {
  const r = row as Record<string, unknown>;
  for (const k of ['id', 'count', 'assignee_id', 'incident_id', 'actor_id']) {
    if (r[k] !== null && r[k] !== undefined) r[k] = Number(r[k]);
  }
  for (const k of ['occurred_at', 'last_seen', 'updated_at', 'at']) {
    if (r[k] !== null && r[k] !== undefined && !(r[k] instanceof Date)) r[k] = new Date(r[k] as string);
  }
  return row;
}

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
  if (f.user !== undefined) where.push(`user_name = ${p(f.user)}`);
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

export function encodeCursor(id: number): string {
  return Buffer.from(`i:${id}`).toString('base64url');
}

export function decodeCursor(cursor: string): number {
  const m = /^i:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new SchoolgateError('SG_ERR_VALIDATION', 'cursor is not one this API issued');
  return Number(m[1]);
}

/** One page, newest first; nextCursor is null on the last page. */
export async function listIncidents(
  db: Queryable,
  f: IncidentFilter,
  page: { cursor?: string | null; limit: number },
): Promise<{ rows: IncidentRow[]; nextCursor: string | null }> {
  const params: unknown[] = [];
  const where = filterSql(f, params);
  if (page.cursor) {
    params.push(decodeCursor(page.cursor));
    // The cursor names the last row seen; its own (occurred_at, id) is the exact keyset bound.
    where.push(`(occurred_at, id) < (SELECT c.occurred_at, c.id FROM incidents c WHERE c.id = $${params.length})`);
  }
  params.push(page.limit + 1);
  const sql = `SELECT ${COLUMNS} FROM incidents ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
    ORDER BY occurred_at DESC, id DESC LIMIT $${params.length}`;
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

/** The block a report refers to, and the reports that refer to this block (incidents_related index). */
export async function relatedIncidents(db: Queryable, row: IncidentRow): Promise<IncidentRow[]> {
  const r = await db.query<IncidentRow>(
    `SELECT ${COLUMNS} FROM incidents WHERE (related_key = $1 OR idempotency_key = $2) AND id <> $3 ORDER BY occurred_at, id LIMIT 100`,
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

// ---------------------------------------------------------------------------------------------
// Triage

/** Allowed status changes; closing (closed / false_positive) also needs a note. */
export const TRANSITIONS: Record<IncidentStatus, IncidentStatus[]> = {
  new: ['in_review'],
  in_review: ['escalated', 'closed', 'false_positive'],
  escalated: ['in_review', 'closed', 'false_positive'],
  closed: [],
  false_positive: [],
};

export const CLOSING: ReadonlySet<IncidentStatus> = new Set(['closed', 'false_positive']);

export interface IncidentChange {
  status?: IncidentStatus;
  /** null unassigns. */
  assigneeId?: number | null;
  note?: string;
}

export interface Actor {
  id: number | null;
  email: string;
}

/**
 * Applies a triage change in one transaction with the row locked, writing one history event per
 * thing changed. Throws SG_ERR_NOT_FOUND, SG_ERR_TRANSITION or SG_ERR_VALIDATION.
 */
export async function updateIncident(
  db: { transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> },
  id: number,
  change: IncidentChange,
  actor: Actor,
  opts: { allowDirectClose?: boolean } = {},
): Promise<IncidentRow> {
  const note = change.note?.trim() || undefined;
  if (change.status === undefined && change.assigneeId === undefined && note === undefined) {
    throw new SchoolgateError('SG_ERR_VALIDATION', 'nothing to change: give status, assigneeId or note');
  }
  return db.transaction(async (tx) => {
    const row = await getIncident(tx, id, { forUpdate: true });
    if (!row) throw new SchoolgateError('SG_ERR_NOT_FOUND', `incident ${id}`);
    const event = (action: string, from: string | null, to: string | null, text: string | null) =>
      tx.query(
        'INSERT INTO incident_events (incident_id, actor_id, actor, action, from_status, to_status, note) VALUES ($1, $2, $3, $4, $5, $6, $7)',
        [id, actor.id, actor.email, action, from, to, text],
      );

    let status = row.status;
    if (change.status !== undefined && change.status !== row.status) {
      const allowed = TRANSITIONS[row.status] ?? [];
      const direct = opts.allowDirectClose && row.status === 'new' && CLOSING.has(change.status);
      if (!allowed.includes(change.status) && !direct) {
        throw new SchoolgateError('SG_ERR_TRANSITION', `${row.status} → ${change.status} (allowed: ${allowed.join(', ') || 'none'})`);
      }
      if (CLOSING.has(change.status) && !note) {
        throw new SchoolgateError('SG_ERR_TRANSITION', `${change.status} needs a note saying why`);
      }
      status = change.status;
    }

    let assignee = row.assignee_id;
    if (change.assigneeId !== undefined && change.assigneeId !== row.assignee_id) {
      let label = 'nobody';
      if (change.assigneeId !== null) {
        const u = await tx.query<{ email: string }>('SELECT email FROM users WHERE id = $1 AND NOT disabled', [change.assigneeId]);
        if (!u.rows[0]) throw new SchoolgateError('SG_ERR_VALIDATION', `assignee ${change.assigneeId} is not an active user`);
        label = u.rows[0].email;
      }
      assignee = change.assigneeId;
      await event('assign', null, null, `assigned to ${label}`);
    }

    if (status !== row.status) await event('status', row.status, status, note ?? null);
    else if (note) await event('note', null, null, note);

    const r = await tx.query<IncidentRow>(
      `UPDATE incidents SET status = $2, assignee_id = $3, updated_at = now() WHERE id = $1 RETURNING ${COLUMNS}`,
      [id, status, assignee],
    );
    return numeric(r.rows[0]);
  });
}

// ---------------------------------------------------------------------------------------------
// Stats

export interface Stats {
  perDay: Array<{ day: string; category: string | null; count: number }>;
  perStatus: Array<{ status: string; count: number }>;
  perCategory: Array<{ category: string | null; count: number }>;
}

/**
 * Activity (perDay, perCategory) counts every request, repeats folded into a row included;
 * perStatus counts incidents, since that is the size of the triage queue.
 */
const knownZones = new Set<string>(['UTC']);

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
  if (!knownZones.has(zone)) {
    // pg_timezone_names reads the zone files: slow enough to ask once per zone, not per request.
    const known = await db.query('SELECT 1 FROM pg_timezone_names WHERE name = $1', [zone]);
    if (known.rowCount === 0) throw new SchoolgateError('SG_ERR_VALIDATION', `unknown time zone ${zone}`);
    knownZones.add(zone);
  }
  const dayParams = [...params, zone];
  const [perDay, perStatus, perCategory] = await Promise.all([
    db.query<{ day: string; category: string | null; count: number | string }>(
      // Days as the school counts them: a block at 00:30 BST belongs to that morning, not the day before.
      `SELECT to_char(occurred_at AT TIME ZONE $${dayParams.length}, 'YYYY-MM-DD') AS day, category, sum(count) AS count
         FROM incidents WHERE ${where} GROUP BY 1, 2 ORDER BY 1, 2`,
      dayParams,
    ),
    db.query<{ status: string; count: number | string }>(
      `SELECT status, count(*) AS count FROM incidents WHERE ${where} GROUP BY 1 ORDER BY 1`,
      params,
    ),
    db.query<{ category: string | null; count: number | string }>(
      `SELECT category, sum(count) AS count FROM incidents WHERE ${where} GROUP BY 1 ORDER BY 2 DESC, 1`,
      params,
    ),
  ]);
  return {
    perDay: perDay.rows.map((r) => ({ day: r.day, category: r.category, count: Number(r.count) })),
    perStatus: perStatus.rows.map((r) => ({ status: r.status, count: Number(r.count) })),
    perCategory: perCategory.rows.map((r) => ({ category: r.category, count: Number(r.count) })),
  };
}

// ---------------------------------------------------------------------------------------------
// CSV export

export const CSV_COLUMNS = [
  'id', 'occurred_at', 'last_seen', 'count', 'kind', 'status', 'category', 'user', 'device', 'client_ip',
  'policy_group', 'host', 'url', 'search_terms', 'note',
] as const;

/**
 * Quotes every field; a leading = + - @ (or tab/CR) gets an apostrophe so a spreadsheet opening
 * the export never runs a URL or note typed by a pupil as a formula.
 */
export function csvField(v: unknown): string {
  let s = v === null || v === undefined ? '' : v instanceof Date ? v.toISOString() : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return `"${s.replace(/"/g, '""')}"`;
}

export function csvLine(row: IncidentRow): string {
  return [
    row.id, row.occurred_at, row.last_seen, row.count, row.kind, row.status, row.category, row.user_name, row.device,
    row.client_ip, row.policy_group, row.host, row.url, row.search_terms, row.note,
  ].map(csvField).join(',');
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

// ---------------------------------------------------------------------------------------------
// Audit log

export interface AuditEntry {
  actor: Actor;
  action: string;
  target?: string | null;
  details?: Record<string, unknown> | null;
}

export async function writeAudit(db: Queryable, e: AuditEntry): Promise<void> {
  await db.query('INSERT INTO audit_log (actor_id, actor, action, target, details) VALUES ($1, $2, $3, $4, $5)', [
    e.actor.id,
    e.actor.email,
    e.action,
    e.target ?? null,
    e.details ? JSON.stringify(e.details) : null,
  ]);
}

export interface AuditRow {
  id: number;
  at: Date;
  actor: string;
  action: string;
  target: string | null;
  details: Record<string, unknown> | null;
}

export async function listAudit(
  db: Queryable,
  page: { cursor?: string | null; limit: number; action?: string; target?: string; actor?: string },
): Promise<{ rows: AuditRow[]; nextCursor: string | null }> {
  const params: unknown[] = [];
  const where: string[] = [];
  if (page.cursor) {
    params.push(decodeCursor(page.cursor));
    where.push(`id < $${params.length}`);
  }
  if (page.action) {
    params.push(page.action);
    where.push(`action = $${params.length}`);
  }
  if (page.target) {
    params.push(page.target);
    where.push(`target = $${params.length}`);
  }
  if (page.actor) {
    params.push(page.actor);
    where.push(`lower(actor) = lower($${params.length})`);
  }
  params.push(page.limit + 1);
  const r = await db.query<AuditRow>(
    `SELECT id, at, actor, action, target, details FROM audit_log ${where.length ? 'WHERE ' + where.join(' AND ') : ''}
      ORDER BY id DESC LIMIT $${params.length}`,
    params,
  );
  const rows = r.rows.map((row) => {
    numeric(row);
    if (typeof row.details === 'string') row.details = JSON.parse(row.details);
    return row;
  });
  const more = rows.length > page.limit;
  if (more) rows.length = page.limit;
  return { rows, nextCursor: more ? encodeCursor(rows[rows.length - 1].id) : null };
}
