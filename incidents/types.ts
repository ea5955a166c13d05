/** The contract between the incident store and its writers (gateway, admin API) and readers. */

export type IncidentKind = 'blocked' | 'self_report' | 'flagged_search' | 'unblock_request';
export type IncidentStatus = 'new' | 'in_review' | 'escalated' | 'closed' | 'false_positive';

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

export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

export interface Queryable {
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<T>>;
}

/** One small interface over `pg` and PGlite: nothing above it knows which one it has. */
export interface Db extends Queryable {
  readonly kind: 'pg' | 'pglite';
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** LISTEN; returns a function that unlistens. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  notify(channel: string, payload: string): Promise<void>;
  close(): Promise<void>;
}

/** What the request path holds: never blocks, awaits or throws. */
export interface IncidentSink {
  /** Returns the incident's idempotency key. */
  record(incident: IncidentInput): string;
}
