import { readFileSync } from 'node:fs';
import { loadConfig, type CliValues } from '../core/config';
import { isSchoolgateError, SchoolgateError } from '../core/errors';
import { createLogger } from '../core/log';
import { openDbFromConfig } from '../db/db';
import { migrate } from '../db/migrate';
import type { Db } from '../db/types';
import { writeAudit } from '../repos/audit';
import { replaceDevices, replacePeople } from '../repos/people';
import { parseDevicesCsv, parsePeopleCsv, type Problem } from './csv';

const usage = `schoolgate people import FILE.csv    columns: email, name, year group, form (optional), group (the policy group)
schoolgate devices import FILE.csv   columns: mac and/or ip, email (the device's person), name (optional)
An import replaces what the previous import of that kind brought (people from the directory sync stay).
A file with any bad line imports nothing: each bad line is listed with its number and what is wrong.
`;

function readFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new SchoolgateError('SG_ERR_USAGE', `${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function refuse(file: string, problems: Problem[], out: NodeJS.WritableStream): never {
  for (const p of problems) out.write(`${file}:${p.line}: ${p.message}\n`);
  throw new SchoolgateError('SG_ERR_IMPORT', `${problems.length} bad line${problems.length === 1 ? '' : 's'} in ${file}; nothing imported`, { problems });
}

async function withDb<T>(values: CliValues, work: (db: Db) => Promise<T>): Promise<T> {
  const config = loadConfig(values);
  const logger = createLogger({ level: config.logLevel === 'info' ? 'warn' : config.logLevel });
  let db: Db;
  try {
    db = await openDbFromConfig(config, logger);
  } catch (err) {
    if (isSchoolgateError(err, 'SG_ERR_DB_UNAVAILABLE') && typeof err.details?.lockedBy === 'number') {
      throw new SchoolgateError('SG_ERR_DB_LOCKED', `the embedded database in ${config.dataDir} is in use by process ${err.details.lockedBy} (schoolgate start?): imports open the database themselves; stop it for the import, or use PostgreSQL (DATABASE_URL), which both may share`);
    }
    throw err;
  }
  try {
    await migrate(db, { logger });
    return await work(db);
  } finally {
    await db.close();
  }
}

/** `schoolgate people import FILE.csv` */
export async function peopleCommand(args: string[], values: CliValues, out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  const [sub, file] = args;
  if (sub !== 'import' || !file) {
    err.write(usage);
    throw new SchoolgateError('SG_ERR_USAGE', 'people import needs a FILE.csv');
  }
  const { people, problems } = parsePeopleCsv(readFile(file));
  if (problems.length) refuse(file, problems, err);
  // Who was imported is in the people table; the audit log says when, from which file, how many.
  const r = await withDb(values, async (db) => {
    const done = await replacePeople(db, 'csv', people);
    await writeAudit(db, { actor: { id: null, email: 'cli' }, action: 'people_import', target: 'people', details: { file, people: people.length, removed: done.removed } });
    return done;
  });
  out.write(`imported ${people.length} people from ${file}${r.removed ? `; ${r.removed} no longer listed removed` : ''}\n`);
  return 0;
}

/** `schoolgate devices import FILE.csv` */
export async function devicesCommand(args: string[], values: CliValues, out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  const [sub, file] = args;
  if (sub !== 'import' || !file) {
    err.write(usage);
    throw new SchoolgateError('SG_ERR_USAGE', 'devices import needs a FILE.csv');
  }
  const { devices, problems } = parseDevicesCsv(readFile(file));
  if (problems.length) refuse(file, problems, err);
  const n = await withDb(values, async (db) => {
    const done = await replaceDevices(db, devices);
    await writeAudit(db, { actor: { id: null, email: 'cli' }, action: 'devices_import', target: 'devices', details: { file, devices: done } });
    return done;
  });
  out.write(`imported ${n} devices from ${file} (a running gateway names their people within a minute)\n`);
  return 0;
}
