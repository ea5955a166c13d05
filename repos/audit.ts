/** The audit log: who did what to which incident, account or list. Written by every layer that acts for a person. */
import type { Queryable } from '../db/types';
import { decodeCursor, encodeCursor, numeric } from './rows';

/** Who acted: a console account, or a named system actor (id null: 'cli', 'system', 'schoolgate'). */
export interface Actor {
  id: number | null;
  email: string;
}

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
