/**
 * A school day through the real gateway (issue #13): what the safeguarding lead's queue, the
 * alerts and the browsing log hold after 24 pupils browse everyday sites with the requests a
 * browser makes, and a few do something concerning. Prints, for each target:
 *   - concerns found in the queue naming the person (target: all)
 *   - queue size against concerns (target: at most 1.2x)
 *   - alert emails sent against alerting concerns (target: one each)
 *   - everyday school pages blocked (target: none)
 *   - browsing-log rows and bytes
 *
 *   node --import=tsx bench/school-day.ts [--pupils 24] [--sites 12] [--postgres]
 *
 * Not timed: it measures what the DSL sees, not speed. A smaller day is asserted in
 * test/e2e/school-day.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createTestDatabase } from '../harness/pg';
import { runSchoolDay } from '../harness/school-day';

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { pupils: { type: 'string', default: '24' }, sites: { type: 'string', default: '12' }, postgres: { type: 'boolean', default: false } } });
const dir = mkdtempSync(path.join(os.tmpdir(), 'sg-school-day-'));
const pg = values.postgres ? await createTestDatabase() : null;
const day = await runSchoolDay({
  dir, pupils: Math.max(20, Number(values.pupils) || 24), sitesPerPupil: Math.max(1, Number(values.sites) || 12),
  ut1: path.resolve(here, '..', 'shared', 'blocklists', 'ut1'), databaseUrl: pg?.url,
});
try {
  const found = day.concerns.filter((c) => c.found).length;
  console.log(`bench/school-day: ${day.pupils} pupils, ${day.requests} requests (${day.everydayNavigations} everyday pages with their parts), ${day.concerns.length} concerns, ${values.postgres ? 'PostgreSQL' : 'PGlite'}`);
  for (const c of day.concerns) console.log(`  ${c.found ? 'found ' : 'MISSED'} ${c.what.padEnd(24)} ${c.user}  (${c.incidents} incident${c.incidents === 1 ? '' : 's'})`);
  console.log(`  concerns found naming the person: ${found}/${day.concerns.length}  target all: ${found === day.concerns.length ? 'MET' : 'MISSED'}`);
  const ratio = day.queue / day.concerns.length;
  console.log(`  queue: ${day.queue} incidents for ${day.concerns.length} concerns = ${ratio.toFixed(2)}x  target <= 1.2x: ${ratio <= 1.2 ? 'MET' : 'MISSED'}`);
  console.log(`  alerts sent: ${day.alertsSent} for ${day.alertingConcerns} alerting concerns  target one each: ${day.alertsSent === day.alertingConcerns ? 'MET' : 'MISSED'}`);
  console.log(`  everyday pages blocked: ${day.everydayBlocked.length}${day.everydayBlocked.length ? ` (${[...new Set(day.everydayBlocked)].join(', ')})` : ''}  target none: ${day.everydayBlocked.length === 0 ? 'MET' : 'MISSED'}`);
  const log = await day.gateway.db
    .query<{ rows: string; bytes: string }>(`SELECT count(*)::text AS rows, pg_total_relation_size('browsing_log')::text AS bytes FROM browsing_log`)
    .then((r) => r.rows[0])
    .catch(() => null);
  console.log(log ? `  browsing log: ${log.rows} rows, ${log.bytes} bytes on disk (${(Number(log.bytes) / day.requests).toFixed(0)} bytes a request)` : '  browsing log: none (no browsing_log table)');
  const byKind = new Map<string, number>();
  for (const i of day.queueItems) byKind.set(`${i.kind}/${i.category ?? '-'}/${i.severity ?? '-'}`, (byKind.get(`${i.kind}/${i.category ?? '-'}/${i.severity ?? '-'}`) ?? 0) + 1);
  console.log(`  queue by kind/category/severity: ${[...byKind].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}`);
} finally {
  await day.close();
  await pg?.drop();
  rmSync(dir, { recursive: true, force: true });
}
