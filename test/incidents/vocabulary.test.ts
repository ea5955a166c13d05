// Kinds, statuses and roles are spelled once in TypeScript, but the database enforces its own copy
// in the migrations' CHECK constraints. Read that copy from a freshly migrated database (not the
// SQL text: a later migration may replace a constraint) so that adding a value on one side only
// fails here rather than as a refused INSERT in a school.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROLES } from '../../admin-api/auth';
import { IDENTITY_SOURCES } from '../../core/vocabulary';
import { INCIDENT_KINDS, INCIDENT_STATUSES, TIERS } from '../../incidents/types';
import { UNBLOCK_OUTCOMES } from '../../core/vocabulary';
import { openFresh, type Opened } from './helpers';

/** The values of the CHECK (column IN (...)) constraint on table.column. */
async function checkValues(o: Opened, table: string, column: string): Promise<string[]> {
  const r = await o.db.query<{ def: string }>(
    `SELECT pg_get_constraintdef(c.oid) AS def
       FROM pg_constraint c
       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
      WHERE c.contype = 'c' AND c.conrelid = $1::regclass AND a.attname = $2`,
    [table, column],
  );
  expect(r.rows, `one CHECK constraint on ${table}.${column}`).toHaveLength(1);
  // PostgreSQL prints IN (...) back as  = ANY (ARRAY['a'::text, 'b'::text]).
  return [...r.rows[0].def.matchAll(/'((?:[^']|'')*)'::text/g)].map((m) => m[1].replace(/''/g, "'")).sort();
}

describe('the database allows exactly the kinds, statuses, severity tiers and roles the code defines', () => {
  let o: Opened;
  beforeAll(async () => {
    o = await openFresh('pglite');
  });
  afterAll(async () => {
    await o?.cleanup();
  });

  it('incidents.kind', async () => {
    expect(await checkValues(o, 'incidents', 'kind')).toEqual([...INCIDENT_KINDS].sort());
  });
  it('incidents.status', async () => {
    expect(await checkValues(o, 'incidents', 'status')).toEqual([...INCIDENT_STATUSES].sort());
  });
  it('incidents.severity', async () => {
    expect(await checkValues(o, 'incidents', 'severity')).toEqual([...TIERS].sort());
  });
  it('incidents.identity_source', async () => {
    expect(await checkValues(o, 'incidents', 'identity_source')).toEqual([...IDENTITY_SOURCES].sort());
  });
  it('users.role', async () => {
    expect(await checkValues(o, 'users', 'role')).toEqual([...ROLES].sort());
  });
  it('unblock_decisions.outcome', async () => {
    expect(await checkValues(o, 'unblock_decisions', 'outcome')).toEqual([...UNBLOCK_OUTCOMES].sort());
  });
});
