/** The contract between the incident store and its writers (gateway, admin API) and readers. */

// The one spelling of each set: the writer, the routes' JSON schemas and the console (served as
// /console/vocab.js) use these, and test/incidents/vocabulary.test.ts fails when the migrations'
// CHECK constraints say otherwise, so a new kind or status is added here and in a migration.
export const INCIDENT_KINDS = ['blocked', 'self_report', 'flagged_search', 'unblock_request'] as const;
export type IncidentKind = (typeof INCIDENT_KINDS)[number];
export const INCIDENT_STATUSES = ['new', 'in_review', 'escalated', 'closed', 'false_positive'] as const;
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number];
/** The kinds a person files from the block page (a person's own words: never folded). */
/**
 * Repeats of a blocked or flagged request (same kind, URL and person) within this window fold
 * into the first one's incident row, which counts them (incidents/writer.ts).
 */
export const REPEAT_WINDOW_MS = 60_000;

export const REPORT_KINDS = ['self_report', 'unblock_request'] as const satisfies readonly IncidentKind[];
export type ReportKind = (typeof REPORT_KINDS)[number];

export interface IncidentInput {
  /** Unique per incident; the writer makes one when absent. Replays use it to never store twice. */
  idempotencyKey?: string;
  occurredAt?: Date;
  kind: IncidentKind;
  user?: string | null;
  device?: string | null;
  clientIp?: string | null;
  gateway?: string | null;
  url?: string | null;
  host?: string | null;
  category?: string | null;
  policyGroup?: string | null;
  searchTerms?: string | null;
  note?: string | null;
  /** Idempotency key of the block a self-report or unblock request refers to. */
  relatedKey?: string | null;
}

/** What the request path holds: never blocks, awaits or throws. */
export interface IncidentSink {
  /** Returns the incident's idempotency key. */
  record(incident: IncidentInput): string;
}

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
}

/**
 * Events IncidentWriter emits after each committed batch:
 * - 'stored' (rows: IncidentRow[]): new incidents (rows built from what was inserted, ids included),
 *   once each: a write whose COMMIT reply was lost is announced by the retry that finds it stored
 *   (then as the row reads at that moment);
 * - 'repeated' (rows: IncidentRow[]): existing incidents whose count and last_seen rose, as stored;
 * - 'rejected' (count: number): incidents the database refused, kept in <data-dir>/spool/rejected.ndjson.
 * A repeat folded into an incident keeps its own idempotency key in `incident_folds`; use
 * `incidentIdForKey()` (incidents/writer.ts) to find the incident for any key.
 */
export type IncidentWriterEvent = 'stored' | 'repeated' | 'rejected';

/** What `IncidentWriter.stats()` reports. */
export interface WriterStats {
  /** Recorded, in memory, not yet in the database or the spool. */
  queued: number;
  /** In the spool file, waiting for the database. */
  spooled: number;
  /** Incidents (repeats included) the database has accepted since start. */
  stored: number;
  /** Database writes that failed (each failure sends its batch to the spool). */
  failures: number;
  /** Incidents the database refused outright (bad data); kept in spool/rejected.ndjson. */
  rejected: number;
  /** Incidents lost because the in-memory queue was full (database and spool both failing). */
  dropped: number;
  /** Journal appends that failed (disk full, permission): those incidents were in memory only until stored. */
  journalFailures: number;
}
