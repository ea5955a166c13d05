import { describe, expect, it } from 'vitest';
import { SchoolgateError } from '../../core/errors';
import { classifyDbError, isDbUnreachable } from '../../db/errors';

const e = (code?: string, message = 'x', cause?: unknown) => Object.assign(new Error(message, { cause }), code ? { code } : {});

describe('classifyDbError', () => {
  it('a connection that cannot be made or is lost is unavailable, a refused connection included', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', '08006', '57P01', '57P03']) {
      expect(classifyDbError(e(code)), code).toBe('unavailable');
    }
    expect(classifyDbError(e(undefined, 'Connection terminated unexpectedly'))).toBe('unavailable');
    expect(classifyDbError(new SchoolgateError('SG_ERR_DB_UNAVAILABLE', 'embedded database thread died'))).toBe('unavailable');
    // Wrapped, as migrate() wraps what it catches.
    expect(classifyDbError(new SchoolgateError('SG_ERR_MIGRATION', 'failed', undefined, { cause: e('ECONNREFUSED') }))).toBe('unavailable');
  });

  it('a race lost is retried; data the database rejects is refused; anything else failed', () => {
    for (const code of ['23505', '40001', '40P01']) expect(classifyDbError(e(code)), code).toBe('retry');
    for (const code of ['22021', '23514', '54000']) expect(classifyDbError(e(code)), code).toBe('refused');
    expect(classifyDbError(e('42P01'))).toBe('failed'); // table missing: the statement, not the data
    expect(classifyDbError(e('42501'))).toBe('failed'); // a role without the right
    expect(classifyDbError(e())).toBe('failed');
    expect(classifyDbError(null)).toBe('failed');
  });

  it('isDbUnreachable is the unavailable case, following causes', () => {
    expect(isDbUnreachable(e('08001'))).toBe(true);
    expect(isDbUnreachable(e('XX000', 'wrapped', e('ECONNRESET')))).toBe(true);
    expect(isDbUnreachable(e('42P01'))).toBe(false);
    expect(isDbUnreachable(undefined)).toBe(false);
  });
});
