import { execFile } from 'node:child_process';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config';
import { silentLogger } from '../../core/log';
import { startSchoolgate, type SchoolgateHandle } from '../../server/start';
import { commandMissing, need } from '../helpers/parts';
import { postgresMissing, createTestDatabase } from '../../harness/pg';
import { tempDir, waitFor } from './fixtures';
import { makeLists } from '../../harness/lists';

/**
 * The production set-up: DATABASE_URL pointing at a real PostgreSQL server. A block through the
 * gateway and the report filed from its block page land in that server, read back over a separate
 * connection as the console would.
 */

const run = promisify(execFile);
const skip = need('PostgreSQL', await postgresMissing()) !== null || need('curl', commandMissing('curl', 'curl')) !== null;

describe.skipIf(skip)('the gateway writing incidents to PostgreSQL (DATABASE_URL)', () => {
  const tmp = tempDir('sg-e2e-pg-');
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let gw: SchoolgateHandle;
  let client: pg.Client;

  beforeAll(async () => {
    database = await createTestDatabase('sg_e2e_gw');
    const lists = makeLists({ gambling: { name: 'Gambling/Casino games', domains: ['casino.test'] } }, path.join(tmp.dir, 'lists'));
    const config = loadConfig(
      { 'data-dir': path.join(tmp.dir, 'data'), lists: [lists], categories: 'gambling', 'proxy-port': '0', 'admin-port': '0', listen: '127.0.0.1' },
      { DATABASE_URL: database.url },
      tmp.dir,
    );
    expect(config.databaseUrl).toBe(database.url);
    gw = await startSchoolgate(config, { logger: silentLogger, out: new PassThrough() });
    client = new pg.Client({ connectionString: database.url });
    await client.connect();
  });

  afterAll(async () => {
    await client?.end();
    await gw?.close();
    await database?.drop();
    tmp.remove();
  });

  const curl = async (args: string[]) => {
    const { stdout } = await run('curl', ['-sS', '--max-time', '15', '-x', `http://127.0.0.1:${gw.proxyPort}`, '-w', '\n%{http_code}', ...args]);
    const i = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) };
  };

  it('stores the block and the self-report filed from its page in PostgreSQL', async () => {
    expect(gw.db.kind).toBe('pg');
    const page = await curl(['http://casino.test/poker']);
    expect(page.status).toBe(403);
    const ref = /name="ref" value="([^"]+)"/.exec(page.body)![1];
    const key = /<code>([0-9a-f-]{36})<\/code>/.exec(page.body)![1];
    const action = /<form method="post" action="([^"]+)"/.exec(page.body)![1];
    // Through the proxy, as a browser sends it: the form names the gateway's own name.
    const report = await curl(['-X', 'POST', '--data', new URLSearchParams({ ref, type: 'self_report', note: 'clicked an advert' }).toString(), action]);
    expect(report.status).toBe(200);

    const rows = await waitFor(async () => {
      const r = await client.query<{ kind: string; url: string; category: string; note: string | null; related_key: string | null; idempotency_key: string }>(
        'SELECT kind, url, category, note, related_key, idempotency_key FROM incidents WHERE idempotency_key = $1 OR related_key = $1 ORDER BY id',
        [key],
      );
      return r.rows.length === 2 ? r.rows : null;
    }, 'both incidents in PostgreSQL');
    expect(rows[0]).toMatchObject({ kind: 'blocked', url: 'http://casino.test/poker', category: 'gambling', idempotency_key: key });
    expect(rows[1]).toMatchObject({ kind: 'self_report', url: 'http://casino.test/poker', category: 'gambling', note: 'clicked an advert', related_key: key });
  });
});
