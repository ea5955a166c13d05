import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createToken, createUser, getDummyHash, validateTokenExpiry, verifyPassword } from '../../admin-api/auth';
import { watchCredentialChanges } from '../../core/credentials';
import { silentLogger } from '../../core/log';
import { ClientIdentifier, usersTableLookup } from '../../filter/identify';
import { cliChangePassword } from '../../admin-api/routes/control';
import { call, harness, ORIGIN, PASSWORD, sessionCookie, type Harness } from './helpers';

const NEW_PASSWORD = 'a brand new passphrase';

describe('a password change or a disabled account ends sessions and API tokens at once', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  afterAll(async () => h?.close());

  /** A fresh account with a console session and an API token. */
  async function account(email: string, role: 'network_manager' | 'staff' = 'network_manager') {
    const u = await createUser(h.db, { email, role, password: PASSWORD });
    const login = await h.app.inject({ method: 'POST', url: '/api/login', payload: { email, password: PASSWORD } });
    expect(login.statusCode).toBe(200);
    const { token } = await createToken(h.db, u.id, 'automation');
    return { id: u.id, email, cookie: sessionCookie(login), token };
  }
  const asCookie = (cookie: string) => h.app.inject({ url: '/api/me', headers: { cookie } });
  const asToken = (token: string) => h.app.inject({ url: '/api/me', headers: { authorization: `Bearer ${token}` } });

  it('schoolgate users passwd (the CLI) revokes the API tokens as well as the sessions', async () => {
    const a = await account('cli-passwd@school.example');
    expect((await asToken(a.token)).statusCode).toBe(200);
    await cliChangePassword(h.db, { email: a.email, password: NEW_PASSWORD });
    expect((await asCookie(a.cookie)).statusCode).toBe(401);
    const t = await asToken(a.token);
    expect(t.statusCode).toBe(401);
    expect(t.json().error.code).toBe('SG_ERR_UNAUTHENTICATED');
  });

  it('changing your own password checks the old one, ends every other session and token, and keeps this browser signed in', async () => {
    const a = await account('self-passwd@school.example');
    const other = sessionCookie(await h.app.inject({ method: 'POST', url: '/api/login', payload: { email: a.email, password: PASSWORD } }));
    const wrong = await h.app.inject({
      method: 'POST', url: '/api/me/password', headers: { cookie: a.cookie, origin: ORIGIN }, payload: { currentPassword: 'not it at all', newPassword: NEW_PASSWORD },
    });
    expect(wrong.statusCode).toBe(400);
    expect(wrong.json().error).toMatchObject({ code: 'SG_ERR_VALIDATION', message: expect.stringContaining('currentPassword') });
    expect((await asToken(a.token)).statusCode).toBe(200); // a failed attempt changes nothing
    const short = await h.app.inject({
      method: 'POST', url: '/api/me/password', headers: { cookie: a.cookie, origin: ORIGIN }, payload: { currentPassword: PASSWORD, newPassword: 'short' },
    });
    expect(short.statusCode).toBe(400);

    const ok = await h.app.inject({
      method: 'POST', url: '/api/me/password', headers: { cookie: a.cookie, origin: ORIGIN }, payload: { currentPassword: PASSWORD, newPassword: NEW_PASSWORD },
    });
    expect(ok.statusCode).toBe(200);
    const fresh = sessionCookie(ok);
    expect((await asCookie(fresh)).statusCode).toBe(200);
    expect((await asCookie(a.cookie)).statusCode).toBe(401);
    expect((await asCookie(other)).statusCode).toBe(401);
    expect((await asToken(a.token)).statusCode).toBe(401);
    const relogin = await h.app.inject({ method: 'POST', url: '/api/login', payload: { email: a.email, password: NEW_PASSWORD } });
    expect(relogin.statusCode).toBe(200);
    const audit = await h.db.query<{ action: string }>(`SELECT action FROM audit_log WHERE target = $1 ORDER BY id`, [`user:${a.id}`]);
    expect(audit.rows.map((r) => r.action)).toEqual(['password_change_failed', 'user_password']);
  });

  it('disabling an account ends its sessions and tokens', async () => {
    const a = await account('leaver@school.example', 'staff');
    expect((await asToken(a.token)).statusCode).toBe(200);
    const r = await call(h, 'safeguarding_lead', 'PATCH', `/api/users/${a.id}`, { disabled: true });
    expect(r.statusCode).toBe(200);
    expect((await asCookie(a.cookie)).statusCode).toBe(401);
    expect((await asToken(a.token)).statusCode).toBe(401);
    // Enabling the account again does not bring old credentials back.
    expect((await call(h, 'safeguarding_lead', 'PATCH', `/api/users/${a.id}`, { disabled: false })).statusCode).toBe(200);
    expect((await asToken(a.token)).statusCode).toBe(401);
  });
});

describe('the gateway hears account changes made in the console at once', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  afterAll(async () => h?.close());

  it('a new role picks the new policy group on the next request; disabling refuses the next one', async () => {
    const u = await createUser(h.db, { email: 'moving@school.example', role: 'staff', password: PASSWORD });
    const id = new ClientIdentifier(
      { allowedClients: ['127.0.0.0/8'], clients: [], defaultGroup: 'pupils', proxyAuth: true, policyGroups: { staff: { categories: [] }, network_manager: { categories: [] } } },
      { users: usersTableLookup(h.db), verify: verifyPassword, dummyHash: getDummyHash },
    );
    const stop = await watchCredentialChanges(h.db, (email) => id.forget(email), silentLogger);
    try {
      const header = `Basic ${Buffer.from(`moving@school.example:${PASSWORD}`).toString('base64')}`;
      expect(await id.identify('127.0.0.1', header)).toMatchObject({ ok: true, identity: { group: 'staff' } });
      expect((await call(h, 'safeguarding_lead', 'PATCH', `/api/users/${u.id}`, { role: 'network_manager' })).statusCode).toBe(200);
      expect(await id.identify('127.0.0.1', header)).toMatchObject({ ok: true, identity: { group: 'network_manager' } });
      expect((await call(h, 'safeguarding_lead', 'PATCH', `/api/users/${u.id}`, { disabled: true })).statusCode).toBe(200);
      expect(await id.identify('127.0.0.1', header)).toEqual({ ok: false, code: 'SG_ERR_PROXY_AUTH' });
    } finally {
      await stop();
    }
  });
});

describe('API tokens may carry an expiry', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  afterAll(async () => h?.close());

  it('validates expiresAt and names what was wrong', async () => {
    const now = Date.parse('2026-06-01T12:00:00Z');
    expect(validateTokenExpiry('2026-07-01T00:00:00Z', now).toISOString()).toBe('2026-07-01T00:00:00.000Z');
    expect(validateTokenExpiry('2026-07-01T02:00:00+02:00', now).toISOString()).toBe('2026-07-01T00:00:00.000Z');
    expect(validateTokenExpiry('2026-07-01', now).toISOString()).toBe('2026-07-01T00:00:00.000Z');
    for (const [bad, why] of [
      ['tomorrow', /expiresAt must be a date-time/],
      ['2026-07-01T00:00:00', /expiresAt must be a date-time/], // no zone: which midnight?
      ['2026-02-30T00:00:00Z', /expiresAt must be a date-time/],
      ['2026-07-01T25:00:00Z', /expiresAt must be a date-time/],
      [12345, /expiresAt must be a date-time/],
      ['2026-05-01T00:00:00Z', /not in the future/],
      ['2040-01-01T00:00:00Z', /more than \d+ days ahead/],
    ] as const) {
      expect(() => validateTokenExpiry(bad, now), String(bad)).toThrow(why);
    }
  });

  it('creates, lists and enforces an expiring token; a past or malformed expiry is a 400', async () => {
    for (const expiresAt of ['yesterday', '2001-01-01T00:00:00Z', '2999-01-01T00:00:00Z']) {
      const bad = await call(h, 'network_manager', 'POST', '/api/tokens', { name: 'ci', expiresAt });
      expect(bad.statusCode, expiresAt).toBe(400);
      expect(bad.json().error.code).toBe('SG_ERR_VALIDATION');
      expect(bad.json().error.message).toContain('expiresAt');
    }
    const later = new Date(Date.now() + 7 * 86_400_000).toISOString();
    const made = await call(h, 'network_manager', 'POST', '/api/tokens', { name: 'ci', expiresAt: later });
    expect(made.statusCode).toBe(200);
    expect(made.json().expiresAt).toBe(later);
    const { id, token } = made.json();
    const listed = (await call(h, 'network_manager', 'GET', '/api/tokens')).json().items.find((t: { id: number }) => t.id === id);
    expect(listed.expiresAt).toBe(later);
    const me = () => h.app.inject({ url: '/api/me', headers: { authorization: `Bearer ${token}` } });
    expect((await me()).statusCode).toBe(200);
    await h.db.query(`UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, [id]);
    expect((await me()).statusCode).toBe(401);
    const forever = await call(h, 'network_manager', 'POST', '/api/tokens', { name: 'no expiry' });
    expect(forever.json().expiresAt).toBeNull();
  });
});
