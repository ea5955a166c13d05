import dns from 'node:dns';
import { rmSync } from 'node:fs';
import net from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser, getDummyHash, hashPassword, verifyPassword } from '../../admin-api/auth';
import { cliChangePassword } from '../../admin-api/routes/control';
import type { Verdict } from '../../blocklists/types';
import { initCa } from '../../certs/ca';
import { loadConfig } from '../../core/config';
import { silentLogger } from '../../core/log';
import { openDb } from '../../db/db';
import { migrate } from '../../db/migrate';
import type { Db } from '../../db/types';
import { createGateway } from '../../filter/gateway';
import { ClientIdentifier, type ProxyAuthDeps, type ProxyAuthLimits } from '../../filter/identify';
import { proxyAuthDeps, startSchoolgate, type SchoolgateHandle } from '../../server/start';
import { need } from '../helpers/parts';
import { postgresMissing, createTestDatabase } from '../../harness/pg';
import { bareGatewayDeps, fixtureLists, loopbackLookup, openTunnel, startOrigin, statusOf, tmpDir, viaProxy, type Origin } from './helpers';

const PW = 'correct horse battery';
const NEW_PW = 'a different long passphrase';
const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const quiet = () => new Writable({ write: (_c, _e, cb) => cb() });

async function waitFor(cond: () => Promise<boolean> | boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Sends one request and returns the response head (status line and headers) once it has arrived. */
function head(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d) => {
      out += d.toString('latin1');
      if (out.includes('\r\n\r\n')) {
        s.destroy();
        resolve(out.slice(0, out.indexOf('\r\n\r\n')));
      }
    });
    s.on('error', reject);
    s.on('close', () => resolve(out));
    s.write(text);
  });
}

describe('Proxy-Authorization: limits, audit, timing', () => {
  let db: Db;
  let ids: Record<string, number>;
  beforeAll(async () => {
    const dir = tmpDir('sg-proxyauth-');
    dirs.push(dir);
    db = await openDb({ databaseUrl: null, dataDir: dir, logger: silentLogger });
    await migrate(db);
    ids = {};
    for (const email of ['teacher@school.test', 'staff2@school.test', 'target@school.test', 'gone@school.test']) {
      ids[email] = (await createUser(db, { email, role: 'staff', password: PW })).id;
    }
    await db.query(`UPDATE users SET disabled = true WHERE email = 'gone@school.test'`);
  });
  afterAll(async () => db?.close());

  const base = { clients: [], defaultGroup: 'pupils', policyGroups: { staff: { categories: [] } }, allowedClients: ['127.0.0.0/8'] };

  /** An identifier with the real users table, scrypt and audit, counting lookups and hashes. */
  function identifier(opts: { proxyAuth: boolean; limits?: Partial<ProxyAuthLimits>; clock?: { t: number } }) {
    const count = { lookups: 0, hashes: 0 };
    const real = proxyAuthDeps(db, silentLogger, opts.limits);
    const deps: ProxyAuthDeps = {
      ...real,
      users: (e) => (count.lookups++, real.users(e)),
      verify: (p, h) => (count.hashes++, real.verify(p, h)),
      now: opts.clock ? () => opts.clock!.t : undefined,
    };
    return { id: new ClientIdentifier({ ...base, proxyAuth: opts.proxyAuth }, deps), count };
  }
  const auditRows = async (ip: string) =>
    (await db.query<{ actor: string; action: string; details: { ip: string; scope?: string } }>(
      `SELECT actor, action, details FROM audit_log WHERE action LIKE 'proxy_auth%' AND details->>'ip' = $1 ORDER BY id`, [ip],
    )).rows;

  it('never reads the header when proxy authentication is off: no lookup, no hash, no audit, no user', async () => {
    const { id, count } = identifier({ proxyAuth: false });
    const ok = await id.identify('127.0.0.9', basic('teacher@school.test', PW));
    expect(ok).toEqual({ ok: true, identity: { clientIp: '127.0.0.9', user: null, device: null, group: 'pupils', source: 'unknown' } });
    for (let i = 0; i < 30; i++) expect((await id.identify('127.0.0.9', basic('teacher@school.test', `guess-${i}`))).ok).toBe(true);
    expect(count).toEqual({ lookups: 0, hashes: 0 });
    expect(await auditRows('127.0.0.9')).toEqual([]);
  });

  it('refuses the right password from an address that guessed wrong too often, for a while; other addresses carry on', async () => {
    const clock = { t: 1_000_000 };
    const { id, count } = identifier({ proxyAuth: true, clock, limits: { perAddressAccount: 3, perAddress: 10, lockMs: 60_000, windowMs: 60_000 } });
    for (let i = 0; i < 3; i++) expect(await id.identify('127.0.0.2', basic('teacher@school.test', `wrong-${i}`))).toEqual({ ok: false, code: 'SG_ERR_PROXY_AUTH' });
    const hashes = count.hashes;
    expect(await id.identify('127.0.0.2', basic('teacher@school.test', PW))).toEqual({ ok: false, code: 'SG_ERR_PROXY_AUTH_LOCKED' });
    expect(count.hashes).toBe(hashes); // refused before any hash: a locked guesser learns nothing and costs nothing
    expect(await id.identify('127.0.0.3', basic('teacher@school.test', PW))).toMatchObject({ ok: true, identity: { user: 'teacher@school.test' } });
    // Only that account from that address: the same address may still sign in as someone else.
    expect(await id.identify('127.0.0.2', basic('staff2@school.test', PW))).toMatchObject({ ok: true });
    clock.t += 61_000;
    expect(await id.identify('127.0.0.2', basic('teacher@school.test', PW))).toMatchObject({ ok: true, identity: { user: 'teacher@school.test' } });

    await waitFor(async () => (await auditRows('127.0.0.2')).length >= 4, 'audit rows');
    const rows = await auditRows('127.0.0.2');
    expect(rows.map((r) => [r.action, r.actor, r.details.scope ?? null])).toEqual([
      ['proxy_auth_failed', 'teacher@school.test', null],
      ['proxy_auth_failed', 'teacher@school.test', null],
      ['proxy_auth_failed', 'teacher@school.test', null],
      ['proxy_auth_locked', 'teacher@school.test', 'address_account'],
    ]);
  });

  it('refuses an address spraying many accounts, whatever account it tries next', async () => {
    const { id } = identifier({ proxyAuth: true, limits: { perAddressAccount: 3, perAddress: 5 } });
    for (let i = 0; i < 5; i++) await id.identify('127.0.0.4', basic(`nobody${i}@school.test`, 'password1'));
    expect(await id.identify('127.0.0.4', basic('teacher@school.test', PW))).toEqual({ ok: false, code: 'SG_ERR_PROXY_AUTH_LOCKED' });
    expect(await id.identify('127.0.0.5', basic('teacher@school.test', PW))).toMatchObject({ ok: true });
    await waitFor(async () => (await auditRows('127.0.0.4')).some((r) => r.action === 'proxy_auth_locked'), 'lock audit');
    expect((await auditRows('127.0.0.4')).filter((r) => r.action === 'proxy_auth_locked').map((r) => r.details.scope)).toEqual(['address']);
  });

  it('stops new sign-ins to an account guessed at from many addresses; those already signed in carry on', async () => {
    const { id } = identifier({ proxyAuth: true, limits: { perAddressAccount: 2, perAddress: 10, perAccount: 6 } });
    expect(await id.identify('127.0.1.1', basic('target@school.test', PW))).toMatchObject({ ok: true });
    for (let a = 2; a <= 4; a++) for (let i = 0; i < 2; i++) await id.identify(`127.0.1.${a}`, basic('target@school.test', `guess-${a}-${i}`));
    // The right password, written differently (so not the header already verified), from a fresh address.
    expect(await id.identify('127.0.1.9', basic('Target@School.test', PW))).toEqual({ ok: false, code: 'SG_ERR_PROXY_AUTH_LOCKED' });
    expect(await id.identify('127.0.1.1', basic('target@school.test', PW))).toMatchObject({ ok: true, identity: { user: 'target@school.test' } });
  });

  it('counts a browser resending one mistyped password as one failure, and answers parallel copies with one hash', async () => {
    const { id, count } = identifier({ proxyAuth: true, limits: { perAddressAccount: 3 } });
    for (let i = 0; i < 10; i++) await id.identify('127.0.2.1', basic('teacher@school.test', 'typo'));
    expect(count.hashes).toBe(1);
    expect((await id.identify('127.0.2.1', basic('teacher@school.test', PW))).ok).toBe(true);
    const before = count.hashes;
    const all = await Promise.all(Array.from({ length: 6 }, () => id.identify('127.0.2.2', basic('staff2@school.test', PW))));
    expect(all.every((r) => r.ok)).toBe(true);
    expect(count.hashes - before).toBe(1);
  });

  it('costs unknown and disabled accounts the same hash as a wrong password for a real one', async () => {
    const { id, count } = identifier({ proxyAuth: true, limits: { perAddressAccount: 100, perAddress: 100, perAccount: 100 } });
    const real = (await db.query<{ password_hash: string }>(`SELECT password_hash FROM users WHERE email = 'teacher@school.test'`)).rows[0].password_hash;
    // The dummy is hashed with the same scrypt cost as real accounts.
    expect((await getDummyHash()).split('$').slice(0, 4)).toEqual(real.split('$').slice(0, 4));
    const time = async (user: string, i: number) => {
      const before = count.hashes;
      const t0 = process.hrtime.bigint();
      const r = await id.identify('127.0.3.1', basic(user, `not-it-${user}-${i}`));
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      expect(r.ok).toBe(false);
      expect(count.hashes - before, user).toBe(1);
      return ms;
    };
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const runs: Record<string, number[]> = { known: [], unknown: [], disabled: [] };
    for (let i = 0; i < 5; i++) {
      runs.known.push(await time('teacher@school.test', i));
      runs.unknown.push(await time(`nobody-${i}@school.test`, i));
      runs.disabled.push(await time('gone@school.test', i));
    }
    // Generous: before the fix an unknown account answered some 50 times faster than a real one.
    for (const k of ['unknown', 'disabled']) {
      const ratio = median(runs[k]) / median(runs.known);
      expect(ratio, `${k} vs known: ${ratio.toFixed(2)}`).toBeGreaterThan(0.4);
      expect(ratio, `${k} vs known: ${ratio.toFixed(2)}`).toBeLessThan(2.5);
    }
  });

  it('leaves thread-pool room for DNS while many passwords are being checked', async () => {
    const stored = await hashPassword('something long enough');
    let done = 0;
    const checks = Array.from({ length: 12 }, (_, i) => verifyPassword(`guess ${i}`, stored).then(() => done++));
    const doneWhenResolved = await new Promise<number>((resolve, reject) =>
      dns.lookup('localhost', (err) => (err ? reject(err) : resolve(done))),
    );
    await Promise.all(checks);
    // Unbounded, the lookup queued behind at least eight hashes on libuv's four threads.
    expect(doneWhenResolved).toBeLessThanOrEqual(2);
  });
});

describe('the gateway: one identify step for every request path', () => {
  let db: Db;
  let origin: Origin;
  const blockAll = {
    categories: new Map(),
    classify: (): Verdict => ({ action: 'block', category: 'testblock' }),
    matches: () => [],
  };
  beforeAll(async () => {
    const dir = tmpDir('sg-proxyauth-gw-');
    dirs.push(dir);
    db = await openDb({ databaseUrl: null, dataDir: dir, logger: silentLogger });
    await migrate(db);
    await createUser(db, { email: 'teacher@school.test', role: 'staff', password: PW });
    origin = await startOrigin();
  });
  afterAll(async () => {
    await origin?.close();
    await db?.close();
  });

  async function gateway(proxyAuth: boolean, blocking: boolean) {
    const dir = tmpDir('sg-proxyauth-gw-');
    dirs.push(dir);
    const count = { lookups: 0 };
    const real = proxyAuthDeps(db, silentLogger);
    const deps = bareGatewayDeps({
      ca: initCa(dir), dataDir: dir, clients: { proxyAuth },
      auth: { ...real, users: (e) => (count.lookups++, real.users(e)) },
    });
    if (blocking) deps.policy = { ...deps.policy, lists: () => blockAll, categoriesFor: () => ['testblock'] };
    const gw = createGateway({ ...deps, upstreamLookup: loopbackLookup });
    const { port } = await gw.listen(0, '127.0.0.1');
    return { gw, port, count };
  }

  it('with proxy authentication off, ignores Proxy-Authorization: the block page names nobody and nothing is checked or audited', async () => {
    const { gw, port, count } = await gateway(false, true);
    try {
      const r = await viaProxy(port, 'http://casino.test/staff-room', { headers: { 'proxy-authorization': basic('teacher@school.test', PW) } });
      expect(r.status).toBe(403);
      expect(r.headers['x-schoolgate-error']).toBe('blocked');
      expect(r.body).not.toContain('Signed in as');
      expect(r.body).not.toContain('teacher@school.test');
      const wrong = await viaProxy(port, 'http://casino.test/x', { headers: { 'proxy-authorization': basic('teacher@school.test', 'guess') } });
      expect(wrong.status).toBe(403);
      const t = await openTunnel(port, 'casino.test:443', { 'proxy-authorization': basic('teacher@school.test', 'guess2') });
      expect(t.status).toBe(200);
      t.socket.destroy();
      expect(count.lookups).toBe(0);
      expect((await db.query(`SELECT 1 FROM audit_log WHERE action LIKE 'proxy_auth%'`)).rowCount).toBe(0);
    } finally {
      await gw.close();
    }
  });

  it('refuses a WebSocket upgrade without credentials with 407 before the handshake, and relays it when signed in', async () => {
    const { gw, port } = await gateway(true, false);
    const upgrade = (auth?: string) =>
      head(port, [
        `GET http://ws.test:${origin.httpPort}/chat HTTP/1.1`, `Host: ws.test:${origin.httpPort}`, 'Upgrade: websocket', 'Connection: Upgrade',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13', ...(auth ? [`Proxy-Authorization: ${auth}`] : []), '', '',
      ].join('\r\n'));
    try {
      const anon = await upgrade();
      expect(statusOf(anon)).toBe(407);
      expect(anon).toMatch(/proxy-authenticate: Basic realm="schoolgate"/i);
      expect(statusOf(await upgrade(basic('teacher@school.test', 'wrong password')))).toBe(407);
      expect(statusOf(await upgrade(basic('teacher@school.test', PW)))).toBe(101);
    } finally {
      await gw.close();
    }
  });
});

/** A full `schoolgate start` with proxy authentication on; `databaseUrl` shares a PostgreSQL database. */
async function startWithProxyAuth(databaseUrl?: string): Promise<SchoolgateHandle> {
  const dataDir = tmpDir();
  const lists = fixtureLists();
  dirs.push(dataDir, lists);
  const config = loadConfig(
    { 'data-dir': dataDir, lists: [lists], categories: 'testblock', 'proxy-port': '0', 'admin-port': '0', 'proxy-auth': true },
    databaseUrl ? { DATABASE_URL: databaseUrl } : {},
  );
  return startSchoolgate(config, { logger: silentLogger, out: quiet() });
}

/** Through the gateway to a blocked page: 403 when signed in (the block page), 407 when not. */
const through = async (sg: SchoolgateHandle, user: string, pw: string) =>
  viaProxy(sg.proxyPort, 'http://www.blocked.test/page', { headers: { 'proxy-authorization': basic(user, pw) } });

describe('credential changes reach the gateway at once', () => {
  let sg: SchoolgateHandle;
  beforeAll(async () => {
    sg = await startWithProxyAuth();
    await createUser(sg.db, { email: 'dsl@school.test', role: 'safeguarding_lead', password: PW });
    await createUser(sg.db, { email: 'teacher@school.test', role: 'staff', password: PW });
    await createUser(sg.db, { email: 'leaver@school.test', role: 'staff', password: PW });
  });
  afterAll(async () => sg?.close());

  const console_ = async (method: string, path: string, body: unknown, cookie?: string) => {
    const consoleOrigin = `http://127.0.0.1:${sg.adminPort}`;
    const res = await fetch(`${consoleOrigin}${path}`, {
      method, headers: { 'content-type': 'application/json', origin: consoleOrigin, ...(cookie ? { cookie } : {}) }, body: JSON.stringify(body),
    });
    return { status: res.status, cookie: res.headers.get('set-cookie')?.split(';')[0], json: await res.json() as Record<string, unknown> };
  };

  it('refuses the old password right after a password change (console and CLI), and takes the new one', async () => {
    const signedIn = await through(sg, 'teacher@school.test', PW);
    // 403 (the block page), not 407: signed in. The page names nobody (it is served on the blocked site's origin).
    expect(signedIn.status).toBe(403);
    const login = await console_('POST', '/api/login', { email: 'teacher@school.test', password: PW });
    expect(login.status).toBe(200);
    const change = await console_('POST', '/api/me/password', { currentPassword: PW, newPassword: NEW_PW }, login.cookie);
    expect(change.status).toBe(200);
    expect((await through(sg, 'teacher@school.test', PW)).status).toBe(407);
    expect((await through(sg, 'teacher@school.test', NEW_PW)).status).toBe(403);

    await cliChangePassword(sg.db, { email: 'teacher@school.test', password: 'third long passphrase' });
    expect((await through(sg, 'teacher@school.test', NEW_PW)).status).toBe(407);
    expect((await through(sg, 'teacher@school.test', 'third long passphrase')).status).toBe(403);
  });

  it('refuses a disabled account right after it is disabled', async () => {
    expect((await through(sg, 'leaver@school.test', PW)).status).toBe(403);
    const login = await console_('POST', '/api/login', { email: 'dsl@school.test', password: PW });
    const id = (await sg.db.query<{ id: number }>(`SELECT id FROM users WHERE email = 'leaver@school.test'`)).rows[0].id;
    expect((await console_('PATCH', `/api/users/${id}`, { disabled: true }, login.cookie)).status).toBe(200);
    expect((await through(sg, 'leaver@school.test', PW)).status).toBe(407);
  });
});

const noPg = need('PostgreSQL server', await postgresMissing()) !== null;

describe.skipIf(noPg)('credential changes reach other gateways sharing the database (LISTEN/NOTIFY)', () => {
  let a: SchoolgateHandle;
  let b: SchoolgateHandle;
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  beforeAll(async () => {
    database = await createTestDatabase('sg_proxyauth');
    a = await startWithProxyAuth(database.url);
    b = await startWithProxyAuth(database.url);
    await createUser(a.db, { email: 'teacher@school.test', role: 'staff', password: PW });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    await database?.drop();
  });

  it('a password changed through one gateway is refused by the other within seconds', async () => {
    expect((await through(b, 'teacher@school.test', PW)).status).toBe(403); // now in b's cache
    await cliChangePassword(a.db, { email: 'teacher@school.test', password: NEW_PW });
    await waitFor(async () => (await through(b, 'teacher@school.test', PW)).status === 407, "the other gateway refusing the old password");
    expect((await through(b, 'teacher@school.test', NEW_PW)).status).toBe(403);
  });
});
