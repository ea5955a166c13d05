import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser, hashPassword, SESSION_HOURS, sha256, verifyPassword } from '../../admin-api/auth';
import { call, harness, ORIGIN, PASSWORD, sessionCookie, type Harness } from './helpers';

describe('password hashing', () => {
  it('hashes with scrypt in the shared format and verifies only the right password', async () => {
    const h = await hashPassword('s3cret-pass');
    expect(h).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(await verifyPassword('s3cret-pass', h)).toBe(true);
    expect(await verifyPassword('s3cret-pasS', h)).toBe(false);
    expect(await hashPassword('s3cret-pass')).not.toBe(h); // salted
  });

  it('rejects malformed or hostile hashes without throwing', async () => {
    for (const bad of ['', 'plain', 'scrypt$1$8$1$AA==$AA==', 'scrypt$1073741824$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'bcrypt$x$y$z$a$b']) {
      expect(await verifyPassword('x', bad)).toBe(false);
    }
  });
});

describe('login, sessions, tokens, origin', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness({ loginRateLimit: 5, loginIpRateLimit: 40 });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('sets an HttpOnly, SameSite=Strict, Path=/ session cookie and stores only its hash', async () => {
    const res = await h.app.inject({ method: 'POST', url: '/api/login', payload: { email: 'STAFF@school.example', password: PASSWORD } });
    expect(res.statusCode).toBe(200);
    expect(res.json().user).toMatchObject({ email: 'staff@school.example', role: 'staff' });
    const c = res.cookies.find((x) => x.name === 'sg_session')!;
    expect(c.httpOnly).toBe(true);
    expect(c.sameSite).toBe('Strict');
    expect(c.path).toBe('/');
    expect(c.secure).toBeFalsy(); // plain HTTP here; Secure under TLS
    const rows = await h.db.query<{ id_hash: string }>('SELECT id_hash FROM sessions');
    expect(rows.rows.map((r) => r.id_hash)).toContain(sha256(c.value));
    expect(rows.rows.map((r) => r.id_hash)).not.toContain(c.value);
    const me = await h.app.inject({ url: '/api/me', headers: { cookie: `sg_session=${c.value}` } });
    expect(me.json().user.email).toBe('staff@school.example');
  });

  it('marks the cookie Secure when the console is served over TLS', async () => {
    const res = await h.app.inject({
      method: 'POST', url: '/api/login', payload: { email: 'staff@school.example', password: PASSWORD },
      headers: { 'x-forwarded-proto': 'https' },
    });
    // fastify does not trust proxy headers by default; the public URL decides instead
    expect(res.cookies.find((x) => x.name === 'sg_session')!.secure).toBeFalsy();
    // The config object is the app's own: a public https URL means the console is behind TLS.
    h.config.publicUrl = 'https://filter.school.example';
    try {
      const r = await h.app.inject({ method: 'POST', url: '/api/login', payload: { email: 'staff@school.example', password: PASSWORD } });
      expect(r.cookies.find((x) => x.name === 'sg_session')!.secure).toBe(true);
    } finally {
      h.config.publicUrl = null;
    }
  });

  it('refuses a wrong password or unknown account with 401 SG_ERR_LOGIN and audits it', async () => {
    for (const payload of [{ email: 'staff@school.example', password: 'wrong' }, { email: 'nobody@school.example', password: 'x' }]) {
      const res = await h.app.inject({ method: 'POST', url: '/api/login', payload });
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('SG_ERR_LOGIN');
      expect(res.cookies.find((x) => x.name === 'sg_session')).toBeUndefined();
    }
    const audit = await h.db.query<{ actor: string }>("SELECT actor FROM audit_log WHERE action = 'login_failed'");
    expect(audit.rows.map((r) => r.actor)).toEqual(expect.arrayContaining(['staff@school.example', 'nobody@school.example']));
  });

  it('rate-limits login attempts (429 SG_ERR_RATE_LIMITED), even with the right password', async () => {
    const { email } = await createUser(h.db, { email: 'target@school.example', role: 'staff', password: PASSWORD });
    const codes: number[] = [];
    for (let i = 0; i < 7; i++) {
      const res = await h.app.inject({ method: 'POST', url: '/api/login', payload: { email, password: i < 6 ? 'guess' + i : PASSWORD } });
      codes.push(res.statusCode);
      if (res.statusCode === 429) expect(res.json().error.code).toBe('SG_ERR_RATE_LIMITED');
    }
    expect(codes.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    expect(codes.slice(5)).toEqual([429, 429]);
  });

  it('refuses a login posted from another origin', async () => {
    const res = await h.app.inject({
      method: 'POST', url: '/api/login', payload: { email: 'staff@school.example', password: PASSWORD }, headers: { origin: 'https://evil.example' },
    });
    expect(res.statusCode).toBe(403);
    expect(res.json().error.code).toBe('SG_ERR_BAD_ORIGIN');
  });

  it('checks the origin of cookie-authenticated state changes; Bearer requests are exempt', async () => {
    const cookie = h.users.staff.cookie;
    const payload = { url: 'http://games.example/', description: 'origin test' };
    const none = await h.app.inject({ method: 'POST', url: '/api/self-reports', headers: { cookie }, payload });
    expect(none.statusCode).toBe(403);
    expect(none.json().error.code).toBe('SG_ERR_BAD_ORIGIN');
    const evil = await h.app.inject({ method: 'POST', url: '/api/self-reports', headers: { cookie, origin: 'http://evil.example' }, payload });
    expect(evil.statusCode).toBe(403);
    const referer = await h.app.inject({ method: 'POST', url: '/api/self-reports', headers: { cookie, referer: `${ORIGIN}/console/` }, payload });
    expect(referer.statusCode).toBe(200);
    const own = await h.app.inject({ method: 'POST', url: '/api/self-reports', headers: { cookie, origin: 'http://localhost:80' }, payload });
    expect(own.statusCode).toBe(200); // inject's Host is localhost:80: the console's own origin
    // Reads need no origin.
    expect((await h.app.inject({ url: '/api/me', headers: { cookie } })).statusCode).toBe(200);

    const tok = await call(h, 'network_manager', 'POST', '/api/tokens', { name: 'ci' });
    expect(tok.statusCode).toBe(200);
    const { token } = tok.json();
    expect(token).toMatch(/^sgt_/);
    const stored = await h.db.query<{ token_hash: string }>('SELECT token_hash FROM api_tokens');
    expect(stored.rows.map((r) => r.token_hash)).toContain(sha256(token));
    const viaToken = await h.app.inject({
      method: 'POST', url: '/api/overrides', headers: { authorization: `Bearer ${token}` },
      payload: { action: 'block', entry: 'bearer.example', reason: 'automation' },
    });
    expect(viaToken.statusCode, viaToken.body).toBe(200);
    expect(viaToken.json().override.author).toBe('network_manager@school.example');
    // A token carries its owner's role, no more.
    const forbidden = await h.app.inject({ url: '/api/incidents', headers: { authorization: `Bearer ${token}` } });
    expect(forbidden.statusCode).toBe(403);
    const mine = await call(h, 'network_manager', 'GET', '/api/tokens');
    expect(mine.json().items[0]).toMatchObject({ name: 'ci', revoked: false });
    expect(mine.json().items[0].lastUsedAt).not.toBeNull();
    expect(mine.body).not.toContain(token);
    const notMine = await call(h, 'safeguarding_lead', 'DELETE', `/api/tokens/${tok.json().id}`);
    expect(notMine.statusCode).toBe(404);
    const revoke = await call(h, 'network_manager', 'DELETE', `/api/tokens/${tok.json().id}`);
    expect(revoke.statusCode).toBe(200);
    expect((await h.app.inject({ url: '/api/lists', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(401);
    const bogus = await h.app.inject({ url: '/api/lists', headers: { authorization: 'Bearer sgt_nope' } });
    expect(bogus.statusCode).toBe(401);
  });

  it('logout ends the session server-side; disabled accounts lose access at once', async () => {
    const login = await h.app.inject({ method: 'POST', url: '/api/login', payload: { email: 'safeguarding_lead@school.example', password: PASSWORD } });
    const cookie = sessionCookie(login);
    const out = await h.app.inject({ method: 'POST', url: '/api/logout', headers: { cookie, origin: ORIGIN } });
    expect(out.statusCode).toBe(200);
    expect((await h.app.inject({ url: '/api/me', headers: { cookie } })).statusCode).toBe(401);

    const u = await createUser(h.db, { email: 'leaver@school.example', role: 'staff', password: PASSWORD });
    const l2 = await h.app.inject({ method: 'POST', url: '/api/login', payload: { email: u.email, password: PASSWORD } });
    const c2 = sessionCookie(l2);
    expect((await h.app.inject({ url: '/api/me', headers: { cookie: c2 } })).statusCode).toBe(200);
    await h.db.query('UPDATE users SET disabled = true WHERE id = $1', [u.id]);
    expect((await h.app.inject({ url: '/api/me', headers: { cookie: c2 } })).statusCode).toBe(401);
    const again = await h.app.inject({ method: 'POST', url: '/api/login', payload: { email: u.email, password: PASSWORD } });
    expect(again.statusCode).toBe(401);
  });

  it(`a session lasts ${SESSION_HOURS} hours: refused once past its lifetime, and swept at the next login`, async () => {
    const u = await createUser(h.db, { email: 'expiry@school.example', role: 'staff', password: PASSWORD });
    const login = () => h.app.inject({ method: 'POST', url: '/api/login', payload: { email: u.email, password: PASSWORD }, remoteAddress: '127.0.0.77' });
    const first = await login();
    expect(first.statusCode).toBe(200);
    const c = first.cookies.find((x) => x.name === 'sg_session')!;
    expect(c.maxAge).toBe(SESSION_HOURS * 3600); // the browser forgets it when the server does
    const cookie = `sg_session=${c.value}`;
    // The server's own clock sets the lifetime: 12 hours from the login, give or take the test.
    const life = await h.db.query<{ s: number }>(
      'SELECT extract(epoch FROM expires_at - now())::float8 AS s FROM sessions WHERE id_hash = $1', [sha256(c.value)],
    );
    expect(life.rows[0].s).toBeGreaterThan(SESSION_HOURS * 3600 - 120);
    expect(life.rows[0].s).toBeLessThanOrEqual(SESSION_HOURS * 3600);
    const me = () => h.app.inject({ url: '/api/me', headers: { cookie } });
    // A minute before the end it still works; a second after, the same cookie is refused.
    await h.db.query("UPDATE sessions SET expires_at = now() + interval '1 minute' WHERE id_hash = $1", [sha256(c.value)]);
    expect((await me()).statusCode).toBe(200);
    await h.db.query("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id_hash = $1", [sha256(c.value)]);
    const late = await me();
    expect(late.statusCode).toBe(401);
    expect(late.json().error.code).toBe('SG_ERR_UNAUTHENTICATED');
    const write = await h.app.inject({ method: 'POST', url: '/api/me/password', headers: { cookie, origin: ORIGIN }, payload: { currentPassword: PASSWORD, newPassword: 'another long passphrase' } });
    expect(write.statusCode).toBe(401);
    // The expired row does not linger with the user's id in it.
    expect((await login()).statusCode).toBe(200);
    const left = await h.db.query('SELECT 1 FROM sessions WHERE id_hash = $1', [sha256(c.value)]);
    expect(left.rows).toHaveLength(0);
  });

  it('accounts: generated passwords are returned once and work; a network manager cannot mint a DSL', async () => {
    const made = await call(h, 'safeguarding_lead', 'POST', '/api/users', { email: 'new.teacher@school.example', role: 'staff' });
    expect(made.statusCode, made.body).toBe(200);
    const { password } = made.json();
    expect(password).toHaveLength(24);
    const login = await h.app.inject({ method: 'POST', url: '/api/login', payload: { email: 'new.teacher@school.example', password } });
    expect(login.statusCode).toBe(200);
    const dup = await call(h, 'safeguarding_lead', 'POST', '/api/users', { email: 'NEW.teacher@school.example', role: 'staff' });
    expect(dup.statusCode).toBe(409);
    expect(dup.json().error.code).toBe('SG_ERR_USER_EXISTS');
    const escalate = await call(h, 'network_manager', 'POST', '/api/users', { email: 'sneaky@school.example', role: 'safeguarding_lead' });
    expect(escalate.statusCode).toBe(403);
    const list = await call(h, 'network_manager', 'GET', '/api/users');
    expect(list.json().items.some((u: { email: string }) => u.email === 'sneaky@school.example')).toBe(false);
    expect(JSON.stringify(list.json())).not.toContain('scrypt$');
    // Managing accounts: a leaver is disabled (sessions end); nobody promotes past their own reach.
    const teacher = made.json().user;
    const tc = sessionCookie(login);
    const nmPromote = await call(h, 'network_manager', 'PATCH', `/api/users/${teacher.id}`, { role: 'safeguarding_lead' });
    expect(nmPromote.statusCode).toBe(403);
    const nmOnDsl = await call(h, 'network_manager', 'PATCH', `/api/users/${h.users.safeguarding_lead.id}`, { disabled: true });
    expect(nmOnDsl.statusCode).toBe(403);
    const self = await call(h, 'safeguarding_lead', 'PATCH', `/api/users/${h.users.safeguarding_lead.id}`, { disabled: true });
    expect(self.statusCode).toBe(400);
    const off = await call(h, 'network_manager', 'PATCH', `/api/users/${teacher.id}`, { disabled: true });
    expect(off.statusCode, off.body).toBe(200);
    expect(off.json().user).toMatchObject({ id: teacher.id, disabled: true, role: 'staff' });
    expect((await h.app.inject({ url: '/api/me', headers: { cookie: tc } })).statusCode).toBe(401);
    expect((await call(h, 'safeguarding_lead', 'PATCH', '/api/users/99999', { disabled: true })).statusCode).toBe(404);
    const badRole = await call(h, 'safeguarding_lead', 'POST', '/api/users', { email: 'x@school.example', role: 'admin' });
    expect(badRole.statusCode).toBe(400);
    expect(badRole.json().error.code).toBe('SG_ERR_VALIDATION');
  });

  it('also limits login attempts per address across many accounts (password spraying)', async () => {
    let limitedAt = 0;
    for (let i = 1; i <= 41 && !limitedAt; i++) {
      const res = await h.app.inject({ method: 'POST', url: '/api/login', payload: { email: `spray${i}@school.example`, password: 'Summer2026!' } });
      if (res.statusCode === 429) {
        limitedAt = i;
        expect(res.json().error.code).toBe('SG_ERR_RATE_LIMITED');
      } else expect(res.statusCode).toBe(401);
    }
    // Each email was tried once: only the per-address limit can have stopped it.
    expect(limitedAt).toBeGreaterThan(0);
  });
});
