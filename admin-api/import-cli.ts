import { readFileSync } from 'node:fs';
import { loadConfig, type CliValues } from '../core/config';
import { SchoolgateError } from '../core/errors';
import { createLogger } from '../core/log';
import { openDbFromConfig } from '../db/db';
import { migrate } from '../db/migrate';
import type { Db } from '../db/types';
import { importCsv, importProblems, type ImportKind } from '../directory/import';
import { controlCaller, lockHolder } from './cli';

const usage = `schoolgate people import FILE.csv    columns: email, name, year group, form (optional), group (the policy group)
schoolgate devices import FILE.csv   columns: mac and/or ip, email (the device's person), name (optional)
An import replaces what the previous import of that kind brought (people from the directory sync stay).
A file with any bad line imports nothing: each bad line is listed with its number and what is wrong.
While \`schoolgate start\` runs on the same data folder (embedded database), the import goes through it.
`;

/**
 * `schoolgate people import FILE.csv` and `devices import FILE.csv`: the file is checked here
 * first (each bad line reported, nothing imported); a clean file goes into the database, or,
 * while `schoolgate start` holds the embedded database, to the server over its control socket.
 */
async function importCommand(kind: ImportKind, args: string[], values: CliValues, out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const [sub, file] = args;
  if (sub !== 'import' || !file) {
    err.write(usage);
    throw new SchoolgateError('SG_ERR_USAGE', `${kind} import needs a FILE.csv`);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new SchoolgateError('SG_ERR_USAGE', `${file} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const problems = importProblems(kind, text);
  if (problems.length) {
    for (const p of problems) err.write(`${file}:${p.line}: ${p.message}\n`);
    throw new SchoolgateError('SG_ERR_IMPORT', `${problems.length} bad line${problems.length === 1 ? '' : 's'} in ${file}; nothing imported`);
  }
  const config = loadConfig(values);
  const logger = createLogger({ level: config.logLevel === 'info' ? 'warn' : config.logLevel });
  let result: { imported: number; removed: number };
  let db: Db | null = null;
  let holder: number | null = null;
  try {
    db = await openDbFromConfig(config, logger);
  } catch (e) {
    holder = lockHolder(e);
    if (holder === null || config.databaseUrl) throw e;
  }
  if (db) {
    try {
      await migrate(db, { logger });
      result = await importCsv(db, kind, text, file);
    } finally {
      await db.close();
    }
  } else {
    result = await controlCaller(config, holder!)<{ imported: number; removed: number }>('POST', '/api/control/import', { kind, csv: text, file });
  }
  out.write(
    kind === 'people'
      ? `imported ${result.imported} people from ${file}${result.removed ? `; ${result.removed} no longer listed removed` : ''}\n`
      : `imported ${result.imported} devices from ${file} (a running gateway names their people within a minute)\n`,
  );
  return 0;
}

export const peopleCommand = (args: string[], values: CliValues) => importCommand('people', args, values, process.stdout, process.stderr);
export const devicesCommand = (args: string[], values: CliValues) => importCommand('devices', args, values, process.stdout, process.stderr);
