/** The contract between the incident store and its writers (gateway, admin API) and readers. */

// Defined once in core/vocabulary.ts (the repositories below this layer name them too); here for
// the writer's callers, who read the rest of the incident contract from this file.
export { INCIDENT_KINDS, INCIDENT_STATUSES, REPORT_KINDS } from '../core/vocabulary';
export { TIERS } from '../core/vocabulary';
export { IDENTITY_SOURCES } from '../core/vocabulary';
export type { IdentitySource, IncidentKind, IncidentStatus, ReportKind, Tier } from '../core/vocabulary';
import type { IdentitySource, IncidentKind, Tier } from '../core/vocabulary';

/**
 * Repeats within this window (of the incident's latest attempt) fold into its row, which counts
 * them and lists each attempt (incidents/writer.ts, repos/incidents.ts foldKeyOf): a person's
 * blocks on one site, or the same flagged search. The config's incidentFoldMinutes sets it.
 */
export const REPEAT_WINDOW_MS = 30 * 60_000;

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
  /** What it costs the DSL (default 'incident'); 'alert' incidents alert once, when stored. */
  severity?: Tier;
  /** The safeguarding phrase that flagged a search, as written in its list: what the DSL reads first. */
  matchedPhrase?: string | null;
  /** Which source named the person (filter/identify.ts's precedence); absent or null: not recorded. */
  identitySource?: IdentitySource | null;
}

/** What the request path holds: never blocks, awaits or throws. */
export interface IncidentSink {
  /** Returns the incident's idempotency key. */
  record(incident: IncidentInput): string;
}

/** One row of `incidents`; defined with the SQL that reads and writes it. */
export type { IncidentRow } from '../repos/incidents';

/**
 * Events IncidentWriter emits after each committed batch:
 * - 'stored' (rows: IncidentRow[]): new incidents (rows built from what was inserted, ids included),
 *   once each: a write whose COMMIT reply was lost is announced by the retry that finds it stored
 *   (then as the row reads at that moment);
 * - 'repeated' (rows: IncidentRow[]): existing incidents whose count and last_seen rose, as stored;
 * - 'rejected' (count: number): incidents the database refused, kept in <data-dir>/spool/rejected.ndjson.
 * A repeat folded into an incident keeps its own idempotency key in `incident_folds`; use
 * `getIncidentByKey()` (repos/incidents.ts) to find the incident for any key.
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
