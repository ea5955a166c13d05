/**
 * What the console does to incidents beyond storing them: the triage rules (which status may follow
 * which, what closing needs) and the CSV export's format. The SQL they run is in repos/incidents.ts.
 */
import { SchoolgateError, type ErrorCode } from '../core/errors';
import { localDateTime } from '../core/local-time';
import type { IncidentKind, IncidentStatus } from '../core/vocabulary';
import type { Queryable } from '../db/types';
import { activeUserEmail } from '../repos/accounts';
import { writeAudit, type Actor } from '../repos/audit';
import {
  addIncidentEvent, exportDetails, exportRows, getIncident, setIncidentTriage, type ExportDetails, type IncidentFilter, type IncidentRow,
} from '../repos/incidents';

// ---------------------------------------------------------------------------------------------
// Triage

/** Where a reopened incident goes: open again, and in someone's hands rather than back among the new. */
export const REOPENED: IncidentStatus = 'in_review';

/**
 * Allowed status changes, the one table the API, the bulk route and the console (vocab.js) follow.
 * The DSL may close straight from new (most blocks are an advert or a mistyped address: looking
 * first and closing second was two saves for nothing); a closed incident can be reopened.
 * Closing and reopening both need a note (needsNote).
 */
export const TRANSITIONS: Record<IncidentStatus, IncidentStatus[]> = {
  new: ['in_review', 'closed', 'false_positive'],
  in_review: ['escalated', 'closed', 'false_positive'],
  escalated: ['in_review', 'closed', 'false_positive'],
  closed: [REOPENED],
  false_positive: [REOPENED],
};

export const CLOSING: ReadonlySet<IncidentStatus> = new Set(['closed', 'false_positive']);

/** A change into or out of a closed status is a decision someone must be able to read the reason for. */
export function needsNote(from: IncidentStatus, to: IncidentStatus): boolean {
  return CLOSING.has(to) || CLOSING.has(from);
}

/** A change that takes a closed (or false-positive) incident back into the queue. */
export function isReopen(from: IncidentStatus, to: IncidentStatus): boolean {
  return CLOSING.has(from) && !CLOSING.has(to);
}

export interface IncidentChange {
  status?: IncidentStatus;
  /** null unassigns. */
  assigneeId?: number | null;
  note?: string;
}

/**
 * Applies a triage change to a row it locks, inside a transaction the caller holds (so it stands or
 * falls with the caller's other changes), writing one history event per thing changed. Throws
 * SG_ERR_NOT_FOUND, SG_ERR_TRANSITION or SG_ERR_VALIDATION.
 */
export async function applyIncidentChange(tx: Queryable, id: number, change: IncidentChange, actor: Actor): Promise<IncidentRow> {
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
    if (!allowed.includes(change.status)) {
      throw new SchoolgateError('SG_ERR_TRANSITION', `${row.status} → ${change.status} (allowed: ${allowed.join(', ') || 'none'})`);
    }
    if (needsNote(row.status, change.status) && !note) {
      throw new SchoolgateError('SG_ERR_TRANSITION', `${row.status} → ${change.status} needs a note saying why`);
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

/** The kinds a self-report may name as what it is about (the block the person was shown). */
export const LINKABLE_KINDS: readonly IncidentKind[] = ['blocked'];

/**
 * A triage change and its audit row in the caller's transaction, so no change is on record without
 * who made it. Reopening is audited as its own action (`incident_reopen`): it undoes a decision.
 * The note itself stays in the incident's history, which only the DSL reads; the audit log (the
 * auditor's) says a note was given, not what it said.
 */
export async function auditedIncidentChange(
  tx: Queryable,
  id: number,
  change: IncidentChange,
  actor: Actor,
  extra: Record<string, unknown> = {},
): Promise<IncidentRow> {
  const before = await getIncident(tx, id, { forUpdate: true });
  const row = await applyIncidentChange(tx, id, change, actor);
  const from = before?.status ?? row.status;
  await writeAudit(tx, {
    actor,
    action: isReopen(from, row.status) ? 'incident_reopen' : 'incident_update',
    target: `incident:${row.id}`,
    details: { from, status: change.status, assigneeId: change.assigneeId, note: change.note !== undefined && change.note.trim() !== '', ...extra },
  });
  return row;
}

/** At most this many incidents in one bulk change (ten pages of the queue). */
export const BULK_MAX = 500;

/** Why one incident of a bulk change could not take it. */
export interface BulkFailure {
  id: number;
  code: ErrorCode;
  message: string;
}

/** What a single incident can refuse; anything else (the database) fails the request as itself. */
const PER_INCIDENT: ReadonlySet<ErrorCode> = new Set(['SG_ERR_TRANSITION', 'SG_ERR_NOT_FOUND', 'SG_ERR_VALIDATION']);

/**
 * The same change to several incidents, all or nothing: one transaction, each incident changed and
 * audited as if changed alone (its audit row says `bulk`). If any incident cannot take the change
 * nothing is changed and the SG_ERR_TRANSITION thrown lists every refusal (details.failures), so
 * the DSL can deselect those and apply again, rather than untangle which half went through.
 * Rows are locked in id order, so two bulk changes never deadlock each other.
 */
export function bulkIncidentChange(
  db: { transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> },
  ids: readonly number[],
  change: IncidentChange,
  actor: Actor,
): Promise<IncidentRow[]> {
  const sorted = [...new Set(ids)].sort((a, b) => a - b);
  if (sorted.length === 0) throw new SchoolgateError('SG_ERR_VALIDATION', 'no incidents selected');
  if (sorted.length > BULK_MAX) throw new SchoolgateError('SG_ERR_VALIDATION', `at most ${BULK_MAX} incidents at once (${sorted.length} selected)`);
  return db.transaction(async (tx) => {
    const changed: IncidentRow[] = [];
    const failures: BulkFailure[] = [];
    for (const id of sorted) {
      try {
        changed.push(await auditedIncidentChange(tx, id, change, actor, { bulk: sorted.length }));
      } catch (err) {
        if (!(err instanceof SchoolgateError) || !PER_INCIDENT.has(err.code)) throw err;
        failures.push({ id, code: err.code, message: err.message });
      }
    }
    if (failures.length > 0) {
      throw new SchoolgateError(
        'SG_ERR_TRANSITION',
        `nothing was changed: ${failures.length} of ${sorted.length} selected incidents cannot take this change ` +
          `(${failures.slice(0, 10).map((f) => `#${f.id}`).join(', ')}${failures.length > 10 ? ', …' : ''}; each in details.failures)`,
        { failures },
      );
    }
    return changed;
  });
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
