/**
 * RADIUS accounting names people (issue 15, points 2 and 5): the real `radclient` (FreeRADIUS's
 * test client, Debian freeradius-utils) sends Accounting-Start/Interim-Update/Stop to the running
 * gateway's listener (startSchoolgate, in-process, embedded database), and curl sends a blocked
 * navigation from the address named, bound to it with --interface (any 127.0.0.x is this machine).
 * The incident names the person and records that RADIUS did; after Stop it no longer does; a
 * packet signed with the wrong secret is dropped unanswered and names nobody. RADIUS comes first
 * in the precedence: over the `clients` map's user (whose group it keeps), and over proxy
 * authentication (no 407, even with a valid Proxy-Authorization for someone else).
 */
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import radius from 'radius';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUser } from '../../admin-api/auth';
import { toIncidentJson } from '../../admin-api/present';
import { loadConfig } from '../../core/config';
import { createLogger } from '../../core/log';
import { makeLists } from '../../harness/lists';
import type { IncidentRow } from '../../repos/incidents';
import { replacePeople } from '../../repos/people';
import { startSchoolgate, type SchoolgateHandle } from '../../server/start';
import { commandMissing, need, radclientMissing } from '../helpers/parts';
import { runCommand } from '../helpers/process';
import { loopbackLookup, tempDir } from './fixtures';

const run = promisify(execFile);
const skip = need('radclient', radclientMissing()) ?? need('curl', commandMissing('curl', 'curl'));

const SECRET = 'a shared secret 7f3a';
const BLOCKED = ['casino.test', 'casino2.test', 'casino3.test', 'casino4.test', 'casino5.test', 'casino6.test', 'casino7.test'];

interface Gw {
  handle: SchoolgateHandle;
  dir: string;
}

async function startGateway(tmp: string, name: string, extra: Record<string, unknown>, flags: Record<string, string | boolean> = {}): Promise<Gw> {
  const dir = path.join(tmp, name);
  const lists = makeLists({ gambling: { name: 'Gambling', domains: BLOCKED } }, path.join(dir, 'lists'));
  const secretFile = path.join(dir, 'radius.secret');
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  const configFile = path.join(dir, 'schoolgate.json');
  writeFileSync(configFile, JSON.stringify({ radiusAccounting: { port: 0, secretFile }, ...extra }));
  const config = loadConfig(
    { 'data-dir': path.join(dir, 'data'), config: configFile, lists: [lists], categories: 'gambling', 'proxy-port': '0', 'admin-port': '0', listen: '127.0.0.1', 'allowed-clients': '127.0.0.0/8', ...flags },
    {},
    tmp,
  );
  const handle = await startSchoolgate(config, {
    logger: createLogger({ level: 'info', destination: new PassThrough().resume() }),
    out: new PassThrough(),
    upstreamLookup: loopbackLookup(Object.fromEntries(BLOCKED.map((h) => [h, '127.0.0.1']))),
    allowLoopbackDestinationsForTests: true,
  });
  return { handle, dir };
}

/** radclient sending one accounting packet; true when the listener answered (radclient's exit code). */
async function acct(gw: Gw, attrs: Record<string, string>, secret = SECRET): Promise<boolean> {
  // radclient's input: one `Attribute = value` a line, strings quoted, enumerations and addresses bare.
  const body = Object.entries(attrs).map(([k, v]) => `${k} = ${k === 'Acct-Status-Type' || k === 'Framed-IP-Address' ? v : JSON.stringify(v)}`).join('\n');
  const r = await runCommand('radclient', ['-r', '1', '-t', '2', `127.0.0.1:${gw.handle.radius!.port}`, 'acct', secret], { stdin: `${body}\n` });
  return r.code === 0 && /Received Accounting-Response/.test(r.stdout);
}

/** Whether the listener answers this packet within 1.5 s. */
async function answered(gw: Gw, packet: Buffer): Promise<boolean> {
  const socket = dgram.createSocket('udp4');
  try {
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 1500);
      socket.once('message', () => {
        clearTimeout(timer);
        resolve(true);
      });
      socket.send(packet, gw.handle.radius!.port, '127.0.0.1');
    });
  } finally {
    socket.close();
  }
}

/** A blocked page opened from `from` (curl bound there); returns the status and the incident it made. */
async function blockedFrom(gw: Gw, from: string, host: string, headers: string[] = []): Promise<{ status: number; incident: IncidentRow | null; page: string }> {
  const url = `http://${host}/page-${Math.random().toString(36).slice(2)}`;
  const { stdout } = await run('curl', [
    '-sS', '--max-time', '15', '--interface', from, '-x', `http://127.0.0.1:${gw.handle.proxyPort}`, '-w', '\n%{http_code}',
    '-H', 'Sec-Fetch-Dest: document', '-H', 'Sec-Fetch-Mode: navigate', ...headers.flatMap((h) => ['-H', h]), url,
  ]);
  await gw.handle.incidents.flush();
  const rows = await gw.handle.db.query<IncidentRow>('SELECT * FROM incidents WHERE url = $1 AND client_ip = $2', [url, from]);
  const i = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(i + 1)), incident: rows.rows[0] ?? null, page: stdout.slice(0, i) };
}

describe.skipIf(skip !== null)('RADIUS accounting (radclient) through the gateway', () => {
  let tmp: ReturnType<typeof tempDir>;
  let gw: Gw;

  beforeAll(async () => {
    tmp = tempDir('sg-e2e-radius-');
    gw = await startGateway(tmp.dir, 'clients', {
      policyGroups: { pupils: { categories: ['gambling'] } },
      clients: [{ cidr: '127.0.0.22/32', user: 'shared-laptop-22', device: 'LAB-22', group: 'pupils' }],
    });
  });
  afterAll(async () => {
    await gw?.handle.close();
    tmp?.remove();
  });

  it('names the person on an incident after Accounting-Start, records that RADIUS did, and no longer after Stop', async () => {
    const before = await blockedFrom(gw, '127.0.0.21', 'casino.test');
    expect(before.status).toBe(403);
    expect(before.incident).toMatchObject({ user_name: null, identity_source: 'unknown', policy_group: 'pupils' });

    expect(await acct(gw, { 'Acct-Status-Type': 'Start', 'User-Name': 'sam.jones@school.example', 'Framed-IP-Address': '127.0.0.21', 'Acct-Session-Id': 'sess-21' })).toBe(true);
    const named = await blockedFrom(gw, '127.0.0.21', 'casino2.test');
    expect(named.status).toBe(403);
    // No `clients` entry for the address: the default group.
    expect(named.incident).toMatchObject({ user_name: 'sam.jones@school.example', identity_source: 'radius', policy_group: 'pupils' });
    // As the DSL's incident detail shows it.
    expect(toIncidentJson(named.incident!, gw.handle.lists, gw.handle.config)).toMatchObject({ user: 'sam.jones@school.example', identitySource: 'radius' });
    // A self-report from that block page is the same person's, named by the same source.
    const ref = /name="ref" value="([^"]+)"/.exec(named.page)?.[1];
    expect(ref).toBeTruthy();
    const report = await run('curl', ['-sS', '--max-time', '15', '--interface', '127.0.0.21', '-H', 'Accept: application/json', '--data-urlencode', `ref=${ref}`, '-d', 'type=self_report', `http://127.0.0.1:${gw.handle.adminPort}/block/report`]);
    const filed = JSON.parse(report.stdout) as { key: string };
    await gw.handle.incidents.flush();
    expect((await gw.handle.db.query<IncidentRow>('SELECT * FROM incidents WHERE idempotency_key = $1', [filed.key])).rows[0]).toMatchObject({ kind: 'self_report', user_name: 'sam.jones@school.example', identity_source: 'radius' });
    // Only that address: its neighbour is nobody.
    expect((await blockedFrom(gw, '127.0.0.23', 'casino2.test')).incident).toMatchObject({ user_name: null, identity_source: 'unknown' });

    // A late Stop of an earlier session (another Acct-Session-Id) leaves this one alone.
    expect(await acct(gw, { 'Acct-Status-Type': 'Stop', 'User-Name': 'sam.jones@school.example', 'Framed-IP-Address': '127.0.0.21', 'Acct-Session-Id': 'sess-20' })).toBe(true);
    expect((await blockedFrom(gw, '127.0.0.21', 'casino3.test')).incident).toMatchObject({ user_name: 'sam.jones@school.example', identity_source: 'radius' });

    expect(await acct(gw, { 'Acct-Status-Type': 'Stop', 'User-Name': 'sam.jones@school.example', 'Framed-IP-Address': '127.0.0.21', 'Acct-Session-Id': 'sess-21' })).toBe(true);
    expect((await blockedFrom(gw, '127.0.0.21', 'casino4.test')).incident).toMatchObject({ user_name: null, identity_source: 'unknown' });
    expect(gw.handle.radius!.listener.stats()).toMatchObject({ starts: 1, stops: 2, badSecret: 0 });
  });

  it('ignores a packet signed with the wrong secret: no answer, nobody named', async () => {
    const bad = gw.handle.radius!.listener.stats().badSecret;
    expect(await acct(gw, { 'Acct-Status-Type': 'Start', 'User-Name': 'mallory@school.example', 'Framed-IP-Address': '127.0.0.24' }, 'not the secret')).toBe(false);
    expect((await blockedFrom(gw, '127.0.0.24', 'casino.test')).incident).toMatchObject({ user_name: null, identity_source: 'unknown' });
    expect(gw.handle.radius!.listener.stats().badSecret).toBeGreaterThan(bad);
    // radclient cannot tell "no answer" from "an answer it cannot verify": a socket of our own can.
    const packet = radius.encode({ code: 'Accounting-Request', secret: 'not the secret', attributes: [['Acct-Status-Type', 'Start'], ['User-Name', 'mallory@school.example'], ['Framed-IP-Address', '127.0.0.24']] });
    expect(await answered(gw, packet)).toBe(false);
    // The same packet with the right secret is answered (so the silence above is the secret's doing).
    const good = radius.encode({ code: 'Accounting-Request', secret: SECRET, attributes: [['Acct-Status-Type', 'Interim-Update'], ['User-Name', 'lee@school.example'], ['Framed-IP-Address', '127.0.0.26']] });
    expect(await answered(gw, good)).toBe(true);
    // The network manager sees a controller with the wrong secret on /metrics (the log warns once a minute at most).
    await createUser(gw.handle.db, { email: 'nm@school.example', role: 'network_manager', password: 'a long network manager passphrase' });
    const login = await gw.handle.admin.inject({ method: 'POST', url: '/api/login', payload: { email: 'nm@school.example', password: 'a long network manager passphrase' } });
    expect(login.statusCode, login.body).toBe(200);
    const cookie = login.cookies.map((c) => `${c.name}=${c.value}`).join('; ');
    const metrics = await gw.handle.admin.inject({ url: '/metrics', headers: { cookie } });
    expect(metrics.statusCode, metrics.body).toBe(200);
    const value = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics.body)?.[1]);
    expect(value('schoolgate_radius_packets_bad_secret_total')).toBe(gw.handle.radius!.listener.stats().badSecret);
    expect(value('schoolgate_radius_packets_bad_secret_total')).toBeGreaterThanOrEqual(2);
    expect(value('schoolgate_radius_packets_accepted_total')).toBeGreaterThanOrEqual(1);
    expect(value('schoolgate_radius_sessions')).toBe(gw.handle.radius!.listener.stats().sessions);
  });

  it('an Interim-Update maps an address whose Start it never saw (a restart in between)', async () => {
    expect(await acct(gw, { 'Acct-Status-Type': 'Interim-Update', 'User-Name': 'kim@school.example', 'Framed-IP-Address': '127.0.0.25' })).toBe(true);
    expect((await blockedFrom(gw, '127.0.0.25', 'casino.test')).incident).toMatchObject({ user_name: 'kim@school.example', identity_source: 'radius' });
  });

  it('comes before the clients map: the RADIUS person is named, in the group of the address range', async () => {
    expect((await blockedFrom(gw, '127.0.0.22', 'casino5.test')).incident).toMatchObject({ user_name: 'shared-laptop-22', identity_source: 'clients', policy_group: 'pupils' });
    expect(await acct(gw, { 'Acct-Status-Type': 'Start', 'User-Name': 'alex@school.example', 'Framed-IP-Address': '127.0.0.22' })).toBe(true);
    expect((await blockedFrom(gw, '127.0.0.22', 'casino6.test')).incident).toMatchObject({ user_name: 'alex@school.example', identity_source: 'radius', policy_group: 'pupils', device: 'LAB-22' });
    expect(await acct(gw, { 'Acct-Status-Type': 'Stop', 'User-Name': 'alex@school.example', 'Framed-IP-Address': '127.0.0.22' })).toBe(true);
    expect((await blockedFrom(gw, '127.0.0.22', 'casino7.test')).incident).toMatchObject({ user_name: 'shared-laptop-22', identity_source: 'clients' });
  });

  it("gives a RADIUS person the policy group of their directory or MIS record, over the address range's", async () => {
    // Jo is staff in the school's records (a people import here; the directory sync writes the same rows) on a pupils' range.
    await replacePeople(gw.handle.db, 'csv', [{ email: 'jo.teacher@school.example', name: 'Jo Teacher', yearGroup: null, form: null, groups: [], policyGroup: 'staff', disabled: false }]);
    await gw.handle.refreshDevices();
    expect(await acct(gw, { 'Acct-Status-Type': 'Start', 'User-Name': 'Jo.Teacher@school.example', 'Framed-IP-Address': '127.0.0.22' })).toBe(true);
    expect((await blockedFrom(gw, '127.0.0.22', 'casino4.test')).incident).toMatchObject({ user_name: 'Jo.Teacher@school.example', identity_source: 'radius', policy_group: 'staff', device: 'LAB-22' });
    expect(await acct(gw, { 'Acct-Status-Type': 'Stop', 'User-Name': 'Jo.Teacher@school.example', 'Framed-IP-Address': '127.0.0.22' })).toBe(true);
  });
});

describe.skipIf(skip !== null)('RADIUS accounting before proxy authentication', () => {
  let tmp: ReturnType<typeof tempDir>;
  let gw: Gw;
  const basic = (u: string, p: string) => `Proxy-Authorization: Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

  beforeAll(async () => {
    tmp = tempDir('sg-e2e-radius-auth-');
    gw = await startGateway(tmp.dir, 'auth', { policyGroups: { staff: { categories: ['gambling'] } } }, { 'proxy-auth': true });
    await createUser(gw.handle.db, { email: 'teacher@school.example', role: 'staff', password: 'correct horse battery' });
  });
  afterAll(async () => {
    await gw?.handle.close();
    tmp?.remove();
  });

  it('names a RADIUS person without asking for a proxy password, over the credentials a browser sends; others still sign in', async () => {
    expect((await blockedFrom(gw, '127.0.0.31', 'casino.test')).status).toBe(407);
    expect(await acct(gw, { 'Acct-Status-Type': 'Start', 'User-Name': 'pupil@school.example', 'Framed-IP-Address': '127.0.0.31' })).toBe(true);
    const named = await blockedFrom(gw, '127.0.0.31', 'casino2.test');
    expect(named.status).toBe(403);
    expect(named.incident).toMatchObject({ user_name: 'pupil@school.example', identity_source: 'radius' });
    // The network's word wins over a password typed on the device.
    expect((await blockedFrom(gw, '127.0.0.31', 'casino3.test', [basic('teacher@school.example', 'correct horse battery')])).incident).toMatchObject({ user_name: 'pupil@school.example', identity_source: 'radius' });
    // Another address signs in as before, and is recorded as such.
    expect((await blockedFrom(gw, '127.0.0.32', 'casino.test')).status).toBe(407);
    expect((await blockedFrom(gw, '127.0.0.32', 'casino4.test', [basic('teacher@school.example', 'correct horse battery')])).incident).toMatchObject({ user_name: 'teacher@school.example', identity_source: 'proxy_auth' });
    // After Stop, the address must sign in again.
    expect(await acct(gw, { 'Acct-Status-Type': 'Stop', 'User-Name': 'pupil@school.example', 'Framed-IP-Address': '127.0.0.31' })).toBe(true);
    expect((await blockedFrom(gw, '127.0.0.31', 'casino5.test')).status).toBe(407);
  });
});
