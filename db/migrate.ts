import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SchoolgateError, isSchoolgateError } from '../core/errors';
import { silentLogger, type Logger } from '../core/log';
import type { Db, Queryable } from './types';

export const defaultMigrationsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'migrations');

/** Any fixed number: it only has to be the same in every schoolgate process. */
const MIGRATION_LOCK_KEY = 0x5c4001;

export interface MigrationFile {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export function readMigrations(dir = defaultMigrationsDir): MigrationFile[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new SchoolgateError('SG_ERR_MIGRATION', `cannot read ${dir}: ${(err as Error).message}`);
  }
  const files: MigrationFile[] = [];
  const seen = new Map<number, string>();
  for (const name of names.sort()) {
    const m = /^(\d+)_[\w.-]+\.sql$/.exec(name);
    if (!m) continue;
    const version = Number(m[1]);
    if (seen.has(version)) throw new SchoolgateError('SG_ERR_MIGRATION', `${name} and ${seen.get(version)} share number ${version}`);
    seen.set(version, name);
    const sql = readFileSync(path.join(dir, name), 'utf8');
    files.push({ version, name, sql, checksum: createHash('sha256').update(sql).digest('hex') });
  }
  return files.sort((a, b) => a.version - b.version);
}

interface AppliedRow {
  version: number;
  name: string;
  checksum: string;
}

/**
 * Applies pending migrations in order, each in its own transaction under an advisory lock so that
 * two processes starting together never both apply one. Refuses a database newer than the files.
 */
export async function migrate(db: Db, opts: { dir?: string; logger?: Logger } = {}): Promise<{ applied: string[]; current: number }> {
  const logger = opts.logger ?? silentLogger;
  const files = readMigrations(opts.dir);
  const newestKnown = files.length ? files[files.length - 1].version : 0;
  const applied: string[] = [];
  let checked = false;

  for (;;) {
    let step: { current: number; done: boolean };
    try {
      step = await db.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
        await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
          version    integer PRIMARY KEY,
          name       text NOT NULL,
          checksum   text NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now()
        )`);
        const rows = (await tx.query<AppliedRow>('SELECT version, name, checksum FROM schema_migrations ORDER BY version')).rows;
        const done = new Map(rows.map((r) => [r.version, r]));
        const current = rows.length ? rows[rows.length - 1].version : 0;
        if (current > newestKnown) {
          throw new SchoolgateError(
            'SG_ERR_DB_TOO_NEW',
            `the database is at migration ${current} (${done.get(current)?.name}) but this schoolgate knows up to ${newestKnown}; upgrade schoolgate`,
            { current, known: newestKnown },
          );
        }
        if (!checked) {
          checked = true;
          for (const f of files) {
            const row = done.get(f.version);
            if (row && row.checksum !== f.checksum) logger.warn({ migration: f.name }, 'migration file changed after it was applied');
          }
        }
        const next = files.find((f) => !done.has(f.version));
        if (!next) return { current, done: true };
        try {
          await tx.query(next.sql);
        } catch (err) {
          throw new SchoolgateError('SG_ERR_MIGRATION', `${next.name}: ${(err as Error).message}`, { migration: next.name }, { cause: err });
        }
        await tx.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [next.version, next.name, next.checksum]);
        applied.push(next.name);
        logger.info({ migration: next.name }, 'migration applied');
        return { current: next.version, done: false };
      });
    } catch (err) {
      if (isSchoolgateError(err)) throw err;
      throw new SchoolgateError('SG_ERR_MIGRATION', (err as Error)?.message ?? String(err), undefined, { cause: err });
    }
    if (step.done) {
      await retrySearchIndex(db, files, logger);
      return { applied, current: step.current };
    }
  }
}

const SEARCH_MIGRATION = 11;

/**
 * Whether migration 011 built its index. Asked here rather than through incidents/queries.ts's
 * searchIndexed (the same question) because db/ sits below incidents/ and imports none of it.
 */
async function searchIndexBuilt(db: Queryable): Promise<boolean> {
  const r = await db.query<{ ok: boolean }>(`SELECT to_regclass('incidents_search_trgm') IS NOT NULL AS ok`);
  return r.rows[0]?.ok === true;
}

/**
 * Migration 011 builds the search index only where pg_trgm can be created. Where it could not
 * (contrib not installed, a role without the right), each later run (every `start`, `migrate`)
 * tries 011 again once the extension is available, so installing it is all a school has to do.
 */
async function retrySearchIndex(db: Db, files: ReturnType<typeof readMigrations>, logger: Logger): Promise<void> {
  const file = files.find((f) => f.version === SEARCH_MIGRATION);
  if (!file) return;
  const r = await db.query<{ applied: boolean; available: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1) AS applied,
            EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') AS available`,
    [SEARCH_MIGRATION],
  );
  const { applied, available } = r.rows[0];
  if (!applied || !available || (await searchIndexBuilt(db))) return;
  logger.info({ migration: file.name }, 'pg_trgm is now available: building the incident search index');
  try {
    await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
      if (await searchIndexBuilt(tx)) return; // another process built it meanwhile
      await tx.query(file.sql);
    });
  } catch (err) {
    // Search works unindexed: a failed build must not stop the server starting.
    logger.warn({ migration: file.name, err: (err as Error).message }, 'incident search index not built; search stays unindexed');
  }
}
