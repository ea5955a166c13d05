import { SchoolgateError } from '../core/errors';
import type { Db } from '../db/types';
import { writeAudit } from '../repos/audit';
import { replaceDevices, replacePeople } from '../repos/people';
import { parseDevicesCsv, parsePeopleCsv, type Problem } from './csv';

export type ImportKind = 'people' | 'devices';

/** The file's problems, or none: the CLI reports them itself before any database is opened. */
export function importProblems(kind: ImportKind, text: string): Problem[] {
  return kind === 'people' ? parsePeopleCsv(text).problems : parseDevicesCsv(text).problems;
}

/**
 * Imports a clean MIS export (checked again here: the server's control route takes the text too),
 * replacing the previous import of its kind, and audits it: when, from which file, how many.
 */
export async function importCsv(db: Db, kind: ImportKind, text: string, file: string): Promise<{ imported: number; removed: number }> {
  const actor = { id: null, email: 'cli' };
  if (kind === 'people') {
    const { people, problems } = parsePeopleCsv(text);
    if (problems.length) throw new SchoolgateError('SG_ERR_IMPORT', `${problems.length} bad lines in ${file}; nothing imported`);
    const done = await replacePeople(db, 'csv', people);
    await writeAudit(db, { actor, action: 'people_import', target: 'people', details: { file, people: people.length, removed: done.removed } });
    return { imported: people.length, removed: done.removed };
  }
  const { devices, problems } = parseDevicesCsv(text);
  if (problems.length) throw new SchoolgateError('SG_ERR_IMPORT', `${problems.length} bad lines in ${file}; nothing imported`);
  const n = await replaceDevices(db, devices);
  await writeAudit(db, { actor, action: 'devices_import', target: 'devices', details: { file, devices: n } });
  return { imported: n, removed: 0 };
}
