import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../core/config';
import { isSchoolgateError } from '../../core/errors';
import { createLogger, silentLogger } from '../../core/log';
import { createSession, createUser, NO_PASSWORD, userForSession, verifyPassword } from '../../admin-api/auth';
import { openDb } from '../../db/db';
import { migrate } from '../../db/migrate';
import { createTestDatabase, postgresMissing } from '../../harness/pg';
import { need } from '../helpers/parts';
import { createOidcClient, OidcRefused, roleFor } from '../../admin-api/oidc';
import { harness } from './helpers';

/**
 * Console sign-in with the school's identity provider (issue 15 point 3) where no provider is
 * needed: the `oidc` config key's checks, the role map, the client secret file, an unreachable
 * provider, and accounts without a password. The sign-in itself: test/e2e/oidc.test.ts.
 */
const tmp = () => mkdtempSync(path.join(tmpdir(), 'sg-oidc-'));
const pgSkip = need('PostgreSQL', await postgresMissing());

const good = {
  issuer: 'https://login.microsoftonline.com/0f1e2d3c-aaaa-bbbb-cccc-123456789abc/v2.0',
  clientId: 'b1c2d3e4-1111-2222-3333-444455556666',
  clientSecretFile: 'oidc-secret',
  label: 'Microsoft',
  roleMap: { groups: { 'c0ffee00-dsl': 'safeguarding_lead' }, emails: { 'head@school.example': 'auditor' } },
};

function refusal(oidc: unknown): string {
  const dir = tmp();
  writeFileSync(path.join(dir, 'schoolgate.json'), JSON.stringify({ oidc }));
  try {
    loadConfig({ 'data-dir': dir }, {}, dir);
  } catch (err) {
    expect(isSchoolgateError(err, 'SG_ERR_CONFIG')).toBe(true);
    return (err as Error).message;
  }
  throw new Error(`accepted: ${JSON.stringify(oidc)}`);
}

describe('the oidc config key', () => {
  it('loads, with the secret file resolved where the command runs, and no secret in the config', () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'schoolgate.json'), JSON.stringify({ oidc: good }));
    const c = loadConfig({ 'data-dir': dir }, {}, dir);
    expect(c.oidc).toMatchObject({ ...good, clientSecretFile: path.join(dir, 'oidc-secret') });
    expect(loadConfig({ 'data-dir': tmp() }, {}).oidc).toBeNull();
    // Google Workspace: its issuer, roles by email (Google sends no groups claim).
    expect(() => refusal({ ...good, issuer: 'https://accounts.google.com', roleMap: { emails: { 'dsl@school.example': 'safeguarding_lead' } } })).toThrow(/accepted/);
  });

  it('refuses each mistake naming its key path, all at once', () => {
    expect(refusal({ ...good, issuer: 'http://idp.school.example' })).toContain('oidc.issuer must be https (http only on this machine\'s loopback)');
    expect(refusal({ ...good, issuer: 'https://login.microsoftonline.com/common/v2.0' })).toContain('oidc.issuer must be the school\'s own tenant');
    expect(refusal({ ...good, issuer: 'not a url' })).toContain('oidc.issuer is not a URL');
    expect(refusal({ ...good, redirectUrl: 'ftp://x' })).toContain('oidc.redirectUrl must be https');
    expect(refusal({ ...good, roleMap: { groups: { staff: 'teacher' } } })).toContain('oidc.roleMap.groups.staff: "teacher" is not a console role (safeguarding_lead, network_manager, staff, auditor)');
    expect(refusal({ ...good, roleMap: { emails: { 'not-an-email': 'staff' } } })).toContain('oidc.roleMap.emails: "not-an-email" is not an email address');
    expect(refusal({ ...good, roleMap: { teams: {} } })).toContain('unknown key oidc.roleMap.teams');
    expect(refusal({ ...good, clientSecret: 'inline' })).toContain('unknown key oidc.clientSecret ');
    const all = refusal({ issuer: 'https://idp.example', label: '' });
    for (const k of ['clientId', 'clientSecretFile', 'roleMap']) expect(all).toContain(`oidc.${k} is required`);
    expect(all).toContain('oidc.label must be a short name');
    expect(refusal('yes')).toContain('oidc must be an object');
    // Plain http to this machine is allowed: a local provider, nothing on the network.
    expect(() => refusal({ ...good, issuer: 'http://127.0.0.1:9999' })).toThrow(/accepted/);
  });
});

describe('the role a person gets', () => {
  const map = {
    groups: { dsl: 'safeguarding_lead', nm: 'network_manager', staff: 'staff', audit: 'auditor' },
    emails: { 'Head@School.example': 'auditor' },
  } as const;
  it('takes an email entry first (any case), else the most trusted role among their groups, else none', () => {
    expect(roleFor(map, 'head@school.example', ['dsl'])).toBe('auditor');
    expect(roleFor(map, 'a@school.example', ['staff', 'dsl'])).toBe('safeguarding_lead');
    expect(roleFor(map, 'a@school.example', ['staff', 'audit'])).toBe('auditor');
    expect(roleFor(map, 'a@school.example', ['staff', 'nm', 'audit'])).toBe('network_manager');
    expect(roleFor(map, 'a@school.example', ['staff'])).toBe('staff');
    expect(roleFor(map, 'a@school.example', ['pupils', 'Staff', 'toString', '__proto__'])).toBeNull();
    expect(roleFor({}, 'a@school.example', ['staff'])).toBeNull();
  });
});

describe('the client', () => {
  const withOidc = (dir: string, over: Partial<NonNullable<Config['oidc']>> = {}): Partial<Config> => ({
    oidc: { ...(good as NonNullable<Config['oidc']>), clientSecretFile: path.join(dir, 'secret'), ...over },
  });

  it('stops the start, naming the key, when the client secret file is missing or empty', () => {
    const dir = tmp();
    const config = { ...loadConfig({ 'data-dir': dir }, {}, dir), ...withOidc(dir) };
    expect(() => createOidcClient(config, Buffer.alloc(32), silentLogger)).toThrow(/invalid configuration/);
    expect(() => createOidcClient(config, Buffer.alloc(32), silentLogger)).toThrow(/oidc\.clientSecretFile .*secret cannot be read: ENOENT/);
    writeFileSync(path.join(dir, 'secret'), '\n');
    expect(() => createOidcClient(config, Buffer.alloc(32), silentLogger)).toThrow(/oidc\.clientSecretFile .*secret is empty/);
    writeFileSync(path.join(dir, 'secret'), 'a-secret\n');
    expect(createOidcClient(config, Buffer.alloc(32), silentLogger)?.redirectUrl).toBe('http://127.0.0.1:8081/api/auth/oidc/callback');
    expect(createOidcClient({ ...config, publicUrl: 'https://filter.school.example/' }, Buffer.alloc(32), silentLogger)?.redirectUrl).toBe('https://filter.school.example/api/auth/oidc/callback');
  });

  it('offers the button when configured; an unreachable provider gets a page, is retried, and its secret is never logged', async () => {
    // A loopback port nothing listens on: the provider is down.
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const dir = tmp();
    const secret = 'the-client-secret-4f9a1c';
    writeFileSync(path.join(dir, 'secret'), `${secret}\n`);
    let log = '';
    const logger = createLogger({ level: 'debug', destination: new Writable({ write: (c, _e, cb) => { log += c; cb(); } }) });
    const h = await harness({ config: withOidc(dir, { issuer: `http://127.0.0.1:${port}` }), logger });
    try {
      expect((await h.app.inject({ url: '/api/auth/oidc' })).json()).toEqual({ enabled: true, label: 'Microsoft', startUrl: '/api/auth/oidc/start' });
      for (let i = 0; i < 2; i++) {
        const res = await h.app.inject({ url: '/api/auth/oidc/start' });
        expect(res.statusCode).toBe(503);
        expect(res.headers['content-type']).toContain('text/html');
        expect(res.body).toContain('The identity provider cannot be reached');
        expect(res.cookies.some((c) => c.name === 'sg_oidc')).toBe(false);
      }
      // Tried again at the second sign-in, not remembered as down.
      expect(log.match(/identity provider discovery failed/g)?.length).toBe(2);
      expect(log).not.toContain(secret);
      // Passwords still work meanwhile (break-glass).
      expect((await h.app.inject({ method: 'POST', url: '/api/login', payload: { email: h.users.safeguarding_lead.email, password: 'correct horse battery' } })).statusCode).toBe(200);
    } finally {
      await h.close();
    }
  }, 120_000);
});

describe('an account the provider signs in', () => {
  it('has no password: none matches, and checking one costs a real hash', async () => {
    for (const guess of [NO_PASSWORD, '', 'correct horse battery', 'scrypt$16384$8$1$AAAA$AAAA']) expect(await verifyPassword(guess, NO_PASSWORD)).toBe(false);
    // As long as a real check (at least one scrypt), so timing does not tell such accounts apart.
    const t0 = performance.now();
    await verifyPassword('a guess', NO_PASSWORD);
    expect(performance.now() - t0).toBeGreaterThan(5);
  });
});

describe.skipIf(pgSkip !== null)('the account a person maps to, on PostgreSQL', () => {
  it('is made at the first sign-in, kept by subject, refused when disabled, unmapped, or on a password account\'s email', async () => {
    const database = await createTestDatabase('sg_oidc');
    const db = await openDb({ databaseUrl: database.url, dataDir: tmp() });
    try {
      await migrate(db);
      const dir = tmp();
      writeFileSync(path.join(dir, 'secret'), 'a-secret\n');
      const config = { ...loadConfig({ 'data-dir': dir }, {}, dir), oidc: { ...(good as NonNullable<Config['oidc']>), clientSecretFile: path.join(dir, 'secret') } };
      const client = createOidcClient(config, Buffer.alloc(32), silentLogger)!;
      const claims = (over: Partial<Parameters<typeof client.account>[1]> = {}) =>
        ({ subject: 'entra-oid-1', email: 'Teacher@School.example', emailVerified: undefined, name: 'A Teacher', groups: ['c0ffee00-dsl'], groupsOverage: false, ...over });
      const refused = async (c: ReturnType<typeof claims>) => {
        try {
          await client.account(db, c);
        } catch (err) {
          if (err instanceof OidcRefused) return err.reason;
          throw err;
        }
        return 'signed in';
      };

      const first = await client.account(db, claims());
      expect(first).toMatchObject({ email: 'Teacher@School.example', role: 'safeguarding_lead', displayName: 'A Teacher' });
      // Renamed at the provider, moved to the email list: the same account, its email and role following.
      const again = await client.account(db, claims({ email: 'head@school.example', name: null, groups: [] }));
      expect(again).toMatchObject({ id: first.id, email: 'head@school.example', role: 'auditor', displayName: 'A Teacher' });
      expect(await verifyPassword('anything', (await db.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE id = $1', [first.id])).rows[0].password_hash)).toBe(false);

      // No role any more: refused, and what the account held ends.
      const session = await createSession(db, first.id);
      expect(await userForSession(db, session)).not.toBeNull();
      expect(await refused(claims({ groups: ['pupils'] }))).toBe('no_role');
      expect(await userForSession(db, session)).toBeNull();

      // Disabled in the console: refused whatever the provider says.
      await db.query('UPDATE users SET disabled = true WHERE id = $1', [first.id]);
      expect(await refused(claims())).toBe('disabled');

      // A password account's email, or an unverified one, or none: refused, nothing made or changed.
      await createUser(db, { email: 'dsl@school.example', role: 'safeguarding_lead', password: 'a long passphrase' });
      expect(await refused(claims({ subject: 'entra-oid-2', email: 'DSL@school.example' }))).toBe('email_in_use');
      expect(await refused(claims({ subject: 'entra-oid-3', email: 'x@school.example', emailVerified: false }))).toBe('email_unverified');
      expect(await refused(claims({ subject: 'entra-oid-4', email: null }))).toBe('no_email');
      const rows = (await db.query<{ email: string; oidc_subject: string | null; role: string }>('SELECT email, oidc_subject, role FROM users ORDER BY id')).rows;
      expect(rows).toEqual([
        { email: 'head@school.example', oidc_subject: 'entra-oid-1', role: 'auditor' },
        { email: 'dsl@school.example', oidc_subject: null, role: 'safeguarding_lead' },
      ]);
    } finally {
      await db.close();
      await database.drop();
    }
  }, 120_000);
});
