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
  /** Null: everyone; else only people in this policy group. */
  policy_group: string | null;
  /** Null: until deleted. */
  expires_at: Date | null;
  /** Whether expires_at has passed, by the database's clock (the one every gateway asks). */
  expired: boolean;
}

const OVERRIDE_COLUMNS = 'id, action, kind, entry, category, reason, author, created_at, policy_group, expires_at, (expires_at IS NOT NULL AND expires_at <= now()) AS expired';
const toRow = (o: OverrideRow): OverrideRow => ({ ...o, id: Number(o.id), policy_group: o.policy_group ?? null, expires_at: o.expires_at ?? null, expired: Boolean(o.expired) });

/** Newest first, as the console lists them (expired ones included, marked). */
export async function listOverrides(db: Queryable): Promise<OverrideRow[]> {
  const r = await db.query<OverrideRow>(`SELECT ${OVERRIDE_COLUMNS} FROM list_overrides ORDER BY id DESC`);
  return r.rows.map(toRow);
}

export type ActiveOverride = Pick<OverrideRow, 'action' | 'kind' | 'entry' | 'category'> & { group: string | null };

/**
 * What the list engine compiles, oldest first: the entries not yet expired, and in how many
 * milliseconds (by the database's clock) the next of them expires, or null when none will.
 */
export async function activeOverrides(db: Queryable): Promise<{ entries: ActiveOverride[]; nextExpiryMs: number | null }> {
  const r = await db.query<OverrideRow & { next_ms: number | null }>(
    `SELECT action, kind, entry, category, policy_group,
            CASE WHEN expires_at IS NULL THEN NULL ELSE extract(epoch FROM (expires_at - now())) * 1000 END AS next_ms
       FROM list_overrides
      WHERE expires_at IS NULL OR expires_at > now()
      ORDER BY id`,
  );
  const next = r.rows.map((o) => o.next_ms).filter((ms): ms is number => ms !== null).map(Number);
  return {
    entries: r.rows.map((o) => ({ action: o.action, kind: o.kind, entry: o.entry, category: o.category ?? null, group: o.policy_group ?? null })),
    nextExpiryMs: next.length ? Math.min(...next) : null,
  };
}

export interface NewOverride {
  action: OverrideAction;
  kind: OverrideKind;
  entry: string;
  category: string | null;
  reason: string;
  authorId: number;
  author: string;
  group?: string | null;
  expiresAt?: Date | null;
}

/** An expired row gives way to the new one; a live one stays (no row returned). */
const REPLACE_EXPIRED = `DO UPDATE SET category = EXCLUDED.category, reason = EXCLUDED.reason, author_id = EXCLUDED.author_id,
       author = EXCLUDED.author, created_at = now(), expires_at = EXCLUDED.expires_at
     WHERE list_overrides.expires_at IS NOT NULL AND list_overrides.expires_at <= now()`;
/** An expired row is renewed; a live one keeps its reason and takes the later expiry (none is latest). */
const KEEP_LIVE = `DO UPDATE SET
       reason = CASE WHEN list_overrides.expires_at <= now() THEN EXCLUDED.reason ELSE list_overrides.reason END,
       created_at = CASE WHEN list_overrides.expires_at <= now() THEN now() ELSE list_overrides.created_at END,
       expires_at = CASE WHEN list_overrides.expires_at <= now() THEN EXCLUDED.expires_at
                         WHEN list_overrides.expires_at IS NULL OR EXCLUDED.expires_at IS NULL THEN NULL
                         ELSE greatest(list_overrides.expires_at, EXCLUDED.expires_at) END`;

/**
 * Adds an override. An expired row with the same action, kind, entry and group is replaced. When
 * a live one is there already: 'fail' returns null for the caller to name; 'keep' returns it with
 * the later of the two expiries (an unblock request allowing a host the school already allows).
 */
export async function insertOverride(db: Queryable, o: NewOverride, ifExists: 'fail' | 'keep'): Promise<OverrideRow | null> {
  const r = await db.query<OverrideRow>(
    `INSERT INTO list_overrides (action, kind, entry, category, reason, author_id, author, policy_group, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (action, kind, entry, (coalesce(policy_group, ''))) ${ifExists === 'keep' ? KEEP_LIVE : REPLACE_EXPIRED}
     RETURNING ${OVERRIDE_COLUMNS}`,
    [o.action, o.kind, o.entry, o.category, o.reason, o.authorId, o.author, o.group ?? null, o.expiresAt ? o.expiresAt.toISOString() : null],
  );
  return r.rows[0] ? toRow(r.rows[0]) : null;
}

/** The row deleted, or null when there was none. */
export async function deleteOverride(db: Queryable, id: number): Promise<OverrideRow | null> {
  const r = await db.query<OverrideRow>(`DELETE FROM list_overrides WHERE id = $1 RETURNING ${OVERRIDE_COLUMNS}`, [id]);
  return r.rows[0] ? toRow(r.rows[0]) : null;
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
  // An entry replaced in place, or passing its expiry, changes it too: a gateway whose own expiry
  // timer did not run (a clock jump, a suspended VM) catches up at the periodic check.
  overrides: `SELECT count(*) || ':' || md5(coalesce(string_agg(id || '|' || created_at::text || '|' || coalesce(expires_at::text, '') || '|'
                || (expires_at IS NOT NULL AND expires_at <= now())::text, ',' ORDER BY id), '')) AS fp FROM list_overrides`,
  policy: "SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') AS fp FROM policy_groups",
  sources: "SELECT count(*) || ':' || coalesce(string_agg(id || (CASE WHEN enabled THEN 'e' ELSE 'd' END), ',' ORDER BY id), '') AS fp FROM list_sources",
};

export async function listFingerprint(db: Queryable, what: ListTable): Promise<string> {
  const r = await db.query<{ fp: string }>(FINGERPRINTS[what]);
  return String(r.rows[0]?.fp ?? '');
}
