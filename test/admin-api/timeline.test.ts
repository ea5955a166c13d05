/**
 * The pupil timeline (issue 13, point 6): from an incident, the person's incidents and their
 * browsing log around each; the safeguarding lead's alone, every opening audited.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { upsertBrowsingRows, type BrowsingRowInput } from '../../repos/browsing';
import { call, harness, type Harness } from './helpers';

let h: Harness;
const T0 = Date.parse('2027-02-10T10:00:00Z');
const min = (m: number) => new Date(T0 + m * 60_000);
let incidentId = 0;

const row = (minute: Date, host: string, extra: Partial<BrowsingRowInput> = {}): BrowsingRowInput => ({
  minute, person: 'pupil7@school.example', device: 'laptop-7', host, verdict: 'allowed', clientIp: '10.0.0.7', category: null, requests: 3, bytes: 1200, searchTerms: null, ...extra,
});

beforeAll(async () => {
  h = await harness();
  // Named in mixed case on the incident, as proxy sign-in or the clients map may spell it.
  h.writer.record({ kind: 'blocked', occurredAt: min(0), url: 'http://porn.example/', host: 'porn.example', category: 'adult', user: 'Pupil7@School.example', clientIp: '10.0.0.7' });
  h.writer.record({ kind: 'blocked', occurredAt: min(-60 * 24 * 3), url: 'http://casino.example/', host: 'casino.example', category: 'gambling', user: 'pupil7@school.example', clientIp: '10.0.0.7' });
  h.writer.record({ kind: 'blocked', occurredAt: min(5), url: 'http://casino.example/x', host: 'casino.example', category: 'gambling', user: 'someone-else@school.example', clientIp: '10.0.0.8' });
  await h.writer.flush();
  incidentId = Number((await h.db.query<{ id: number }>("SELECT id FROM incidents WHERE host = 'porn.example'")).rows[0].id);
  await upsertBrowsingRows(h.db, [
    row(min(-50), 'www.google.com', { searchTerms: ['naked pictures'] }),
    row(min(0), 'porn.example', { verdict: 'blocked', category: 'adult', bytes: 0, requests: 1 }),
    row(min(30), 'bbc.co.uk'),
    row(min(90), 'later.example'), // outside ±60 of the incident
    row(min(-60 * 24 * 3 + 10), 'around-older.example'), // around the older incident
    row(min(-60 * 24), 'unrelated-day.example'), // around nothing
    { ...row(min(1), 'other-person.example'), person: 'someone-else@school.example', clientIp: '10.0.0.8' },
  ]);
});
afterAll(async () => {
  await h?.close();
});

describe('GET /api/incidents/:id/timeline', () => {
  it("returns the person's incidents and their browsing around each, and audits the opening", async () => {
    const auditBefore = Number((await h.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_log WHERE action = 'timeline_view'")).rows[0].n);
    const res = await call(h, 'safeguarding_lead', 'GET', `/api/incidents/${incidentId}/timeline`);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.person).toBe('Pupil7@School.example');
    expect(body.windowMinutes).toBe(60);
    expect(body.incidents.map((i: { host: string }) => i.host)).toEqual(['casino.example', 'porn.example']);
    expect(body.browsing.map((r: { host: string }) => r.host)).toEqual(['around-older.example', 'www.google.com', 'porn.example', 'bbc.co.uk']);
    expect(body.browsing[1]).toMatchObject({ verdict: 'allowed', requests: 3, bytes: 1200, searchTerms: ['naked pictures'], device: 'laptop-7', clientIp: '10.0.0.7' });
    expect(body.browsing[2]).toMatchObject({ verdict: 'blocked', category: 'adult' });
    const audit = await h.db.query<{ actor: string; target: string; details: Record<string, unknown> }>(
      "SELECT actor, target, details FROM audit_log WHERE action = 'timeline_view' ORDER BY id DESC LIMIT 1",
    );
    expect(Number((await h.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_log WHERE action = 'timeline_view'")).rows[0].n)).toBe(auditBefore + 1);
    expect(audit.rows[0]).toMatchObject({ actor: h.users.safeguarding_lead.email, target: `incident:${incidentId}` });
    expect(audit.rows[0].details).toMatchObject({ person: 'Pupil7@School.example', windowMinutes: 60, incidents: 2, rows: 4 });
  });

  it('widens the browsing shown with ?window=', async () => {
    const res = await call(h, 'safeguarding_lead', 'GET', `/api/incidents/${incidentId}/timeline?window=120`);
    expect(res.statusCode).toBe(200);
    expect(res.json().browsing.map((r: { host: string }) => r.host)).toContain('later.example');
    expect((await call(h, 'safeguarding_lead', 'GET', `/api/incidents/${incidentId}/timeline?window=0`)).statusCode).toBe(400);
  });

  it('is refused to the network manager, staff and the auditor, and audits nothing for them', async () => {
    const before = Number((await h.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_log WHERE action = 'timeline_view'")).rows[0].n);
    for (const role of ['network_manager', 'staff', 'auditor'] as const) {
      const res = await call(h, role, 'GET', `/api/incidents/${incidentId}/timeline`);
      expect(res.statusCode).toBe(403);
      expect(res.body).not.toContain('pupil7');
      expect((await call(h, role, 'GET', '/api/people/pupil7@school.example/timeline')).statusCode).toBe(403);
    }
    expect(Number((await h.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_log WHERE action = 'timeline_view'")).rows[0].n)).toBe(before);
  });
});

describe('GET /api/people/:person/timeline', () => {
  it('matches the person case-insensitively over from/to', async () => {
    const q = new URLSearchParams({ from: min(-60).toISOString(), to: min(60).toISOString() });
    const res = await call(h, 'safeguarding_lead', 'GET', `/api/people/PUPIL7%40school.EXAMPLE/timeline?${q}`);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body.incidents.map((i: { host: string }) => i.host)).toEqual(['porn.example']);
    expect(body.browsing.map((r: { host: string }) => r.host)).toEqual(['www.google.com', 'porn.example', 'bbc.co.uk']);
    const audit = await h.db.query<{ target: string }>("SELECT target FROM audit_log WHERE action = 'timeline_view' ORDER BY id DESC LIMIT 1");
    expect(audit.rows[0].target).toBe('person:pupil7@school.example');
  });

  it('refuses a span over 31 days', async () => {
    const res = await call(h, 'safeguarding_lead', 'GET', '/api/people/pupil7@school.example/timeline?from=2027-01-01&to=2027-03-01');
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('SG_ERR_VALIDATION');
  });
});
