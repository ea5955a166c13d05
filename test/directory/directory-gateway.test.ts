import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser } from '../../admin-api/auth';
import { loadConfig } from '../../core/config';
import { silentLogger } from '../../core/log';
import { startSlapd, type LdapPerson, type Slapd } from '../../harness/slapd';
import { startSchoolgate, type SchoolgateHandle } from '../../server/start';
import { commandMissing, need, slapdMissing } from '../helpers/parts';
import { loopbackLookup, startOrigin, tmpDir, viaProxy, type Origin } from '../proxy/helpers';

const run = promisify(execFile);
const skip = need('OpenLDAP slapd', slapdMissing()) !== null || need('curl', commandMissing('curl', 'curl')) !== null;

const PEOPLE: LdapPerson[] = [
  { uid: 'sam.jones', mail: 'Sam.Jones@school.test', givenName: 'Sam', sn: 'Jones', password: 'pupil pass one', groups: ['Year 7'], form: '7B', yearGroup: 'Year 7' },
  { uid: 'ali.khan', mail: 'ali.khan@school.test', givenName: 'Ali', sn: 'Khan', password: 'pupil pass two', groups: ['Year 7'], form: '7C', yearGroup: 'Year 7' },
  { uid: 'mo.price', mail: 'mo.price@school.test', givenName: 'Mo', sn: 'Price', password: 'pupil pass three', groups: ['Year 7'], form: '7A', yearGroup: 'Year 7' },
  { uid: 'jo.smith', mail: 'jo.smith@school.test', givenName: 'Jo', sn: 'Smith', password: 'staff pass one', groups: ['Staff'] },
  // Locked by OpenLDAP's ppolicy overlay (pwdAccountLockedTime 000001010000Z): the server refuses its bind.
  { uid: 'left.school', mail: 'left.school@school.test', givenName: 'Left', sn: 'School', password: 'leaver pass', groups: ['Year 7'], disabled: true },
];

const basic = (user: string, pw: string) => `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}`;
const quiet = () => new Writable({ write: (_c, _e, cb) => cb() });
const NAV = { 'sec-fetch-dest': 'document', 'sec-fetch-mode': 'navigate', accept: 'text/html' };

async function waitFor<T>(get: () => Promise<T>, ok: (v: T) => boolean, what: string, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(skip)('proxy sign-in against the school directory (a real OpenLDAP slapd)', () => {
  let slapd: Slapd;
  let origin: Origin;
  let sg: SchoolgateHandle;
  const dirs: string[] = [];

  beforeAll(async () => {
    slapd = await startSlapd(PEOPLE);
    origin = await startOrigin();
    const dataDir = tmpDir('sg-dir-');
    const lists = tmpDir('sg-dir-lists-');
    dirs.push(dataDir, lists);
    for (const [cat, domain] of [['testblock', 'blocked.test'], ['games', 'games.test']]) {
      mkdirSync(path.join(lists, cat));
      writeFileSync(path.join(lists, cat, 'domains'), `${domain}\n`);
      writeFileSync(path.join(lists, cat, 'usage'), 'black\n');
    }
    writeFileSync(path.join(dataDir, 'bind.secret'), `${slapd.bindPassword}\n`, { mode: 0o600 });
    writeFileSync(
      path.join(dataDir, 'schoolgate.json'),
      JSON.stringify({
        categories: ['testblock', 'games'],
        severity: { categories: { games: 'incident' } }, // shipped as 'log' (blocked, no incident)
        policyGroups: { pupils: { categories: ['testblock', 'games'] }, staff: { categories: ['testblock'] } },
        directory: {
          url: slapd.url, baseDn: slapd.baseDn, bindDn: slapd.bindDn, bindPasswordFile: 'bind.secret',
          groupMap: { 'Year 7': 'pupils', Staff: 'staff' },
          userFilter: '(objectClass=inetOrgPerson)', timeoutMs: 800, cacheSeconds: 600, syncIntervalMinutes: 0,
        },
      }),
    );
    const config = loadConfig({ 'data-dir': dataDir, lists: [lists], 'proxy-port': '0', 'admin-port': '0', 'proxy-auth': true }, {});
    sg = await startSchoolgate(config, { logger: silentLogger, out: quiet(), upstreamLookup: loopbackLookup, allowLoopbackDestinationsForTests: true });
  }, 60_000);

  afterAll(async () => {
    await sg?.close();
    await origin?.close();
    await slapd?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const get = (host: string, user: string, pw: string) =>
    viaProxy(sg.proxyPort, `http://${host}:${origin.httpPort}/page`, { headers: { ...NAV, 'proxy-authorization': basic(user, pw) } });
  /** curl through the proxy with its own --proxy-user, as a browser's proxy sign-in. */
  const curl = async (host: string, user: string, pw: string) => {
    const { stdout } = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--noproxy', '', '-x', `http://127.0.0.1:${sg.proxyPort}`, '--proxy-user', `${user}:${pw}`, '-H', 'Sec-Fetch-Dest: document', `http://${host}:${origin.httpPort}/page`]);
    return Number(stdout);
  };
  const audit = async (actor: string) =>
    (await sg.db.query<{ action: string }>(`SELECT action FROM audit_log WHERE actor = $1 AND action LIKE 'proxy_auth%' ORDER BY id`, [actor])).rows.map((r) => r.action);

  it('signs a pupil in with their uid or mail and directory password; a wrong password gets 407 and is audited as a console login failure is', async () => {
    expect(await curl('www.example.test', 'sam.jones', 'pupil pass one')).toBe(200);
    expect(await curl('www.example.test', 'sam.jones@school.test', 'pupil pass one')).toBe(200);
    expect(await curl('www.example.test', 'sam.jones', 'not the password')).toBe(407);
    expect(await curl('www.example.test', 'nobody.here', 'pupil pass one')).toBe(407);
    // An LDAP filter's wildcard is a literal here: it matches nobody.
    expect(await curl('www.example.test', '*', 'pupil pass one')).toBe(407);
    await waitFor(() => audit('sam.jones'), (a) => a.length >= 1, 'audit row');
    expect(await audit('sam.jones')).toEqual(['proxy_auth_failed']);
  });

  it('limits wrong directory passwords as console sign-ins are: after 5 from one address the right one is refused there too, and the lock is audited', async () => {
    const from = async (addr: string, pw: string) =>
      Number((await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--noproxy', '', '--interface', addr, '-x', `http://127.0.0.1:${sg.proxyPort}`, '--proxy-user', `jo.smith:${pw}`, `http://www.example.test:${origin.httpPort}/`])).stdout);
    for (let i = 0; i < 5; i++) expect(await from('127.0.0.9', `guess ${i}`)).toBe(407);
    expect(await from('127.0.0.9', 'staff pass one')).toBe(407);
    expect(await from('127.0.0.10', 'staff pass one')).toBe(200);
    const rows = await waitFor(() => audit('jo.smith'), (a) => a.includes('proxy_auth_locked'), 'the lock in the audit log');
    expect(rows.filter((a) => a === 'proxy_auth_failed')).toHaveLength(5);
  });

  it('maps directory groups to policy groups: a pupil (Year 7) is blocked on games, staff (Staff) are not', async () => {
    expect((await get('games.test', 'sam.jones', 'pupil pass one')).status).toBe(403);
    expect((await get('games.test', 'jo.smith', 'staff pass one')).status).toBe(200);
    expect((await get('blocked.test', 'jo.smith', 'staff pass one')).status).toBe(403);
  });

  it('refuses a disabled (ppolicy-locked) directory account with the right password', async () => {
    expect(await curl('www.example.test', 'left.school', 'leaver pass')).toBe(407);
  });

  it('names the person by mail in the incident, and the console shows their name and form from the directory sync', async () => {
    expect((await get('games.test', 'sam.jones', 'pupil pass one')).status).toBe(403);
    const row = await waitFor(
      async () => (await sg.db.query<{ id: number; user_name: string; policy_group: string }>(`SELECT id, user_name, policy_group FROM incidents WHERE host = 'games.test'`)).rows[0],
      (r) => r !== undefined,
      'the incident',
    );
    expect(row).toMatchObject({ user_name: 'sam.jones@school.test', policy_group: 'pupils' });

    expect(await sg.directorySync!.runNow()).toMatchObject({ people: PEOPLE.length });
    const people = (await sg.db.query<{ email: string; name: string; form: string; policy_group: string; disabled: boolean }>(`SELECT email, name, form, policy_group, disabled FROM people ORDER BY email`)).rows;
    expect(people.find((p) => p.email === 'sam.jones@school.test')).toMatchObject({ name: 'Sam Jones', form: '7B', policy_group: 'pupils', disabled: false });
    expect(people.find((p) => p.email === 'jo.smith@school.test')).toMatchObject({ policy_group: 'staff' });
    expect(people.find((p) => p.email === 'left.school@school.test')).toMatchObject({ disabled: true });

    await createUser(sg.db, { email: 'dsl@school.test', role: 'safeguarding_lead', password: 'dsl long passphrase' });
    const consoleUrl = `http://127.0.0.1:${sg.adminPort}`;
    const login = await fetch(`${consoleUrl}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json', origin: consoleUrl }, body: JSON.stringify({ email: 'dsl@school.test', password: 'dsl long passphrase' }) });
    const cookie = login.headers.get('set-cookie')!.split(';')[0];
    const list = (await (await fetch(`${consoleUrl}/api/incidents`, { headers: { cookie } })).json()) as { items: Array<{ user: string; personName: string | null }> };
    expect(list.items.find((i) => i.user === 'sam.jones@school.test')?.personName).toBe('Sam Jones, 7B');
    const one = (await (await fetch(`${consoleUrl}/api/incidents/${row.id}`, { headers: { cookie } })).json()) as { incident: { personName: string } };
    expect(one.incident.personName).toBe('Sam Jones, 7B');
  });

  it('never waits on a hung or stopped directory: people already signed in carry on, anyone else is refused promptly', async () => {
    expect((await get('games.test', 'mo.price', 'pupil pass three')).status).toBe(403); // cached from here on
    slapd.freeze(); // the port still takes connections; nothing answers
    try {
      expect((await get('games.test', 'mo.price', 'pupil pass three')).status).toBe(403);
      let t0 = Date.now();
      expect((await get('www.example.test', 'ali.khan', 'pupil pass two')).status).toBe(407);
      expect(Date.now() - t0).toBeLessThan(2_000); // the 800 ms deadline, not a hang
      t0 = Date.now();
      expect((await get('www.example.test', 'ali.khan', 'pupil pass two')).status).toBe(407);
      expect(Date.now() - t0).toBeLessThan(300); // not asked again for a few seconds
    } finally {
      slapd.thaw();
    }
    await slapd.stop();
    expect((await get('games.test', 'mo.price', 'pupil pass three')).status).toBe(403);
    expect((await get('games.test', 'sam.jones', 'pupil pass one')).status).toBe(403);
    const t0 = Date.now();
    expect((await get('www.example.test', 'ali.khan', 'pupil pass two')).status).toBe(407);
    expect(Date.now() - t0).toBeLessThan(2_000);
    // A directory that is away is nobody's wrong password: nothing counted or audited against them.
    expect(await audit('ali.khan')).toEqual([]);
    await slapd.start();
    await new Promise((r) => setTimeout(r, 5_100)); // LdapDirectory.RETRY_MS
    expect((await get('www.example.test', 'ali.khan', 'pupil pass two')).status).toBe(200);
  }, 30_000);
});
