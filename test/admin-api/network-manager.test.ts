import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalizeUrl } from '../../blocklists/normalize';
import { PolicyGroups } from '../../blocklists/policy-groups';
import { ListStore } from '../../blocklists/store';
import { startListSync } from '../../admin-api/list-sync';
import { startSmtp, subjectOf } from '../../harness/smtp';
import { call, harness, ORIGIN, PASSWORD, sessionCookie, type Harness } from './helpers';

/**
 * The network manager's week (issue 14 point 5) through inject(): unblock decisions kept, told to
 * the person who asked (My reports; email through a real SMTP server) and never naming them to the
 * network manager; overrides scoped to a policy group and expiring; accounts disabled, re-enabled
 * and given a new password.
 */

let h: Harness;
let smtp: Awaited<ReturnType<typeof startSmtp>>;

beforeAll(async () => {
  smtp = await startSmtp();
  h = await harness({
    config: {
      policyGroups: { pupils: { categories: ['adult', 'games'] }, staff: { categories: ['adult', 'games'] } },
      smtp: { url: `smtp://127.0.0.1:${smtp.port}`, from: 'filter@school.example', to: [] },
    },
  });
});

afterAll(async () => {
  await h?.close();
  await smtp?.close();
});

const verdict = (url: string, group: string) => h.lists.classify(normalizeUrl(url), ['adult', 'gambling', 'games'], [], group);

async function request(user: string | null, host: string, note: string): Promise<number> {
  const key = h.writer.record({ kind: 'unblock_request', url: `http://${host}/lesson`, host, category: 'games', user, clientIp: '10.0.0.8', device: 'LAB-3', note });
  await h.writer.flush();
  const r = await h.db.query<{ id: number }>('SELECT id FROM incidents WHERE idempotency_key = $1', [key]);
  return Number(r.rows[0].id);
}

async function waitForMail(to: string, timeoutMs = 5000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const m = smtp.mails.find((x) => x.to.includes(to));
    if (m) return m;
    if (Date.now() > until) throw new Error(`no mail to ${to}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('unblock decisions', () => {
  it('approves for one group: the override is scoped, the outcome kept, the requester told, the network manager never told who', async () => {
    const id = await request(h.users.staff.email, 'games.example', 'we use it in year 9 maths');
    expect(verdict('http://games.example/', 'staff').action).toBe('block');
    const res = await call(h, 'network_manager', 'POST', `/api/unblock-requests/${id}/decision`, { decision: 'allow', reason: 'fine for lessons', group: 'staff' });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body.override).toMatchObject({ action: 'allow', entry: 'games.example', group: 'staff', expiresAt: null, expired: false });
    expect(body.incident).toMatchObject({ id, status: 'closed', decision: { outcome: 'approved', reason: 'fine for lessons' } });
    // Need to know: who asked is nowhere in what the network manager gets back.
    expect(res.body).not.toContain(h.users.staff.email);
    expect(res.body).not.toContain('10.0.0.8');
    expect(res.body).not.toContain('LAB-3');
    // At once in this process's engine, for that group only.
    expect(verdict('http://games.example/', 'staff')).toMatchObject({ action: 'pass', allowed: true });
    expect(verdict('http://games.example/', 'pupils')).toMatchObject({ action: 'block', category: 'games' });
    // The overrides table shows it at once.
    const overrides = (await call(h, 'network_manager', 'GET', '/api/overrides')).json().items;
    expect(overrides[0]).toMatchObject({ entry: 'games.example', group: 'staff' });

    // The requester: in My reports (list and detail) with the outcome and reason...
    const mine = (await call(h, 'staff', 'GET', '/api/incidents?kind=unblock_request')).json().items;
    expect(mine.find((i: { id: number }) => i.id === id)).toMatchObject({ status: 'closed', decision: { outcome: 'approved', reason: 'fine for lessons' } });
    expect((await call(h, 'staff', 'GET', `/api/incidents/${id}`)).json().incident.decision).toMatchObject({ outcome: 'approved', reason: 'fine for lessons' });
    // ...and by email, through a real SMTP server.
    const mail = await waitForMail(h.users.staff.email);
    expect(subjectOf(mail)).toBe('[schoolgate] Unblock request approved: games.example');
    expect(mail.raw).toContain('Reason: fine for lessons');
    expect(mail.raw).toContain(`/console/#/incidents/${id}`);

    // The request list shows the outcome, still without the person.
    const listRes = await call(h, 'network_manager', 'GET', '/api/unblock-requests');
    const listed = listRes.json().items.find((i: { id: number }) => i.id === id);
    expect(listed).toMatchObject({ status: 'closed', decision: { outcome: 'approved', reason: 'fine for lessons' } });
    expect(listRes.body).not.toContain(h.users.staff.email);

    // Audited with outcome and reason.
    const audit = await h.db.query<{ details: Record<string, unknown> }>("SELECT details FROM audit_log WHERE action = 'unblock_decision' AND target = $1", [`incident:${id}`]);
    expect(audit.rows[0].details).toMatchObject({ outcome: 'approved', reason: 'fine for lessons', group: 'staff' });
    // Decided once.
    expect((await call(h, 'network_manager', 'POST', `/api/unblock-requests/${id}/decision`, { decision: 'deny', reason: 'again' })).statusCode).toBe(409);
  });

  it('declines: no entry, the outcome and reason kept and emailed; scope on a decline is refused', async () => {
    const id = await request('pupil.z@school.example', 'xxx.example', 'for a project');
    const scoped = await call(h, 'network_manager', 'POST', `/api/unblock-requests/${id}/decision`, { decision: 'deny', reason: 'no', group: 'pupils' });
    expect(scoped.statusCode).toBe(400);
    const before = (await call(h, 'network_manager', 'GET', '/api/overrides')).json().items.length;
    const res = await call(h, 'network_manager', 'POST', `/api/unblock-requests/${id}/decision`, { decision: 'deny', reason: 'adult content stays blocked' });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ override: null, incident: { decision: { outcome: 'declined', reason: 'adult content stays blocked' } } });
    expect((await call(h, 'network_manager', 'GET', '/api/overrides')).json().items.length).toBe(before);
    const mail = await waitForMail('pupil.z@school.example');
    expect(subjectOf(mail)).toBe('[schoolgate] Unblock request declined: xxx.example');
    expect(mail.raw).toContain('Reason: adult content stays blocked');
  });

  it('sends no email to a requester known by a name that is no address, and still keeps the outcome', async () => {
    const id = await request('LAB-PC-04', 'casino.example', 'needed');
    const count = smtp.mails.length;
    const res = await call(h, 'network_manager', 'POST', `/api/unblock-requests/${id}/decision`, { decision: 'deny', reason: 'gambling' });
    expect(res.statusCode).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    expect(smtp.mails.length).toBe(count);
    const stored = await h.db.query('SELECT outcome, reason FROM unblock_decisions WHERE incident_id = $1', [id]);
    expect(stored.rows).toEqual([{ outcome: 'declined', reason: 'gambling' }]);
  });
});

describe('overrides scoped and expiring', () => {
  it('refuses an unknown group and an expiry in the past, naming them', async () => {
    const g = await call(h, 'network_manager', 'POST', '/api/overrides', { action: 'allow', entry: 'casino.example', reason: 'x', group: 'pupilz' });
    expect(g.statusCode).toBe(400);
    expect(g.json().error.message).toContain('pupilz');
    const e = await call(h, 'network_manager', 'POST', '/api/overrides', { action: 'allow', entry: 'casino.example', reason: 'x', expiresAt: '2020-01-01T00:00:00Z' });
    expect(e.statusCode).toBe(400);
    expect(e.json().error.message).toContain('expiresAt');
    const bad = await call(h, 'network_manager', 'POST', '/api/overrides', { action: 'allow', entry: 'casino.example', reason: 'x', expiresAt: 'next tuesday' });
    expect(bad.statusCode).toBe(400);
  });

  it('stops applying at its expiry without any request, on another gateway too, is shown as expired, and can then be added again', async () => {
    // A second gateway on the same database, following the console only through list sync.
    const other = await ListStore.open({ sources: h.config.lists });
    const stopOther = await startListSync({ db: h.db, store: other, policies: new PolicyGroups(h.config, other), config: h.config });
    const otherVerdict = (url: string, group: string) => other.classify(normalizeUrl(url), ['adult', 'gambling', 'games'], [], group);
    const expiresAt = new Date(Date.now() + 5000).toISOString();
    const res = await call(h, 'network_manager', 'POST', '/api/overrides', { action: 'allow', entry: 'casino.example', reason: 'one lesson', group: 'pupils', expiresAt });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().override).toMatchObject({ group: 'pupils', expiresAt, expired: false });
    expect(verdict('http://casino.example/', 'pupils').action).toBe('pass');
    expect(verdict('http://casino.example/', 'staff').action).toBe('block');
    const until0 = Date.now() + 3000;
    while (otherVerdict('http://casino.example/', 'pupils').action !== 'pass' && Date.now() < until0) await new Promise((r) => setTimeout(r, 20));
    expect(otherVerdict('http://casino.example/', 'pupils').action).toBe('pass');
    // Live: the same again is a conflict.
    expect((await call(h, 'network_manager', 'POST', '/api/overrides', { action: 'allow', entry: 'casino.example', reason: 'x', group: 'pupils' })).statusCode).toBe(409);
    const until = Date.now() + 10_000;
    while (verdict('http://casino.example/', 'pupils').action !== 'block' && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(verdict('http://casino.example/', 'pupils')).toMatchObject({ action: 'block', category: 'gambling' });
    // The other gateway took the entry from the notification, and drops it at its time by itself.
    const until1 = Date.now() + 3000;
    while (otherVerdict('http://casino.example/', 'pupils').action !== 'block' && Date.now() < until1) await new Promise((r) => setTimeout(r, 20));
    expect(otherVerdict('http://casino.example/', 'pupils').action).toBe('block');
    await stopOther();
    const listed = (await call(h, 'network_manager', 'GET', '/api/overrides')).json().items.find((o: { entry: string }) => o.entry === 'casino.example');
    expect(listed).toMatchObject({ expired: true, group: 'pupils' });
    // Expired: adding it again replaces it.
    const again = await call(h, 'network_manager', 'POST', '/api/overrides', { action: 'allow', entry: 'casino.example', reason: 'another lesson', group: 'pupils' });
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json().override).toMatchObject({ expired: false, expiresAt: null, reason: 'another lesson' });
    expect(verdict('http://casino.example/', 'pupils').action).toBe('pass');
    const audit = await h.db.query<{ details: Record<string, unknown> }>("SELECT details FROM audit_log WHERE action = 'override_add' ORDER BY id");
    expect(audit.rows.map((r) => r.details)).toContainEqual(expect.objectContaining({ entry: 'casino.example', group: 'pupils', expiresAt }));
  });
});

describe('accounts', () => {
  async function newStaff(email: string) {
    const res = await call(h, 'network_manager', 'POST', '/api/users', { email, role: 'staff', password: PASSWORD });
    expect(res.statusCode, res.body).toBe(200);
    const login = await h.app.inject({ method: 'POST', url: '/api/login', payload: { email, password: PASSWORD } });
    return { id: res.json().user.id as number, cookie: sessionCookie(login) };
  }
  const me = (cookie: string) => h.app.inject({ url: '/api/me', headers: { cookie, origin: ORIGIN } });
  const login = (email: string, password: string) => h.app.inject({ method: 'POST', url: '/api/login', payload: { email, password } });

  it('resets a password: generated and shown once, or set; the old sessions end at once; audited', async () => {
    const t = await newStaff('reset.me@school.example');
    expect((await me(t.cookie)).statusCode).toBe(200);
    const res = await call(h, 'network_manager', 'POST', `/api/users/${t.id}/password`, {});
    expect(res.statusCode, res.body).toBe(200);
    const generated = res.json().password as string;
    expect(generated.length).toBeGreaterThanOrEqual(16);
    expect((await me(t.cookie)).statusCode).toBe(401);
    expect((await login('reset.me@school.example', PASSWORD)).statusCode).toBe(401);
    expect((await login('reset.me@school.example', generated)).statusCode).toBe(200);
    const set = await call(h, 'network_manager', 'POST', `/api/users/${t.id}/password`, { password: 'chosen by the admin' });
    expect(set.statusCode).toBe(200);
    expect(set.json().password).toBeUndefined();
    expect((await login('reset.me@school.example', 'chosen by the admin')).statusCode).toBe(200);
    const audit = await h.db.query<{ details: Record<string, unknown> }>("SELECT details FROM audit_log WHERE action = 'user_password_reset' AND target = $1 ORDER BY id", [`user:${t.id}`]);
    expect(audit.rows.map((r) => r.details.generated)).toEqual([true, false]);
    // The password itself is never audited.
    expect(JSON.stringify(audit.rows)).not.toContain(generated);
  });

  it('refuses a reset beyond the role, of your own account, and a short password', async () => {
    expect((await call(h, 'network_manager', 'POST', `/api/users/${h.users.safeguarding_lead.id}/password`, {})).statusCode).toBe(403);
    expect((await call(h, 'network_manager', 'POST', `/api/users/${h.users.network_manager.id}/password`, {})).statusCode).toBe(400);
    expect((await call(h, 'network_manager', 'POST', `/api/users/${h.users.staff.id}/password`, { password: 'short' })).statusCode).toBe(400);
    expect((await call(h, 'network_manager', 'POST', '/api/users/99999/password', {})).statusCode).toBe(404);
  });

  it('disables (sessions end, sign-in refused) and re-enables an account, audited', async () => {
    const t = await newStaff('leaver@school.example');
    expect((await call(h, 'network_manager', 'PATCH', `/api/users/${t.id}`, { disabled: true })).json().user.disabled).toBe(true);
    expect((await me(t.cookie)).statusCode).toBe(401);
    expect((await login('leaver@school.example', PASSWORD)).statusCode).toBe(401);
    expect((await call(h, 'network_manager', 'PATCH', `/api/users/${t.id}`, { disabled: false })).json().user.disabled).toBe(false);
    expect((await login('leaver@school.example', PASSWORD)).statusCode).toBe(200);
    const audit = await h.db.query<{ details: Record<string, unknown> }>("SELECT details FROM audit_log WHERE action = 'user_update' AND target = $1 ORDER BY id", [`user:${t.id}`]);
    expect(audit.rows.map((r) => r.details.disabled)).toEqual([true, false]);
  });
});
