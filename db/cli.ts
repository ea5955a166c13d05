import { loadConfig, type CliValues } from '../core/config';
import { createLogger } from '../core/log';
import { openDbFromConfig } from '../db/db';
import { migrate } from '../db/migrate';

/**
 * `schoolgate migrate`: applies pending migrations and says what it did. Beside the runner it
 * drives (db/ owns the schema), so migrating needs nothing of the incident or console code.
 */
export async function migrateCommand(_args: string[], values: CliValues): Promise<number> {
  const config = loadConfig(values);
  const logger = createLogger({ level: config.logLevel });
  const db = await openDbFromConfig(config, logger);
  try {
    const { applied, current } = await migrate(db, { logger });
    const where = config.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : `embedded database in ${config.dataDir}`;
    if (applied.length === 0) process.stdout.write(`${where}: schema up to date at migration ${current}\n`);
    else process.stdout.write(`${where}: applied ${applied.join(', ')}; now at migration ${current}\n`);
    return 0;
  } finally {
    await db.close();
  }
}
