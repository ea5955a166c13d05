/**
 * Issue #11 point 14: GET /healthz (lists loaded, database reachable, incident queue depth; 200
 * when the gateway can filter and record, 503 when not) and Prometheus metrics at /metrics.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken, createUser } from '../../admin-api/auth';
import { silentLogger } from '../../core/log';
import { openDb } from '../../db/db';
import { createMetrics } from '../../admin-api/metrics';
import type { SchoolgateHandle } from '../../server/start';
import { need } from '../helpers/parts';
import { postgresMissing, createTestDatabase } from '../../harness/pg';
import { Relay } from '../../harness/relay';
import { startOrigin, startTestGateway, viaProxy, type Origin } from '../proxy/helpers';
import { call, harness, type Harness } from './helpers';

/** One sample's value from Prometheus text, or undefined when the series is absent. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    if (line.slice(0, i) === series) return Number(line.slice(i + 1));
  }
  return undefined;
}

describe('/healthz and /metrics on the admin API', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it('/healthz is 200 with lists, database and queue depth when all is well, and names nobody', async () => {
    h.writer.record({ kind: 'blocked', url: 'http://casino.example/', host: 'casino.example', category: 'gambling', user: 'pupil@school.example', clientIp: '10.0.0.9' });
    await h.writer.flush();
    const res = await h.app.inject({ url: '/healthz' });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({
      status: 'ok',
      lists: { loaded: true, entries: 4, categories: 3 },
      database: { reachable: true },
      incidents: { queued: 0, spooled: 0, dropped: 0 },
    });
    expect(res.body).not.toMatch(/pupil|10\.0\.0\.9|casino/);
  });

  it('/metrics is for the network manager and the DSL (a token or a session), not for anonymous callers or other roles', async () => {
    h.writer.record({ kind: 'blocked', url: 'http://casino.example/x', host: 'casino.example', category: 'gambling', user: 'pupil@school.example', clientIp: '10.0.0.9' });
    await h.writer.flush();
    expect((await h.app.inject({ url: '/metrics' })).statusCode).toBe(401);
    expect((await call(h, 'staff', 'GET', '/metrics')).statusCode).toBe(403);
    expect((await call(h, 'auditor', 'GET', '/metrics')).statusCode).toBe(403);
    const made = await call(h, 'network_manager', 'POST', '/api/tokens', { name: 'prometheus' });
    expect(made.statusCode, made.body).toBe(200);
    const res = await h.app.inject({ url: '/metrics', headers: { authorization: `Bearer ${made.json().token}` } });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    const text = res.body;
    expect(sample(text, 'schoolgate_database_up')).toBe(1);
    expect(sample(text, 'schoolgate_lists_loaded')).toBe(1);
    expect(sample(text, 'schoolgate_list_entries')).toBe(4);
    expect(sample(text, 'schoolgate_list_categories')).toBe(3);
    expect(sample(text, 'schoolgate_incidents_queued')).toBe(0);
    expect(sample(text, 'schoolgate_incidents_stored_total')).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'schoolgate_incidents_dropped_total')).toBe(0);
    expect(text).toMatch(/^schoolgate_list_version_info\{version="[0-9a-f]{12}"\} 1$/m);
    expect(sample(text, 'schoolgate_lists_last_reload_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 3600);
    expect(text).toContain('schoolgate_process_resident_memory_bytes');
    expect(text).not.toMatch(/pupil|school\.example|10\.0\.0\.9/);
    expect((await call(h, 'safeguarding_lead', 'GET', '/metrics')).statusCode).toBe(200);
  });

  it('two apps in one process keep their own registries (no duplicate-metric error, no shared values)', async () => {
    const other = await harness({ config: { lists: [] } });
    try {
      const mine = (await call(h, 'network_manager', 'GET', '/metrics')).body;
      const theirs = (await call(other, 'network_manager', 'GET', '/metrics')).body;
      expect(sample(mine, 'schoolgate_lists_loaded')).toBe(1);
      expect(sample(theirs, 'schoolgate_lists_loaded')).toBe(0);
    } finally {
      await other.close();
    }
  });

  it('/healthz is 503 while no lists are loaded (fail-closed)', async () => {
    const empty = await harness({ config: { lists: [] } });
    try {
      const res = await empty.app.inject({ url: '/healthz' });
      expect(res.statusCode).toBe(503);
      expect(res.json().status).toBe('unhealthy');
      expect(res.json().lists.loaded).toBe(false);
      expect(res.json().database.reachable).toBe(true);
    } finally {
      await empty.close();
    }
  });
});

const pgSkip = need('PostgreSQL server', await postgresMissing());

describe.skipIf(pgSkip !== null)('/healthz while PostgreSQL is away', () => {
  it('is 503 with database.reachable false, the metric says 0, and both recover when it is back', async () => {
    const testDb = await createTestDatabase('sg_health');
    const relay = new Relay(Number(new URL(testDb.url).port || 5432));
    await relay.open();
    const db = await openDb({ databaseUrl: relay.urlFor(testDb.url), dataDir: '/nonexistent', logger: silentLogger });
    const h = await harness({ db });
    const registry = createMetrics({ db, lists: h.lists, writerStats: () => h.writer.stats() });
    try {
      expect((await h.app.inject({ url: '/healthz' })).statusCode).toBe(200);
      await relay.cut();
      const down = await h.app.inject({ url: '/healthz' });
      expect(down.statusCode).toBe(503);
      expect(down.json()).toMatchObject({ status: 'unhealthy', lists: { loaded: true }, database: { reachable: false } });
      expect(sample(await registry.metrics(), 'schoolgate_database_up')).toBe(0);
      await relay.open();
      let back = 0;
      for (let i = 0; i < 50 && back !== 200; i++) {
        back = (await h.app.inject({ url: '/healthz' })).statusCode;
        if (back !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      expect(back).toBe(200);
      expect(sample(await registry.metrics(), 'schoolgate_database_up')).toBe(1);
    } finally {
      await h.close();
      await db.close();
      await relay.cut();
      await testDb.drop();
    }
  });
});

describe('metrics from a running gateway', () => {
  let origin: Origin;
  let sg: SchoolgateHandle;
  const dirs: string[] = [];
  beforeAll(async () => {
    origin = await startOrigin();
    sg = await startTestGateway(origin, dirs);
  });
  afterAll(async () => {
    await sg?.close();
    await origin?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('counts requests, blocks, upstream errors and stored incidents as they happen', async () => {
    // Anonymous scrapes are refused here too: the registry is behind the same access check.
    expect((await sg.admin.inject({ url: '/metrics' })).statusCode).toBe(401);
    const nm = await createUser(sg.db, { email: 'nm@school.example', role: 'network_manager', password: 'a long passphrase' });
    const { token } = await createToken(sg.db, nm.id, 'prometheus');
    const metrics = async () => (await sg.admin.inject({ url: '/metrics', headers: { authorization: `Bearer ${token}` } })).body;

    const before = await metrics();
    expect(sample(before, 'schoolgate_proxy_blocked_total')).toBe(0);
    expect((await viaProxy(sg.proxyPort, `http://127.0.0.1:${origin.httpPort}/ok`)).status).toBe(200);
    expect((await viaProxy(sg.proxyPort, 'http://blocked.test/a')).status).toBe(403);
    expect((await viaProxy(sg.proxyPort, 'http://blocked.test/b')).status).toBe(403);
    await sg.incidents.flush();
    const after = await metrics();
    expect(sample(after, 'schoolgate_proxy_requests_total')).toBe(3);
    expect(sample(after, 'schoolgate_proxy_blocked_total')).toBe(2);
    expect(sample(after, 'schoolgate_proxy_connections_total')).toBe(3);
    expect(sample(after, 'schoolgate_incidents_stored_total')).toBe(2);
    expect(sample(after, 'schoolgate_incidents_queued')).toBe(0);
    expect(sample(after, 'schoolgate_database_up')).toBe(1);
    expect(sample(after, 'schoolgate_incident_journal_failures_total')).toBe(0);
    // A wall the gateway held (its own console port, even with loopback opened for the test) is counted.
    expect(sample(after, 'schoolgate_proxy_destination_denied_total')).toBe(0);
    expect((await viaProxy(sg.proxyPort, `http://127.0.0.1:${sg.adminPort}/healthz`)).status).toBe(403);
    expect(sample(await metrics(), 'schoolgate_proxy_destination_denied_total')).toBe(1);
    const health = await sg.admin.inject({ url: '/healthz' });
    expect(health.statusCode).toBe(200);
  });
});
