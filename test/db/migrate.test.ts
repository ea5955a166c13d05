import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDb } from '../../db/db';
import { migrate, readMigrations } from '../../db/migrate';
import type { Db } from '../../db/types';
import { createTestDatabase } from '../../harness/pg';
import { projectRoot } from '../helpers/parts';
import { pgSkip, tmpDir } from '../incidents/helpers';

const files = readMigrations();

describe.skipIf(pgSkip !== null)('migrations on PostgreSQL', () => {
  let tdb: Awaited<ReturnType<typeof createTestDatabase>>;
  const dbs: Db[] = [];
  beforeAll(async () => {
    tdb = await createTestDatabase('sg_migrate');
  });
  afterAll(async () => {
    for (const d of dbs) await d.close().catch(() => {});
    await tdb?.drop();
  });

  it('lets only one of several processes apply each migration when they start together', async () => {
    for (let i = 0; i < 4; i++) dbs.push(await openDb({ databaseUrl: tdb.url, dataDir: tmpDir() }));
    const results = await Promise.all(dbs.map((d) => migrate(d)));
    const applied = results.flatMap((r) => r.applied).sort();
    expect(applied).toEqual(files.map((f) => f.name).sort());
    for (const r of results) expect(r.current).toBe(files[files.length - 1].version);
    const rows = await dbs[0].query<{ n: number }>('SELECT count(*) AS n FROM schema_migrations');
    expect(rows.rows[0].n).toBe(files.length);
  });

  it('`schoolgate migrate` reports what it applied, then that nothing is left, and refuses a newer database', async () => {
    const fresh = await createTestDatabase('sg_migrate_cli');
    try {
      const run = () =>
        spawnSync(process.execPath, ['--import=tsx', 'bin/schoolgate.ts', 'migrate', '--data-dir', tmpDir()], {
          cwd: projectRoot,
          env: { ...process.env, DATABASE_URL: fresh.url },
          encoding: 'utf8',
          timeout: 60_000,
        });
      const first = run();
      expect(first.status, first.stderr).toBe(0);
      expect(first.stdout).toContain(`applied ${files.map((f) => f.name).join(', ')}`);
      const second = run();
      expect(second.status).toBe(0);
      expect(second.stdout).toContain('schema up to date');

      const db = await openDb({ databaseUrl: fresh.url, dataDir: tmpDir() });
      await db.query("INSERT INTO schema_migrations (version, name, checksum) VALUES (999, '999_future.sql', 'x')");
      await db.close();
      const third = run();
      expect(third.status).toBe(1);
      expect(third.stderr).toContain('SG_ERR_DB_TOO_NEW');
    } finally {
      await fresh.drop();
    }
  });
});
