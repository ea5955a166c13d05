import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { chromiumMissing, chromiumPath, need, projectRoot } from '../helpers/parts';
import { consoleUsers, startConsoleApp, type ConsoleApp } from './helpers/console-app';
import { startIdp, type TestIdp } from './helpers/oidc-provider';
import { OIDC_COOKIE, transactionSigner } from '../../admin-api/oidc';
import { SESSION_COOKIE } from '../../admin-api/auth';
import { createLogger } from '../../core/log';

/**
 * Console sign-in with the school's identity provider (issue 15 point 3), against a real OpenID
 * Connect provider on loopback (oidc-provider) and the real admin API, in Chromium: the provider's
 * own login and consent pages, the code exchange, the ID token's checks, the role from the groups
 * claim or the email list, and the account row. The tampering cases replay a real callback with
 * one thing changed, through inject().
 */
// page.evaluate() callbacks run in the browser, and the project's tsconfig has no DOM library.
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any

const skipReason = need('Chromium', chromiumMissing());

const DSL_GROUP = '0b7c3f0e-dsl-group';
const STAFF_GROUP = '5a1d9c2b-staff-group';

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

describe.skipIf(skipReason !== null)('console sign-in with an OpenID Connect provider, in Chromium', () => {
  let env: ConsoleApp;
  let idp: TestIdp;
  let browser: Browser;
  const secret = randomBytes(32);
  const contexts: BrowserContext[] = [];
  const pageErrors: string[] = [];
  let log = '';

  beforeAll(async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    idp = await startIdp({
      redirectUri: `${base}/api/auth/oidc/callback`,
      people: {
        // The DSL by the Entra group's object id; a teacher by the staff group; a teacher given a role by email only.
        dana: { email: 'dana.lead@school.test', email_verified: true, name: 'Dana Lead (IdP)', groups: [DSL_GROUP, STAFF_GROUP] },
        sam: { email: 'sam.teacher@school.test', email_verified: true, name: 'Sam Teacher (IdP)', groups: [STAFF_GROUP] },
        erin: { email: 'Erin.Auditor@school.test', email_verified: true, name: 'Erin Auditor', groups: [] },
        // In the directory, but in no group the console maps: a pupil.
        pat: { email: 'pat.pupil@school.test', email_verified: true, name: 'Pat Pupil', groups: ['pupils-year-9'] },
        leaver: { email: 'lee.leaver@school.test', email_verified: true, name: 'Lee Leaver', groups: [STAFF_GROUP] },
        mover: { email: 'mo.mover@school.test', email_verified: true, name: 'Mo Mover', groups: [STAFF_GROUP] },
        // Claims the address of the local (password) DSL account: must not take it over.
        squatter: { email: consoleUsers.dsl.email, email_verified: true, name: 'Not Dana', groups: [STAFF_GROUP] },
        tamper: { email: 'tess.tamper@school.test', email_verified: true, name: 'Tess', groups: [STAFF_GROUP] },
      },
    });
    env = await startConsoleApp({
      port,
      // Everything the console logs, down to debug, is checked for secrets at the end.
      logger: createLogger({ level: 'debug', destination: new Writable({ write: (c, _e, cb) => { log += c; cb(); } }) }),
      referenceSecret: secret,
      configFile: (dataDir) => {
        const secretFile = path.join(dataDir, 'oidc-client-secret');
        writeFileSync(secretFile, `${idp.clientSecret}\n`, { mode: 0o600 });
        return {
          publicUrl: base,
          oidc: {
            issuer: idp.issuer,
            clientId: idp.clientId,
            clientSecretFile: secretFile,
            label: 'Test Entra',
            roleMap: {
              groups: { [DSL_GROUP]: 'safeguarding_lead', [STAFF_GROUP]: 'staff' },
              emails: { 'erin.auditor@school.test': 'auditor' },
            },
          },
        };
      },
    });
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await env?.close();
    await idp?.close();
  });

  async function newPage(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB', timezoneId: 'UTC' });
    contexts.push(context);
    // Loopback only: the provider's default pages ask for a web font from the internet.
    await context.route('**/*', (route) => (/^http:\/\/127\.0\.0\.1[:/]/.test(route.request().url()) ? route.continue() : route.abort()));
    const p = await context.newPage();
    p.on('pageerror', (err) => pageErrors.push(err.message));
    return p;
  }

  /** Console → "Sign in with Test Entra" → the provider's login page → its consent page; back to the console. */
  async function signInAtProvider(p: Page, login: string) {
    await p.goto(`${env.base}/`);
    await p.waitForURL(/\/console\/#\/login/);
    await p.getByRole('link', { name: 'Sign in with Test Entra' }).click();
    await p.waitForURL(new RegExp(`^${idp.issuer}/interaction/`));
    await p.locator('input[name="login"]').fill(login);
    await p.locator('input[name="password"]').fill('anything at the provider');
    await p.getByRole('button', { name: 'Sign-in' }).click();
    await p.getByRole('button', { name: 'Continue' }).click();
  }

  const apiStatus = (p: Page, url: string) => p.evaluate(async (u: string) => (await fetch(u)).status, url);
  const audit = async (action: string) =>
    (await env.db.query<{ actor: string; details: Record<string, unknown> }>('SELECT actor, details FROM audit_log WHERE action = $1 ORDER BY id', [action])).rows;
  const account = async (email: string) =>
    (await env.db.query<{ id: number; role: string; password_hash: string; display_name: string; oidc_subject: string | null; disabled: boolean }>(
      'SELECT id, role, password_hash, display_name, oidc_subject, disabled FROM users WHERE lower(email) = lower($1)', [email])).rows[0];

  it('signs the DSL in through the provider\'s own pages, with the role from their group, into the incident queue', async () => {
    const p = await newPage();
    await signInAtProvider(p, 'dana');
    await p.waitForURL(/\/console\/#\/incidents$/);
    await p.getByRole('heading', { name: 'Incidents', level: 1 }).waitFor();
    await expect.poll(() => p.locator('table.incidents tbody tr').count()).toBe(7);
    await expect.poll(async () => p.locator('#whoami').textContent()).toContain('Dana Lead (IdP)');
    // In both the DSL and the staff group: the DSL role (ROLE_PRECEDENCE).
    expect(await p.locator('#nav a').allTextContents()).toEqual(['Incidents', 'Phrases', 'Report access', 'Lists', 'Audit log', 'Accounts']);
    const row = await account('dana.lead@school.test');
    expect(row).toMatchObject({ role: 'safeguarding_lead', oidc_subject: 'dana', display_name: 'Dana Lead (IdP)' });
    expect((await audit('login')).filter((a) => a.details.via === 'oidc').map((a) => a.actor)).toContain('dana.lead@school.test');
    // The session is an ordinary console session: strict, http-only, 12 hours.
    const cookie = (await p.context().cookies()).find((c) => c.name === SESSION_COOKIE);
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    // The account has no password: nobody can password-login to it, whatever they try.
    const tried = await env.app.inject({ method: 'POST', url: '/api/login', payload: { email: 'dana.lead@school.test', password: '!oidc' } });
    expect(tried.statusCode).toBe(401);
    // The accounts page says which accounts the provider signs in.
    await p.getByRole('link', { name: 'Accounts' }).click();
    const danaRow = p.locator('tr', { has: p.getByRole('rowheader', { name: 'dana.lead@school.test' }) });
    await expect.poll(async () => danaRow.textContent()).toContain('Identity provider');
    const localRow = p.locator('tr', { has: p.getByRole('rowheader', { name: consoleUsers.dsl.email }) });
    expect(await localRow.textContent()).toContain('Password');
  });

  it('gives a staff-mapped person only their own pages', async () => {
    const p = await newPage();
    await signInAtProvider(p, 'sam');
    await p.waitForURL(/\/console\/#\/report$/);
    expect(await p.locator('#nav a').allTextContents()).toEqual(['Report access', 'My reports']);
    expect(await apiStatus(p, '/api/me')).toBe(200);
    expect(await apiStatus(p, '/api/stats')).toBe(403);
    expect(await apiStatus(p, '/api/people/pupil.a%40school.test/timeline')).toBe(403);
    const mine = await p.evaluate(async () => ((await (await fetch('/api/incidents')).json()) as { items: unknown[] }).items.length);
    expect(mine).toBe(0); // the seeded incidents are pupils', none theirs
  });

  it('maps a person by the email list (any case), where the provider sends no group for them', async () => {
    const p = await newPage();
    await signInAtProvider(p, 'erin');
    await p.waitForURL(/\/console\/#\/audit$/);
    expect(await p.locator('#nav a').allTextContents()).toEqual(['Audit log']);
    expect((await account('erin.auditor@school.test')).role).toBe('auditor');
  });

  it('refuses a person with no mapped role, with a page that says why, audited, and makes no account', async () => {
    const p = await newPage();
    const answers: number[] = [];
    p.on('response', (r) => { if (r.url().includes('/api/auth/oidc/callback')) answers.push(r.status()); });
    await signInAtProvider(p, 'pat');
    await p.getByRole('heading', { name: 'No console access for this account' }).waitFor();
    expect(answers).toEqual([403]);
    expect(await p.locator('body').textContent()).toContain('Ask the safeguarding lead');
    // The page's own CSP lets it fetch nothing: the cookie jar says there is no session.
    expect((await p.context().cookies()).some((c) => c.name === SESSION_COOKIE)).toBe(false);
    expect(await account('pat.pupil@school.test')).toBeUndefined();
    expect((await audit('login_refused')).find((a) => a.actor === 'pat.pupil@school.test')?.details).toMatchObject({ via: 'oidc', reason: 'no_role' });
  });

  it('refuses at the callback an account disabled in the console, whatever the provider says', async () => {
    const first = await newPage();
    await signInAtProvider(first, 'leaver');
    await first.waitForURL(/\/console\/#\/report$/);
    const { id } = await account('lee.leaver@school.test');
    // The DSL disables the leaver in the console: their session ends at once...
    const dsl = await env.app.inject({ method: 'POST', url: '/api/login', payload: { email: consoleUsers.dsl.email, password: consoleUsers.dsl.password } });
    const dslCookie = `${SESSION_COOKIE}=${dsl.cookies.find((c) => c.name === SESSION_COOKIE)!.value}`;
    const off = await env.app.inject({ method: 'PATCH', url: `/api/users/${id}`, headers: { cookie: dslCookie, origin: env.base }, payload: { disabled: true } });
    expect(off.statusCode).toBe(200);
    expect(await apiStatus(first, '/api/me')).toBe(401);
    // ...and signing in again at the provider (still a staff member there) does not bring it back.
    const again = await newPage();
    await signInAtProvider(again, 'leaver');
    await again.getByRole('heading', { name: 'This console account is disabled' }).waitFor();
    expect((await again.context().cookies()).some((c) => c.name === SESSION_COOKIE)).toBe(false);
    expect((await audit('login_refused')).find((a) => a.actor === 'lee.leaver@school.test')?.details).toMatchObject({ reason: 'disabled' });
  });

  it('re-derives the role at every sign-in: a group removed at the provider ends access at the next one', async () => {
    const p = await newPage();
    await signInAtProvider(p, 'mover');
    await p.waitForURL(/\/console\/#\/report$/);
    expect(await apiStatus(p, '/api/me')).toBe(200);
    idp.people.mover.groups = ['former-staff'];
    const later = await newPage();
    await signInAtProvider(later, 'mover');
    await later.getByRole('heading', { name: 'No console access for this account' }).waitFor();
    // What the account still held here ended with that refusal, not 12 hours later.
    expect(await apiStatus(p, '/api/me')).toBe(401);
    expect((await account('mo.mover@school.test')).disabled).toBe(false);
  });

  it('does not let the provider take over a password account with the same email', async () => {
    const p = await newPage();
    await signInAtProvider(p, 'squatter');
    await p.getByRole('heading', { name: 'This email address already has a console account' }).waitFor();
    const row = await account(consoleUsers.dsl.email);
    expect(row).toMatchObject({ role: 'safeguarding_lead', oidc_subject: null, display_name: consoleUsers.dsl.displayName });
  });

  it('keeps password sign-in for the first account and break-glass, beside the provider\'s button', async () => {
    const p = await newPage();
    await p.goto(`${env.base}/`);
    await p.waitForURL(/\/console\/#\/login/);
    await p.getByRole('link', { name: 'Sign in with Test Entra' }).waitFor();
    // WCAG 2.1 A/AA on the login page with both ways in (axe-core, evaluated through DevTools past the CSP).
    await p.evaluate(readFileSync(path.join(projectRoot, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8'));
    const violations = await p.evaluate(async () => (await (globalThis as any).axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })).violations.map((v: { id: string }) => v.id)); // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(violations).toEqual([]);
    await p.getByLabel('Email').fill(consoleUsers.dsl.email);
    await p.getByLabel('Password').fill(consoleUsers.dsl.password);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.getByRole('heading', { name: 'Incidents', level: 1 }).waitFor();
    await expect.poll(async () => p.locator('#whoami').textContent()).toContain(consoleUsers.dsl.displayName);
  });

  describe('a real callback replayed with one thing changed (inject)', () => {
    let p: Page;
    beforeAll(async () => {
      p = await newPage();
      // Signed in at the provider once, so each further start comes straight back with a fresh code.
      await signInAtProvider(p, 'tamper');
      await p.waitForURL(/\/console\/#\/report$/);
    });

    /**
     * A fresh authorization response and its sign-in cookie, caught before they reach the console:
     * the start through inject(), the provider's answer through the browser's own cookie jar (its
     * session there), without following the redirect back.
     */
    async function capture(): Promise<{ query: URLSearchParams; cookie: string }> {
      const start = await env.app.inject({ url: '/api/auth/oidc/start' });
      expect(start.statusCode).toBe(302);
      const cookie = start.cookies.find((c) => c.name === OIDC_COOKIE)!.value;
      const atProvider = await p.context().request.get(start.headers.location as string, { maxRedirects: 0 });
      const back = new URL(atProvider.headers().location, idp.issuer);
      expect(back.pathname).toBe('/api/auth/oidc/callback');
      expect(back.searchParams.get('code')).toBeTruthy();
      return { query: back.searchParams, cookie };
    }

    const signer = () => transactionSigner(secret);
    /** The sign-in cookie with a field changed, signed with the server's own key: what only a server bug could make. */
    function forged(cookie: string, change: Record<string, unknown>): string {
      const t = JSON.parse(Buffer.from(signer().unsign(cookie).value!, 'base64url').toString('utf8'));
      return signer().sign(Buffer.from(JSON.stringify({ ...t, ...change })).toString('base64url'));
    }
    const callback = (query: URLSearchParams, cookie: string | null) =>
      env.app.inject({ url: `/api/auth/oidc/callback?${query}`, headers: cookie === null ? {} : { cookie: `${OIDC_COOKIE}=${cookie}` } });
    const failures = async () => (await audit('login_failed')).filter((a) => a.details.via === 'oidc').length;

    it('signs in with the untouched response (the control)', async () => {
      const { query, cookie } = await capture();
      const res = await callback(query, cookie);
      expect(res.statusCode).toBe(303);
      expect(res.headers.location).toBe('/console/');
      expect(res.cookies.some((c) => c.name === SESSION_COOKIE && c.value)).toBe(true);
    });

    it('refuses a changed state, a changed nonce, a changed PKCE verifier, a broken or missing cookie, and an expired one', async () => {
      const cases: Array<[string, (q: URLSearchParams, c: string) => [URLSearchParams, string | null]]> = [
        ['state in the URL', (q, c) => { const x = new URLSearchParams(q); x.set('state', `${q.get('state')}x`); return [x, c]; }],
        ['nonce in the cookie', (q, c) => [q, forged(c, { nonce: 'another-nonce' })]],
        ['state in the cookie', (q, c) => [q, forged(c, { state: 'another-state' })]],
        ['PKCE verifier in the cookie', (q, c) => [q, forged(c, { verifier: 'x'.repeat(43) })]],
        ['cookie signature', (q, c) => [q, `${c.slice(0, -2)}${c.endsWith('AA') ? 'BB' : 'AA'}`]],
        ['no cookie', (q) => [q, null]],
        ['expired cookie', (q, c) => [q, forged(c, { exp: Math.floor(Date.now() / 1000) - 1 })]],
      ];
      for (const [what, change] of cases) {
        const { query, cookie } = await capture();
        const before = await failures();
        const res = await callback(...change(query, cookie));
        expect(res.statusCode, what).toBe(400);
        expect(res.body, what).toContain('Sign-in did not complete');
        expect(res.cookies.some((c) => c.name === SESSION_COOKIE && c.value), what).toBe(false);
        expect(await failures(), what).toBe(before + 1);
      }
    });

    it('refuses a code used twice', async () => {
      const { query, cookie } = await capture();
      expect((await callback(query, cookie)).statusCode).toBe(303);
      const replay = await callback(query, cookie);
      expect(replay.statusCode).toBe(400);
      expect(replay.cookies.some((c) => c.name === SESSION_COOKIE && c.value)).toBe(false);
    });
  });

  it('raised no error in the console pages, and logged neither the client secret nor who signed in', () => {
    expect(pageErrors).toEqual([]);
    expect(log).not.toContain(idp.clientSecret);
    for (const person of Object.values(idp.people)) expect(log).not.toContain(person.email);
  });
});
