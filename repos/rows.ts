/** What every repository does to the rows it returns and the pages it cuts. */
import { SchoolgateError } from '../core/errors';

/** ids and counts as numbers whichever driver answered (pg may hand back int8 as strings). */
export function numeric<T extends { id: unknown }>(row: T): T {
  const r = row as Record<string, unknown>;
  for (const k of ['id', 'count', 'assignee_id', 'incident_id', 'actor_id']) {
    if (r[k] !== null && r[k] !== undefined) r[k] = Number(r[k]);
  }
  for (const k of ['occurred_at', 'last_seen', 'updated_at', 'at']) {
    if (r[k] !== null && r[k] !== undefined && !(r[k] instanceof Date)) r[k] = new Date(r[k] as string);
  }
  return row;
}

export function encodeCursor(id: number): string {
  return Buffer.from(`i:${id}`).toString('base64url');
}

export function decodeCursor(cursor: string): number {
  const m = /^i:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m) throw new SchoolgateError('SG_ERR_VALIDATION', 'cursor is not one this API issued');
  return Number(m[1]);
}
