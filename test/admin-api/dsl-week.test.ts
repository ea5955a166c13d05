/**
 * The DSL's week (issue 14 point 4) through the real admin API on PGlite: closing straight from
 * new, reopening a closed incident with a note (audited), bulk triage all or nothing, and a
 * self-report linked to the block it is about, from the block page and from the report form.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealReference } from '../../incidents/reference';
import { createTestDatabase, postgresMissing } from '../../harness/pg';
import { openDb } from '../../db/db';
import type { Db } from '../../db/types';
import { need } from '../helpers/parts';
import { call, harness, type Harness } from './helpers';

/** The harness's admin app seals and opens references with this secret (see helpers.ts). */
const SECRET = Buffer.alloc(32, 7);
const DSL = 'safeguarding_lead' as const;

// The link queries and the bulk transaction are SQL of their own: both backends run them.
const backends = [
  { kind: 'PGlite', skip: null as string | null },
  { kind: 'PostgreSQL', skip: need('PostgreSQL', await postgresMissing()) },
];

for (const backend of backends) describe.skipIf(backend.skip !== null)(`on ${backend.kind}`, () => {
  let h: Harness;
  let pg: { db: Db; drop: () => Promise<void> } | null = null;
  beforeAll(async () => {
    if (backend.kind === 'PostgreSQL') {
      const made = await createTestDatabase('sg_dsl_week');
      pg = { db: await openDb({ databaseUrl: made.url, dataDir: '/nonexistent' }), drop: made.drop };
    }
    h = await harness(pg ? { db: pg.db } : {});
  });
  afterAll(async () => {
    await h?.close();
    await pg?.db.close();
    await pg?.drop();
  });

  let site = 0;
  /** A block of its own (a site nobody else visits, so it folds into nothing); returns its id and key. */
  async function block(user: string | null = 'pupil@school.example', extra: { host?: string; path?: string; clientIp?: string } = {}) {
    const host = extra.host ?? `site-${++site}.example`;
    const key = h.writer.record({
      kind: 'blocked', user, clientIp: extra.clientIp ?? '10.0.0.5', url: `http://${host}${extra.path ?? '/'}`, host, category: 'gambling', policyGroup: 'pupils',
    });
    await h.writer.flush();
    const { rows } = await h.db.query<{ id: number }>(
      'SELECT id FROM incidents WHERE idempotency_key = $1 UNION ALL SELECT incident_id AS id FROM incident_folds WHERE idempotency_key = $1', [key]);
    return { id: Number(rows[0].id), key };
  }
  const statusOf = async (id: number) => (await h.db.query<{ status: string }>('SELECT status FROM incidents WHERE id = $1', [id])).rows[0].status;
  const auditFor = async (id: number) => (await h.db.query<{ action: string; actor: string; details: unknown }>(
    "SELECT action, actor, details FROM audit_log WHERE target = $1 AND action <> 'incident_view' ORDER BY id", [`incident:${id}`])).rows
    .map((r) => ({ ...r, details: typeof r.details === 'string' ? JSON.parse(r.details) : r.details }));
  const eventsFor = async (id: number) => (await h.db.query<{ action: string; from_status: string | null; to_status: string | null; note: string | null }>(
    'SELECT action, from_status, to_status, note FROM incident_events WHERE incident_id = $1 ORDER BY at, id', [id])).rows;
  const patch = (id: number, body: unknown) => call(h, DSL, 'PATCH', `/api/incidents/${id}`, body);

  describe('closing straight from new', () => {
    it('closes (or marks a false positive) from new with a note, one save; without a note it is refused', async () => {
      const { id } = await block();
      const bare = await patch(id, { status: 'closed' });
      expect(bare.statusCode).toBe(409);
      expect(bare.json().error.code).toBe('SG_ERR_TRANSITION');
      expect(bare.json().error.message).toContain('needs a note');
      expect(await statusOf(id)).toBe('new');

      const r = await patch(id, { status: 'closed', note: 'an advert on a homework site' });
      expect(r.statusCode, r.body).toBe(200);
      expect(r.json().incident.status).toBe('closed');
      expect(await eventsFor(id)).toEqual([{ action: 'status', from_status: 'new', to_status: 'closed', note: 'an advert on a homework site' }]);
      // Audited in the same transaction as the change; the note's words stay out of the auditor's log.
      expect(await auditFor(id)).toEqual([
        { action: 'incident_update', actor: 'safeguarding_lead@school.example', details: expect.objectContaining({ from: 'new', status: 'closed', note: true }) },
      ]);

      const fp = await block();
      expect((await patch(fp.id, { status: 'false_positive', note: 'a school supplier, wrongly listed' })).json().incident.status).toBe('false_positive');
      // Still no jumping from new to escalated, nor back to new from anywhere.
      const other = await block();
      expect((await patch(other.id, { status: 'escalated', note: 'x' })).statusCode).toBe(409);
    });
  });

  describe('reopening a closed incident', () => {
    it('takes a closed or false-positive incident back to in_review with a required note, audited as incident_reopen', async () => {
      const { id } = await block();
      await patch(id, { status: 'closed', note: 'nothing to see' });

      const bare = await patch(id, { status: 'in_review' });
      expect(bare.statusCode).toBe(409);
      expect(bare.json().error.message).toContain('needs a note');
      const blank = await patch(id, { status: 'in_review', note: '   ' });
      expect(blank.statusCode).toBe(409);
      expect(await statusOf(id)).toBe('closed');
      // Reopening goes to in_review only: not straight to escalated, not back to new.
      expect((await patch(id, { status: 'escalated', note: 'x' })).statusCode).toBe(409);
      expect((await patch(id, { status: 'new', note: 'x' })).statusCode).toBe(409);

      const r = await patch(id, { status: 'in_review', note: 'the same pupil tried again from home: look again' });
      expect(r.statusCode, r.body).toBe(200);
      expect(r.json().incident.status).toBe('in_review');
      expect((await eventsFor(id)).at(-1)).toEqual({ action: 'status', from_status: 'closed', to_status: 'in_review', note: 'the same pupil tried again from home: look again' });
      const audit = await auditFor(id);
      expect(audit.map((a) => a.action)).toEqual(['incident_update', 'incident_reopen']);
      expect(audit[1]).toEqual({ action: 'incident_reopen', actor: 'safeguarding_lead@school.example', details: expect.objectContaining({ from: 'closed', status: 'in_review', note: true }) });
      // The auditor reads it in the audit log.
      const trail = await call(h, 'auditor', 'GET', `/api/audit?action=incident_reopen&target=incident:${id}`);
      expect(trail.json().items).toHaveLength(1);
      expect(trail.body).not.toContain('tried again from home');
      // Open again, so retention (resolved incidents only) leaves it alone, and it can be closed again.
      expect((await patch(id, { status: 'closed', note: 'spoke to parents' })).json().incident.status).toBe('closed');

      const fp = await block();
      await patch(fp.id, { status: 'false_positive', note: 'wrongly listed' });
      expect((await patch(fp.id, { status: 'in_review', note: 'it was not wrongly listed after all' })).json().incident.status).toBe('in_review');
      expect((await auditFor(fp.id)).map((a) => a.action)).toEqual(['incident_update', 'incident_reopen']);
    });
  });

  describe('bulk triage', () => {
    const bulk = (body: unknown, as: 'safeguarding_lead' | 'staff' = DSL) => call(h, as, 'POST', '/api/incidents/bulk', body);

    it('changes every selected incident in one request, each with its history and audit row', async () => {
      const ids = [(await block()).id, (await block()).id, (await block()).id];
      const r = await bulk({ ids, status: 'in_review', assigneeId: h.users.safeguarding_lead.id });
      expect(r.statusCode, r.body).toBe(200);
      expect(r.json().incidents.map((i: { id: number; status: string; assigneeId: number }) => [i.id, i.status, i.assigneeId]))
        .toEqual(ids.map((id) => [id, 'in_review', h.users.safeguarding_lead.id]));
      for (const id of ids) {
        expect(await statusOf(id)).toBe('in_review');
        expect((await eventsFor(id)).map((e) => e.action)).toEqual(['assign', 'status']);
        expect(await auditFor(id)).toEqual([{ action: 'incident_update', actor: 'safeguarding_lead@school.example', details: expect.objectContaining({ from: 'new', status: 'in_review', bulk: 3 }) }]);
      }
      // Closing several at once with one note.
      const closed = await bulk({ ids, status: 'closed', note: 'a class all hit the same advert' });
      expect(closed.statusCode).toBe(200);
      for (const id of ids) expect(await statusOf(id)).toBe('closed');
    });

    it('refuses the whole request when any incident cannot take the change, naming each, and changes nothing', async () => {
      const fresh = [(await block()).id, (await block()).id];
      const done = (await block()).id;
      await patch(done, { status: 'closed', note: 'handled' });
      const before = await h.db.query('SELECT count(*)::int AS n FROM audit_log');
      const eventsBefore = await h.db.query('SELECT count(*)::int AS n FROM incident_events');

      const r = await bulk({ ids: [...fresh, done, 987654], status: 'escalated', note: 'serious' });
      expect(r.statusCode).toBe(409);
      const err = r.json().error;
      expect(err.code).toBe('SG_ERR_TRANSITION');
      expect(err.message).toContain('nothing was changed: 4 of 4');
      // new → escalated is not allowed either: each refusal is listed with its own code and reason.
      expect(err.details.failures).toEqual([
        { id: fresh[0], code: 'SG_ERR_TRANSITION', message: expect.stringContaining('new → escalated') },
        { id: fresh[1], code: 'SG_ERR_TRANSITION', message: expect.stringContaining('new → escalated') },
        { id: done, code: 'SG_ERR_TRANSITION', message: expect.stringContaining('closed → escalated') },
        { id: 987654, code: 'SG_ERR_NOT_FOUND', message: expect.stringContaining('incident 987654') },
      ]);

      // One bad incident among good ones: still nothing changes, and only that one is named.
      const mixed = await bulk({ ids: [...fresh, done], status: 'in_review' });
      expect(mixed.statusCode).toBe(409);
      expect(mixed.json().error.details.failures).toEqual([{ id: done, code: 'SG_ERR_TRANSITION', message: expect.stringContaining('needs a note') }]);
      for (const id of fresh) expect(await statusOf(id)).toBe('new');
      expect(await statusOf(done)).toBe('closed');
      expect((await h.db.query('SELECT count(*)::int AS n FROM audit_log')).rows).toEqual(before.rows);
      expect((await h.db.query('SELECT count(*)::int AS n FROM incident_events')).rows).toEqual(eventsBefore.rows);

      // Unticking the refused one lets the rest through.
      expect((await bulk({ ids: fresh, status: 'in_review' })).statusCode).toBe(200);
    });

    it('validates the request itself: ids required, unique, at most 500; something to change; an active assignee', async () => {
      const { id } = await block();
      for (const body of [{}, { ids: [] }, { ids: [id, id], status: 'in_review' }, { ids: Array.from({ length: 501 }, (_, i) => i + 1), status: 'in_review' }, { ids: [id], status: 'done' }]) {
        const r = await bulk(body);
        expect(r.statusCode, JSON.stringify(body)).toBe(400);
        expect(r.json().error.code).toBe('SG_ERR_VALIDATION');
      }
      const nothing = await bulk({ ids: [id] });
      expect(nothing.statusCode).toBe(409);
      expect(nothing.json().error.details.failures[0]).toMatchObject({ id, code: 'SG_ERR_VALIDATION', message: expect.stringContaining('nothing to change') });
      const ghost = await bulk({ ids: [id], assigneeId: 424242 });
      expect(ghost.json().error.details.failures[0]).toMatchObject({ id, code: 'SG_ERR_VALIDATION', message: expect.stringContaining('not an active user') });
      expect((await bulk({ ids: [id], status: 'in_review' }, 'staff')).statusCode).toBe(403);
      expect(await statusOf(id)).toBe('new');
    });
  });

  describe('a self-report linked to the block it is about', () => {
    const detail = async (id: number, as: 'safeguarding_lead' | 'staff' = DSL) => {
      const r = await call(h, as, 'GET', `/api/incidents/${id}`);
      expect(r.statusCode, r.body).toBe(200);
      return r.json() as { incident: { id: number; kind: string; relatedKey: string | null }; related: Array<{ id: number; kind: string }> };
    };

    it('links a block page report to its block both ways, also when the page was a repeat folded into an earlier incident', async () => {
      // Two pages of one site within the fold window: one incident; the second page's reference is its own key.
      const first = await block('amy@school.example', { host: 'fold.example', path: '/a', clientIp: '10.9.0.1' });
      const second = await block('amy@school.example', { host: 'fold.example', path: '/b', clientIp: '10.9.0.1' });
      expect(second.id).toBe(first.id);
      const ref = sealReference(SECRET, {
        k: second.key, url: 'http://fold.example/b', host: 'fold.example', category: 'gambling', clientIp: '10.9.0.1', user: 'amy@school.example', group: 'pupils', t: Date.now(),
      });
      const sent = await h.app.inject({
        method: 'POST', url: '/block/report', remoteAddress: '10.9.0.1',
        headers: { 'content-type': 'application/json', accept: 'application/json' }, payload: { ref, type: 'self_report', note: 'clicked a search result' },
      });
      expect(sent.statusCode, sent.body).toBe(201);
      await h.writer.flush();
      const report = Number((await h.db.query<{ id: number }>('SELECT id FROM incidents WHERE idempotency_key = $1', [sent.json().key])).rows[0].id);

      expect((await detail(report)).related.map((r) => r.id)).toEqual([first.id]);
      expect((await detail(first.id)).related.map((r) => [r.id, r.kind])).toEqual([[report, 'self_report']]);
    });

    it('links a report from the form by the block page reference or by the incident id, for the reporter\'s own block only', async () => {
      const me = h.users.staff.email;
      const mine = await block(me, { path: '/slots' });
      const r = await call(h, 'staff', 'POST', '/api/self-reports', { blockReference: mine.key, description: 'an advert opened it during registration' });
      expect(r.statusCode, r.body).toBe(200);
      expect(r.json().blockId).toBe(mine.id);
      const reportId = r.json().id as number;
      const report = await detail(reportId, 'staff');
      // The address is the block's when none was typed.
      expect(report.incident).toMatchObject({ kind: 'self_report', relatedKey: mine.key, url: `http://site-${site}.example/slots`, category: 'gambling' });
      expect(report.related.map((x) => x.id)).toEqual([mine.id]);
      expect((await detail(mine.id)).related.map((x) => x.id)).toEqual([reportId]);
      expect((await detail(mine.id, 'staff')).related.map((x) => x.id)).toEqual([reportId]);

      // By id, as My reports lists it; and a block nobody was signed in for (a shared device).
      const byId = await block(me);
      expect((await call(h, 'staff', 'POST', '/api/self-reports', { incidentId: byId.id, url: 'typed.example', description: 'd' })).json().blockId).toBe(byId.id);
      const shared = await block(null);
      expect((await call(h, 'staff', 'POST', '/api/self-reports', { blockReference: shared.key, description: 'that was me on the library PC' })).json().blockId).toBe(shared.id);

      // Someone else's block answers as one that does not exist, and records nothing.
      const count = async () => Number((await h.db.query<{ n: number }>("SELECT count(*)::int AS n FROM incidents WHERE kind = 'self_report'")).rows[0].n);
      const before = await count();
      const theirs = await block('pupil.z@school.example');
      for (const body of [{ blockReference: theirs.key }, { incidentId: theirs.id }, { blockReference: randomUUID() }, { incidentId: reportId }]) {
        const x = await call(h, 'staff', 'POST', '/api/self-reports', { ...body, description: 'not mine' });
        expect(x.statusCode, JSON.stringify(body)).toBe(404);
        expect(x.json().error.code).toBe('SG_ERR_NOT_FOUND');
      }
      // Neither an address nor a block: nothing to report about.
      const none = await call(h, 'staff', 'POST', '/api/self-reports', { description: 'something happened' });
      expect(none.statusCode).toBe(400);
      expect(none.json().error.code).toBe('SG_ERR_VALIDATION');
      expect(await count()).toBe(before);
    });
  });
});
