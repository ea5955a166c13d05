/**
 * What the console does to incidents beyond storing them: the triage rules (which status may follow
 * which, what closing needs) and the CSV export's format. The SQL they run is in repos/incidents.ts.
 */
import { SchoolgateError } from '../core/errors';
import { localDateTime } from '../core/local-time';
import type { IncidentStatus } from '../core/vocabulary';
import type { Queryable } from '../db/types';
import { activeUserEmail } from '../repos/accounts';
import type { Actor } from '../repos/audit';
import {
  addIncidentEvent, exportDetails, exportRows, getIncident, setIncidentTriage, type ExportDetails, type IncidentFilter, type IncidentRow,
} from '../repos/incidents';

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

/**
 * Applies a triage change in one transaction with the row locked, writing one history event per
 * thing changed. Throws SG_ERR_NOT_FOUND, SG_ERR_TRANSITION or SG_ERR_VALIDATION.
 */
export function updateIncident(
  db: { transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> },
  id: number,
  change: IncidentChange,
  actor: Actor,
  opts: { allowDirectClose?: boolean } = {},
): Promise<IncidentRow> {
  return db.transaction((tx) => applyIncidentChange(tx, id, change, actor, opts));
}

/** updateIncident inside a transaction the caller holds, for a change that must stand or fall with others. */
export async function applyIncidentChange(
  tx: Queryable,
  id: number,
  change: IncidentChange,
  actor: Actor,
  opts: { allowDirectClose?: boolean } = {},
): Promise<IncidentRow> {
  const note = change.note?.trim() || undefined;
  if (change.status === undefined && change.assigneeId === undefined && note === undefined) {
    throw new SchoolgateError('SG_ERR_VALIDATION', 'nothing to change: give status, assigneeId or note');
  }
  const row = await getIncident(tx, id, { forUpdate: true });
  if (!row) throw new SchoolgateError('SG_ERR_NOT_FOUND', `incident ${id}`);
  const event = (action: string, from: string | null, to: string | null, text: string | null) =>
    addIncidentEvent(tx, { incidentId: id, actor, action, from, to, note: text });

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
      const email = await activeUserEmail(tx, change.assigneeId);
      if (email === null) throw new SchoolgateError('SG_ERR_VALIDATION', `assignee ${change.assigneeId} is not an active user`);
      label = email;
    }
    assignee = change.assigneeId;
    await event('assign', null, null, `assigned to ${label}`);
  }

  if (status !== row.status) await event('status', row.status, status, note ?? null);
  else if (note) await event('note', null, null, note);

  return setIncidentTriage(tx, id, status, assignee);
}

// ---------------------------------------------------------------------------------------------
// CSV export

/**
 * The export's columns. Times are the school's wall clock (`timeZone`), dd/mm/yyyy HH:MM:SS as a UK
 * spreadsheet reads them; the header names the zone. `outcome` is the note the incident was closed
 * with; `dsl_notes` every triage note, one a line, each dated and signed.
 */
export function csvColumns(timeZone: string): string[] {
  return [
    'id', `occurred_at (${timeZone})`, `last_seen (${timeZone})`, 'count', 'kind', 'status', 'outcome', 'assignee', 'category', 'category_name',
    'user', 'device', 'client_ip', 'policy_group', 'host', 'url', 'search_terms', 'reporter_note', 'dsl_notes',
  ];
}

/**
 * Quotes every field; a leading = + - @ (or tab/CR) gets an apostrophe so a spreadsheet opening
 * the export never runs a URL or note typed by a pupil as a formula.
 */
export function csvField(v: unknown): string {
  let s = v === null || v === undefined ? '' : v instanceof Date ? v.toISOString() : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return `"${s.replace(/"/g, '""')}"`;
}

export interface CsvOptions {
  timeZone: string;
  /** The category's friendly English name (the app's own naming, e.g. UT1 `NAME EN`), or null. */
  categoryName: (category: string | null) => string | null;
}

export function csvLine(row: IncidentRow, details: ExportDetails, o: CsvOptions): string {
  const notes = details.notes.get(row.id) ?? [];
  const closing = CLOSING.has(row.status) ? notes.filter((n) => n.action === 'status' && n.to_status === row.status).at(-1) : undefined;
  const dslNotes = notes
    .filter((n) => n.action !== 'assign') // the assignee has its own column
    .map((n) => `${localDateTime(n.at, o.timeZone)} ${n.actor}: ${n.note}`)
    .join('\n');
  return [
    row.id, localDateTime(row.occurred_at, o.timeZone), localDateTime(row.last_seen ?? row.occurred_at, o.timeZone), row.count, row.kind, row.status,
    closing?.note ?? '', details.assignees.get(row.id) ?? '', row.category, o.categoryName(row.category), row.user_name, row.device,
    row.client_ip, row.policy_group, row.host, row.url, row.search_terms, row.note, dslNotes,
  ].map(csvField).join(',');
}

/** The export's lines, header first: at most `max` incidents, fetched and detailed a page at a time. */
export async function* csvLines(db: Queryable, filter: IncidentFilter, o: CsvOptions, max?: number): AsyncGenerator<string> {
  // Zone names are letters, digits and _+-/ (core/local-time.ts): the header needs no quoting.
  yield csvColumns(o.timeZone).join(',');
  let batch: IncidentRow[] = [];
  const flush = async function* () {
    const details = await exportDetails(db, batch.map((r) => r.id));
    for (const r of batch) yield csvLine(r, details, o);
    batch = [];
  };
  for await (const row of exportRows(db, filter, max)) {
    batch.push(row);
    if (batch.length >= 500) yield* flush();
  }
  if (batch.length) yield* flush();
}
