import { mkdtempSync, rmSync } from 'node:fs';
import { expect } from 'vitest';
import os from 'node:os';
import path from 'node:path';
import { openDb } from '../../db/db';
import { migrate } from '../../db/migrate';
import type { Db, Queryable } from '../../db/types';
import { createTestDatabase, postgresMissing } from '../../harness/pg';
import { need } from '../helpers/parts';

export { Relay } from '../../harness/relay';

/**
 * The incident that holds an idempotency key: its own row, or the row a repeat was folded into.
 * Only tests ask by id alone; written apart from repos/incidents.ts getIncidentByKey so that the
 * tests cross-check one against the other.
 */
export async function incidentIdForKey(q: Queryable, key: string): Promise<number | null> {
  const r = await q.query<{ id: number }>(
    `SELECT id FROM incidents WHERE idempotency_key = $1
     UNION ALL
     SELECT incident_id FROM incident_folds WHERE idempotency_key = $1
     LIMIT 1`,
    [key],
  );
  return r.rows[0]?.id ?? null;
}

export const pgSkip = need('PostgreSQL', await postgresMissing());

export interface Opened {
  db: Db;
  dataDir: string;
  url: string | null;
  cleanup: () => Promise<void>;
}

export function tmpDir(prefix = 'sg-inc-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A fresh, migrated database of either kind, with its own data folder. */
export async function openFresh(kind: 'pg' | 'pglite', opts: { migrate?: boolean } = {}): Promise<Opened> {
  const dataDir = tmpDir();
  const tdb = kind === 'pg' ? await createTestDatabase('sg_inc') : null;
  const db = await openDb({ databaseUrl: tdb?.url ?? null, dataDir });
  if (opts.migrate !== false) await migrate(db);
  return {
    db,
    dataDir,
    url: tdb?.url ?? null,
    cleanup: async () => {
      await db.close().catch(() => {});
      await tdb?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export const backends = [
  { kind: 'pglite' as const, skip: null as string | null },
  { kind: 'pg' as const, skip: pgSkip },
];

/** The exactly-once invariant: every key is stored once (as a row or as a fold), and counts add up. */
export async function ledger(db: Db): Promise<{ rows: number; folds: number; sumCount: number; keys: Set<string>; dupKeys: number }> {
  const rows = await db.query<{ idempotency_key: string }>('SELECT idempotency_key FROM incidents');
  const folds = await db.query<{ idempotency_key: string }>('SELECT idempotency_key FROM incident_folds');
  const sum = await db.query<{ s: number | null }>('SELECT sum(count)::int AS s FROM incidents');
  const keys = new Set<string>();
  let dupKeys = 0;
  for (const r of [...rows.rows, ...folds.rows]) {
    if (keys.has(r.idempotency_key)) dupKeys++;
    keys.add(r.idempotency_key);
  }
  return { rows: rows.rows.length, folds: folds.rows.length, sumCount: sum.rows[0].s ?? 0, keys, dupKeys };
}

type Ledger = Awaited<ReturnType<typeof ledger>>;

/** Between two ledgers, exactly `n` incidents arrived: n new keys, counts up by n, no key twice. */
export function expectStoredOnce(before: Ledger, after: Ledger, n: number): void {
  expect(after.dupKeys).toBe(0);
  expect(after.keys.size - before.keys.size).toBe(n);
  expect(after.sumCount - before.sumCount).toBe(n);
}
