import { rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config';
import { silentLogger } from '../../core/log';
import { startSchoolgate, type SchoolgateHandle } from '../../server/start';
import { need } from '../helpers/parts';
import { postgresMissing, createTestDatabase } from '../../harness/pg';
import { fixtureLists, refFrom, tmpDir, viaProxy } from './helpers';

const skip = need('PostgreSQL server', await postgresMissing()) !== null;

describe.skipIf(skip)('schoolgate start on PostgreSQL (DATABASE_URL)', () => {
  let sg: SchoolgateHandle;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  const dirs: string[] = [];

  beforeAll(async () => {
    database = await createTestDatabase('sg_gateway');
    const dataDir = tmpDir();
    const lists = fixtureLists();
    dirs.push(dataDir, lists);
    const config = loadConfig({ 'data-dir': dataDir, lists: [lists], categories: 'testblock', 'proxy-port': '0', 'admin-port': '0' }, { DATABASE_URL: database.url });
    sg = await startSchoolgate(config, { logger: silentLogger, out: new Writable({ write: (_c, _e, cb) => cb() }) });
  });
  afterAll(async () => {
    await sg?.close();
    await database?.drop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('records blocks and self-reports in the PostgreSQL database', async () => {
    expect(sg.db.kind).toBe('pg');
    const page = await viaProxy(sg.proxyPort, 'http://www.blocked.test/page');
    expect(page.status).toBe(403);
    const res = await fetch(`http://127.0.0.1:${sg.adminPort}/block/report`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ ref: refFrom(page.body)!, type: 'self_report' }).toString(),
    });
    expect(res.status).toBe(200);
    await sg.incidents.flush();
    const rows = (await sg.db.query<{ kind: string; host: string; related_key: string | null; idempotency_key: string }>(
      'SELECT kind, host, related_key, idempotency_key FROM incidents ORDER BY id',
    )).rows;
    expect(rows.map((r) => [r.kind, r.host])).toEqual([['blocked', 'www.blocked.test'], ['self_report', 'www.blocked.test']]);
    expect(rows[1].related_key).toBe(rows[0].idempotency_key);
  });
});
