import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../admin-api/auth';
import { loadConfig } from '../../core/config';
import { silentLogger } from '../../core/log';
import { startSchoolgate, type SchoolgateHandle } from '../../server/start';
import { makeLists } from '../../harness/lists';
import { startSmtp, type Mail } from '../../harness/smtp';
import { loopbackLookup, rawRequest, requestOver, tempDir, tlsOverTunnel, waitFor } from './fixtures';

/**
 * The safeguarding signal (issue 13, points 1, 2 and 5) through the real gateway: only what a
 * person did raises an incident, at the severity the school set, folded per person and site, named
 * from the clients map, and alerting once. Each person is a loopback address of their own (the
 * clients map names them), so the tests share the gateway without folding into each other.
 */

const PUPIL_A = '127.0.0.31';
const PUPIL_B = '127.0.0.32';
const PUPIL_C = '127.0.0.33';
const PUPIL_D = '127.0.0.34';
const TEACHER = '127.0.0.30';

// What Chromium sends: a page the person opened, and what that page fetched by itself.
const NAVIGATE = [
  'Sec-Fetch-Dest: document', 'Sec-Fetch-Mode: navigate', 'Sec-Fetch-Site: none', 'Sec-Fetch-User: ?1',
  'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8',
].map((h) => h + '\r\n').join('');
const SUBRESOURCES: Array<[string, string]> = [
  ['/favicon.ico', 'Sec-Fetch-Dest: image\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\nAccept: image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8\r\n'],
  ['/static/app.js', 'Sec-Fetch-Dest: script\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\nAccept: */*\r\n'],
  ['/api/spins', 'Sec-Fetch-Dest: empty\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Site: same-origin\r\nAccept: application/json\r\n'],
  // No fetch metadata (older Safari, apps): the documented heuristic on Accept, X-Requested-With and the path.
  ['/favicon.ico', ''],
  ['/img/banner', 'Accept: image/webp,*/*\r\n'],
  ['/api/balance', 'X-Requested-With: XMLHttpRequest\r\nAccept: */*\r\n'],
  ['/static/site.css', 'Accept: */*\r\n'],
];

let tmp: ReturnType<typeof tempDir>;
let gw: SchoolgateHandle;
let smtp: Awaited<ReturnType<typeof startSmtp>>;
let mails: Mail[] = [];
let dslCookie: string;
let teacherCookie: string;

/** One request through the gateway from `from` (a loopback address the clients map names). */
function getFrom(from: string, url: string, headers = ''): ReturnType<typeof rawRequest> {
  const socket = net.connect({ port: gw.proxyPort, host: '127.0.0.1', localAddress: from });
  return rawRequest(gw.proxyPort, `GET ${url} HTTP/1.1\r\nHost: ignored.invalid\r\n${headers}\r\n`, { socket }).finally(() => socket.destroy());
}

async function httpsFrom(from: string, host: string, pathAndQuery: string, headers = '') {
  const socket = net.connect({ port: gw.proxyPort, host: '127.0.0.1', localAddress: from });
  await new Promise((r) => socket.once('connect', r));
  socket.write(`CONNECT ${host}:443 HTTP/1.1\r\nHost: ${host}:443\r\n\r\n`);
  await new Promise<void>((resolve) => {
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (head.includes('\r\n\r\n')) {
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
  });
  const t = await tlsOverTunnel(socket, host, gw.caCertPem);
  try {
    return await requestOver(t, pathAndQuery, host, headers);
  } finally {
    t.destroy();
  }
}

async function rowsFor(where: string, params: unknown[]) {
  await gw.incidents.flush();
  return (await gw.db.query<Record<string, unknown>>(`SELECT * FROM incidents WHERE ${where} ORDER BY id`, params)).rows;
}

async function api(pathAndQuery: string, cookie: string, init: { method?: string; body?: unknown } = {}) {
  const res = await fetch(`http://127.0.0.1:${gw.adminPort}${pathAndQuery}`, {
    method: init.method ?? 'GET',
    headers: { cookie, ...(init.body ? { 'content-type': 'application/json' } : {}) },
    body: init.body ? JSON.stringify(init.body) : undefined,
  });
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}

async function login(email: string, password: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${gw.adminPort}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
  expect(res.status).toBe(200);
  return res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
}

/** Posts the block page's form from the address that was blocked (the report is bound to it), through the proxy as a browser does. */
function postFrom(from: string, action: string, form: Record<string, string>): Promise<{ status: number; body: string }> {
  const body = new URLSearchParams(form).toString();
  return new Promise((resolve, reject) => {
    const headers = { host: new URL(action).host, 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) };
    const req = http.request({ host: '127.0.0.1', port: gw.proxyPort, path: action, method: 'POST', localAddress: from, headers }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  tmp = tempDir('sg-e2e-severity-');
  smtp = await startSmtp();
  mails = smtp.mails;
  const smtpPort = smtp.port;
  const lists = makeLists(
    {
      gambling: { name: 'Gambling', domains: ['casino.test', 'bets.test', 'poker.test'] },
      adult: { name: 'Adult', domains: ['adult.test'] },
      hacking: { name: 'Hacking', domains: ['hack.test'] },
    },
    path.join(tmp.dir, 'lists'),
  );
  const configFile = path.join(tmp.dir, 'schoolgate.json');
  writeFileSync(configFile, JSON.stringify({
    clients: [
      // As the school typed it; the staff account is lower-case.
      { cidr: `${TEACHER}/32`, user: 'Teacher@School.test', device: 'T-LAPTOP', group: 'staff' },
      { cidr: `${PUPIL_A}/32`, user: 'pupil.a@school.test', device: 'LAB-01', group: 'pupils' },
      { cidr: `${PUPIL_B}/32`, user: 'pupil.b@school.test', group: 'pupils' },
      { cidr: `${PUPIL_C}/32`, user: 'pupil.c@school.test', group: 'pupils' },
      { cidr: `${PUPIL_D}/32`, user: 'pupil.d@school.test', group: 'pupils' },
    ],
    // Hacking is the network manager's concern here; adult content is an incident, not an alert, for staff.
    severity: { categories: { hacking: 'log' }, groups: { staff: { adult: 'incident' } } },
    smtp: { url: `smtp://127.0.0.1:${smtpPort}`, from: 'filter@school.test', to: ['dsl@school.test'] },
  }));
  const config = loadConfig(
    {
      'data-dir': path.join(tmp.dir, 'data'), config: configFile, lists: [lists], categories: 'gambling,adult,hacking',
      'proxy-port': '0', 'admin-port': '0', listen: '127.0.0.1', 'allowed-clients': '127.0.0.0/8',
    },
    {},
    tmp.dir,
  );
  gw = await startSchoolgate(config, {
    logger: silentLogger,
    out: new PassThrough(),
    upstreamLookup: loopbackLookup({}),
    allowLoopbackDestinationsForTests: true,
  });
  for (const [email, role] of [['dsl@school.test', 'safeguarding_lead'], ['teacher@school.test', 'staff']]) {
    await gw.db.query('INSERT INTO users (email, role, password_hash) VALUES ($1, $2, $3)', [email, role, await hashPassword('a long passphrase here')]);
  }
  dslCookie = await login('dsl@school.test', 'a long passphrase here');
  teacherCookie = await login('teacher@school.test', 'a long passphrase here');
});

afterAll(async () => {
  await gw?.close();
  await smtp?.close();
  tmp?.remove();
});

describe('an incident is something a person did', () => {
  it('raises one incident, with its severity and the person the clients map names, for a navigation; none for the page\'s blocked favicon, scripts and XHR', async () => {
    const blockedBefore = gw.gateway.stats.blocked;
    const page = await getFrom(PUPIL_A, 'http://casino.test/roulette', NAVIGATE);
    expect(page.status).toBe(403);
    expect(page.body).toContain('This was accidental — report it to the safeguarding lead');
    for (const [p, headers] of SUBRESOURCES) {
      const r = await getFrom(PUPIL_A, `http://casino.test${p}`, headers);
      expect(r.status, p).toBe(403);
      // A small page: no report forms, no sealed reference.
      expect(r.body, p).not.toContain('<form');
      expect(r.body, p).not.toMatch(/name="ref"/);
      expect(r.body.length, p).toBeLessThan(300);
    }
    expect(gw.gateway.stats.blocked - blockedBefore).toBe(1 + SUBRESOURCES.length);
    const rows = await rowsFor('client_ip = $1', [PUPIL_A]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ kind: 'blocked', url: 'http://casino.test/roulette', user_name: 'pupil.a@school.test', device: 'LAB-01', severity: 'incident', count: 1 });
    const folds = await gw.db.query('SELECT 1 FROM incident_folds WHERE incident_id = $1', [rows[0].id]);
    expect(folds.rowCount).toBe(0);
  });

  it('folds five navigations to http and https pages of one site (and its subdomains) into one incident listing each attempt', async () => {
    await getFrom(PUPIL_B, 'http://bets.test/', NAVIGATE);
    await getFrom(PUPIL_B, 'http://www.bets.test/odds', NAVIGATE);
    expect((await httpsFrom(PUPIL_B, 'bets.test', '/account', NAVIGATE)).status).toBe(403);
    expect((await httpsFrom(PUPIL_B, 'live.bets.test', '/in-play', NAVIGATE)).status).toBe(403);
    // No fetch metadata at all (curl, an old browser): a page, by the path.
    await getFrom(PUPIL_B, 'http://bets.test/results');
    // Another site by the same pupil is another incident.
    await getFrom(PUPIL_B, 'http://poker.test/', NAVIGATE);
    const rows = await rowsFor('client_ip = $1', [PUPIL_B]);
    expect(rows.map((r) => [r.host, r.count])).toEqual([['bets.test', 5], ['poker.test', 1]]);
    const detail = await api(`/api/incidents/${rows[0].id}`, dslCookie);
    expect(detail.status).toBe(200);
    expect(detail.json.incident).toMatchObject({ count: 5, user: 'pupil.b@school.test', severity: 'incident' });
    expect(detail.json.attempts.map((a: { url: string }) => a.url)).toEqual([
      'http://bets.test/', 'http://www.bets.test/odds', 'https://bets.test/account', 'https://live.bets.test/in-play', 'http://bets.test/results',
    ]);
    for (const a of detail.json.attempts) expect(Number.isNaN(Date.parse(a.at))).toBe(false);
  });

  it('sends exactly one alert email for an alert-tier category, however often the pupil goes back; staff set to incident send none', async () => {
    const before = mails.length;
    for (const p of ['/', '/gallery', '/gallery?page=2']) expect((await getFrom(PUPIL_C, `http://adult.test${p}`, NAVIGATE)).status).toBe(403);
    expect((await httpsFrom(PUPIL_C, 'www.adult.test', '/', NAVIGATE)).status).toBe(403);
    const teacher = await getFrom(TEACHER, 'http://adult.test/', NAVIGATE);
    expect(teacher.status).toBe(403);
    const pupil = await rowsFor('client_ip = $1', [PUPIL_C]);
    expect(pupil.map((r) => [r.severity, r.count])).toEqual([['alert', 4]]);
    expect((await rowsFor("client_ip = $1 AND category = 'adult'", [TEACHER])).map((r) => r.severity)).toEqual(['incident']);
    const mail = await waitFor(() => mails[before], 'the alert email');
    expect(mail.to).toEqual(['dsl@school.test']);
    expect(mail.raw).toContain('pupil.c@school.test');
    // Adult content is high severity, never "illegal": nothing tells the DSL to report a legal site.
    expect(mail.raw).not.toMatch(/IWF|illegal|withheld/i);
    await new Promise((r) => setTimeout(r, 500));
    expect(mails.length - before).toBe(1);
  });

  it('blocks a log-tier category with the block page but raises no incident', async () => {
    const r = await getFrom(PUPIL_D, 'http://hack.test/tools', NAVIGATE);
    expect(r.status).toBe(403);
    expect(r.headers['x-schoolgate-category']).toBe('hacking');
    expect(await rowsFor('client_ip = $1', [PUPIL_D])).toEqual([]);
  });
});

describe('the person', () => {
  it('shows staff their own block-page report in "My reports" when the clients map names them, whatever the case', async () => {
    const page = await getFrom(TEACHER, 'http://casino.test/staff-room', NAVIGATE);
    expect(page.status).toBe(403);
    const ref = /name="ref" value="([^"]+)"/.exec(page.body)?.[1];
    const action = /action="([^"]+)"/.exec(page.body)?.[1];
    expect(ref && action).toBeTruthy();
    const sent = await postFrom(TEACHER, action!, { ref: ref!, type: 'self_report', note: 'a link in a newsletter' });
    expect(sent.status).toBe(200);
    await gw.incidents.flush();
    const mine = await api('/api/incidents?kind=self_report', teacherCookie);
    expect(mine.status).toBe(200);
    expect(mine.json.items.map((i: Record<string, unknown>) => [i.user, i.url, i.note])).toEqual([['Teacher@School.test', 'http://casino.test/staff-room', 'a link in a newsletter']]);
    // ...and the incident itself opens for them.
    expect((await api(`/api/incidents/${mine.json.items[0].id}`, teacherCookie)).status).toBe(200);
    // The DSL finds the person however the name is typed.
    const dsl = await api(`/api/incidents?user=${encodeURIComponent('TEACHER@school.test')}`, dslCookie);
    expect(dsl.json.items.length).toBeGreaterThanOrEqual(2);
  });
});
