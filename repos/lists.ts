/**
 * Every SQL statement on what the console changes about the lists: the sources it added
 * (list_sources), the school's own allow/block entries (list_overrides) and the categories each
 * policy group blocks (policy_groups).
 */
import type { Queryable } from '../db/types';

// ---------------------------------------------------------------------------------------------
// Sources

export interface SourceRow {
  id: number;
  name: string;
  format: string;
  location: string;
  enabled: boolean;
  last_loaded: Date | null;
  entries: number | null;
  skipped: number | null;
}

export async function listSources(db: Queryable): Promise<SourceRow[]> {
  const r = await db.query<SourceRow>('SELECT id, name, format, location, enabled, last_loaded, entries, skipped FROM list_sources ORDER BY id');
  return r.rows.map((s) => ({ ...s, id: Number(s.id) }));
}

export async function getSource(db: Queryable, id: number): Promise<Pick<SourceRow, 'id' | 'name' | 'format' | 'location' | 'enabled'> | null> {
  const r = await db.query<SourceRow>('SELECT id, name, format, location, enabled FROM list_sources WHERE id = $1', [id]);
  return r.rows[0] ? { ...r.rows[0], id: Number(r.rows[0].id) } : null;
}

/** Whether a source has this name, or (when given) reads this location. */
export async function sourceExists(db: Queryable, name: string, location?: string): Promise<boolean> {
  const r = location === undefined
    ? await db.query('SELECT 1 FROM list_sources WHERE name = $1', [name])
    : await db.query('SELECT 1 FROM list_sources WHERE name = $1 OR location = $2', [name, location]);
  return r.rowCount > 0;
}

/** Throws the database's unique violation (23505) when the name was taken meanwhile. */
export async function insertSource(db: Queryable, s: { name: string; format: string; location: string }): Promise<number> {
  const r = await db.query<{ id: number }>('INSERT INTO list_sources (name, format, location) VALUES ($1, $2, $3) RETURNING id', [s.name, s.format, s.location]);
  return Number(r.rows[0].id);
}

export async function deleteSource(db: Queryable, id: number): Promise<void> {
  await db.query('DELETE FROM list_sources WHERE id = $1', [id]);
}

/** Name and location of sources, in the order they were added; `which` narrows it. */
export async function sourceLocations(
  db: Queryable,
  which: 'all' | 'enabled' | 'enabled-remote',
): Promise<Array<{ id: number; name: string; location: string }>> {
  const r = await db.query<{ id: number; name: string; location: string }>(
    which === 'all'
      ? 'SELECT id, name, location FROM list_sources ORDER BY id'
      : which === 'enabled'
        ? 'SELECT id, name, location FROM list_sources WHERE enabled ORDER BY id'
        : "SELECT id, name, location FROM list_sources WHERE enabled AND location ~* '^https?://' ORDER BY id",
  );
  return r.rows.map((s) => ({ ...s, id: Number(s.id) }));
}

export async function countEnabledSources(db: Queryable): Promise<number> {
  const r = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM list_sources WHERE enabled');
  return Number(r.rows[0]?.n ?? 0);
}

/** The figures of the last load that read this source. */
export async function recordSourceLoad(db: Queryable, id: number, figures: { entries: number; skipped: number }): Promise<void> {
  await db.query('UPDATE list_sources SET last_loaded = now(), entries = $2, skipped = $3 WHERE id = $1', [id, figures.entries, figures.skipped]);
}

// ---------------------------------------------------------------------------------------------
// Overrides

export type OverrideAction = 'allow' | 'block';
export type OverrideKind = 'domain' | 'url' | 'expression';

export interface OverrideRow {
  id: number;
  action: OverrideAction;
  kind: OverrideKind;
  entry: string;
  category: string | null;
  reason: string;
  author: string;
  created_at: Date;
}

const OVERRIDE_COLUMNS = 'id, action, kind, entry, category, reason, author, created_at';

/** Newest first, as the console lists them. */
export async function listOverrides(db: Queryable): Promise<OverrideRow[]> {
  const r = await db.query<OverrideRow>(`SELECT ${OVERRIDE_COLUMNS} FROM list_overrides ORDER BY id DESC`);
  return r.rows.map((o) => ({ ...o, id: Number(o.id) }));
}

/** What the list engine compiles, oldest first. */
export async function overrideEntries(db: Queryable): Promise<Array<Pick<OverrideRow, 'action' | 'kind' | 'entry' | 'category'>>> {
  const r = await db.query<OverrideRow>('SELECT action, kind, entry, category FROM list_overrides ORDER BY id');
  return r.rows.map((o) => ({ action: o.action, kind: o.kind, entry: o.entry, category: o.category ?? null }));
}

/**
 * Adds an override. When the same action, kind and entry is there already: 'fail' throws the
 * database's unique violation (23505) for the caller to name; 'keep' returns the existing row
 * unchanged (an unblock request allowing a host the school already allows).
 */
export async function insertOverride(
  db: Queryable,
  o: { action: OverrideAction; kind: OverrideKind; entry: string; category: string | null; reason: string; authorId: number; author: string },
  ifExists: 'fail' | 'keep',
): Promise<OverrideRow> {
  const r = await db.query<OverrideRow>(
    `INSERT INTO list_overrides (action, kind, entry, category, reason, author_id, author) VALUES ($1, $2, $3, $4, $5, $6, $7)
     ${ifExists === 'keep' ? 'ON CONFLICT (action, kind, entry) DO UPDATE SET reason = list_overrides.reason' : ''}
     RETURNING ${OVERRIDE_COLUMNS}`,
    [o.action, o.kind, o.entry, o.category, o.reason, o.authorId, o.author],
  );
  return { ...r.rows[0], id: Number(r.rows[0].id) };
}

/** The row deleted, or null when there was none. */
export async function deleteOverride(db: Queryable, id: number): Promise<OverrideRow | null> {
  const r = await db.query<OverrideRow>(`DELETE FROM list_overrides WHERE id = $1 RETURNING ${OVERRIDE_COLUMNS}`, [id]);
  return r.rows[0] ? { ...r.rows[0], id: Number(r.rows[0].id) } : null;
}

// ---------------------------------------------------------------------------------------------
// Policy groups

export interface PolicyGroupRow {
  name: string;
  categories: string[];
  updated_at: Date;
}

export async function listPolicyGroups(db: Queryable): Promise<PolicyGroupRow[]> {
  return (await db.query<PolicyGroupRow>('SELECT name, categories, updated_at FROM policy_groups ORDER BY name')).rows;
}

export async function setPolicyGroup(db: Queryable, name: string, categories: string[]): Promise<PolicyGroupRow> {
  const r = await db.query<PolicyGroupRow>(
    `INSERT INTO policy_groups (name, categories) VALUES ($1, $2::text[])
     ON CONFLICT (name) DO UPDATE SET categories = EXCLUDED.categories, updated_at = now()
     RETURNING name, categories, updated_at`,
    [name, categories],
  );
  return r.rows[0];
}

// ---------------------------------------------------------------------------------------------
// Change detection

export type ListTable = 'overrides' | 'policy' | 'sources';

/**
 * A short text that changes whenever the table's rows that matter to a gateway change: compared
 * with the one taken when the table was last applied, it finds a change whose NOTIFY was missed.
 */
const FINGERPRINTS: Record<ListTable, string> = {
  overrides: "SELECT count(*) || ':' || coalesce(sum(id), 0) AS fp FROM list_overrides",
  policy: "SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') AS fp FROM policy_groups",
  sources: "SELECT count(*) || ':' || coalesce(string_agg(id || (CASE WHEN enabled THEN 'e' ELSE 'd' END), ',' ORDER BY id), '') AS fp FROM list_sources",
};

export async function listFingerprint(db: Queryable, what: ListTable): Promise<string> {
  const r = await db.query<{ fp: string }>(FINGERPRINTS[what]);
  return String(r.rows[0]?.fp ?? '');
}
