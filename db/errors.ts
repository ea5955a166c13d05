import { isSchoolgateError } from '../core/errors';

/**
 * What a failed database call means. Decided here once for every caller (the incident writer,
 * the admin API's error handler, `schoolgate start` and its reconnect loop), so that "the database
 * is down" cannot mean one thing to the console and another to the writer.
 *
 * - 'unavailable': the database cannot be reached now, whatever was asked of it. Waiting helps;
 *   the data is fine. A connection refused (ECONNREFUSED: the server is not listening, which is
 *   unavailable, not 'refused'), reset, cut or timed out; a host or network unreachable; a name
 *   that does not resolve; a connection-class SQLSTATE (08xxx); a server shutting down or
 *   restarting (57P01-57P03); a dead embedded thread or a write that outlived its deadline
 *   (SG_ERR_DB_UNAVAILABLE).
 * - 'retry': a race lost to another writer (unique violation 23505 from a concurrent insert,
 *   serialization failure 40001, deadlock 40P01): the same statement again at once can succeed.
 * - 'refused': the database is up and refuses this data, and always will (SQLSTATE class 22 data
 *   exception, 23 integrity constraint, 54 program limit such as an index row too large). Neither
 *   waiting nor retrying helps: set the data aside for a human.
 * - 'failed': anything else. The database may well be up, but the statement fails whatever the
 *   data: a missing table after a bad deploy, a role without a right, a wrong migration, or an
 *   error that did not come from the database at all.
 *
 * 'retry' and 'refused' are read from the error's own SQLSTATE only: the database said so about
 * this statement. 'unavailable' follows `cause` (see isDbUnreachable).
 */
export type DbFailure = 'unavailable' | 'retry' | 'refused' | 'failed';

const SQLSTATE = /^[0-9A-Z]{5}$/;
const RACE_LOST = new Set(['23505', '40001', '40P01']);
// Class 22: data exception; 23: integrity constraint violation; 54: program limit exceeded.
const DATA_REFUSED = new Set(['22', '23', '54']);
const UNREACHABLE_CODE = /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|08\w{3}|57P0[123])$/;
// pg reports a cut connection and its own timeouts by message, without a code.
const UNREACHABLE_MESSAGE = /Connection terminated|connection timeout|timeout expired/i;

export function classifyDbError(err: unknown): DbFailure {
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string' && SQLSTATE.test(code)) {
    if (RACE_LOST.has(code)) return 'retry';
    if (DATA_REFUSED.has(code.slice(0, 2))) return 'refused';
  }
  return isDbUnreachable(err) ? 'unavailable' : 'failed';
}

/**
 * Whether an error means the database cannot be reached ('unavailable' above), as opposed to a
 * query or a migration that is wrong. Follows `cause`, because callers such as migrate() and the
 * embedded backend wrap what they catch.
 */
export function isDbUnreachable(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (isSchoolgateError(e, 'SG_ERR_DB_UNAVAILABLE')) return true;
    if (UNREACHABLE_CODE.test(String((e as { code?: unknown }).code ?? ''))) return true;
    if (UNREACHABLE_MESSAGE.test(String((e as Error).message ?? ''))) return true;
  }
  return false;
}
