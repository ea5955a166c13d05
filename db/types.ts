/** The contract between the database layer (db/) and everything that stores or reads through it. */

export interface QueryResult<T> {
  rows: T[];
  rowCount: number;
}

export interface Queryable {
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<T>>;
}

/**
 * One small interface over `pg` and PGlite: nothing above it knows which one it has.
 * Parameters are $1, $2...; int8 (ids, count(*)) comes back as a JS number and timestamptz as a
 * Date in both. SQL without parameters may hold several statements (migrations use that).
 */
export interface Db extends Queryable {
  readonly kind: 'pg' | 'pglite';
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** LISTEN; returns a function that unlistens. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  notify(channel: string, payload: string): Promise<void>;
  close(): Promise<void>;
}
