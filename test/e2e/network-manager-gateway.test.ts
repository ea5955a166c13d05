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
import { startSmtp, subjectOf } from '../../harness/smtp';
import { loopbackLookup, rawRequest, startHttpOrigin, tempDir, waitFor, type Origin } from './fixtures';

/**
 * The network manager's overrides through the real gateway (issue 14 point 5): a teacher's unblock
 * request, sent from the block page, approved for the staff group only — the teacher's next request
 * passes, a pupil's is still blocked — and an allow entry for pupils that expires, after which the
 * gateway blocks again with no request to the console and no restart. Each person is a loopback
 * address of their own that the clients map names and puts in a group.
 */

const TEACHER = '127.0.0.50';
const PUPIL = '127.0.0.51';
const NAVIGATE = 'Sec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\nAccept: text/html\r\n';
const PASSWORD = 'a long passphrase here';

let tmp: ReturnType<typeof tempDir>;
let gw: SchoolgateHandle;
let origin: Origin;
let smtp: Awaited<ReturnType<typeof startSmtp>>;
let nmCookie: string;
let teacherCookie: string;

function getFrom(from: string, host: string, pathname: string) {
  const socket = net.connect({ port: gw.proxyPort, host: '127.0.0.1', localAddress: from });
  return rawRequest(gw.proxyPort, `GET http://${host}:${origin.port}${pathname} HTTP/1.1\r\nHost: ${host}:${origin.port}\r\n${NAVIGATE}\r\n`, { socket }).finally(() => socket.destroy());
}

async function api(pathAndQuery: string, cookie: string, init: { method?: string; body?: unknown } = {}) {
  const res = await fetch(`http://127.0.0.1:${gw.adminPort}${pathAndQuery}`, {
    method: init.method ?? 'GET',
    // The console's own origin: state-changing calls from anywhere else are refused.
    headers: { cookie, origin: `http://127.0.0.1:${gw.adminPort}`, ...(init.body ? { 'content-type': 'application/json' } : {}) },
    body: init.body ? JSON.stringify(init.body) : undefined,
  });
  return { status: res.status, text: await res.clone().text(), json: (await res.json()) as Record<string, any> };
}

async function login(email: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${gw.adminPort}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD }) });
  expect(res.status).toBe(200);
  return res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
}

/** A block page's form posted as the browser does: through the proxy (the action names the gateway's own name). */
function postFrom(from: string, action: string, form: Record<string, string>): Promise<number> {
  const body = new URLSearchParams(form).toString();
  return new Promise((resolve, reject) => {
    const headers = { host: new URL(action).host, 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) };
    const req = http.request({ host: '127.0.0.1', port: gw.proxyPort, path: action, method: 'POST', localAddress: from, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  tmp = tempDir('sg-e2e-nm-');
  smtp = await startSmtp();
  origin = await startHttpOrigin('school-origin');
  const lists = makeLists(
    { games: { name: 'Games', domains: ['games.test', 'arcade.test'] }, gambling: { name: 'Gambling', domains: ['casino.test'] } },
    path.join(tmp.dir, 'lists'),
  );
  const configFile = path.join(tmp.dir, 'schoolgate.json');
  writeFileSync(configFile, JSON.stringify({
    clients: [
      { cidr: `${TEACHER}/32`, user: 'teacher@school.test', group: 'staff' },
      { cidr: `${PUPIL}/32`, user: 'pupil@school.test', group: 'pupils' },
    ],
    policyGroups: { staff: { categories: ['games', 'gambling'] }, pupils: { categories: ['games', 'gambling'] } },
    smtp: { url: `smtp://127.0.0.1:${smtp.port}`, from: 'filter@school.test', to: ['dsl@school.test'] },
  }));
  const config = loadConfig(
    {
      'data-dir': path.join(tmp.dir, 'data'), config: configFile, lists: [lists],
      'proxy-port': '0', 'admin-port': '0', listen: '127.0.0.1', 'allowed-clients': '127.0.0.0/8',
    },
    {},
    tmp.dir,
  );
  gw = await startSchoolgate(config, {
    logger: silentLogger,
    out: new PassThrough(),
    upstreamLookup: loopbackLookup({ 'games.test': '127.0.0.1', 'arcade.test': '127.0.0.1' }),
    allowLoopbackDestinationsForTests: true,
  });
  for (const [email, role] of [['nm@school.test', 'network_manager'], ['teacher@school.test', 'staff']]) {
    await gw.db.query('INSERT INTO users (email, role, password_hash) VALUES ($1, $2, $3)', [email, role, await hashPassword(PASSWORD)]);
  }
  nmCookie = await login('nm@school.test');
  teacherCookie = await login('teacher@school.test');
});

afterAll(async () => {
  await gw?.close();
  await origin?.close();
  await smtp?.close();
  tmp?.remove();
});

describe('overrides for one group, through the gateway', () => {
  it('approves a teacher’s unblock request for staff: the teacher gets through, a pupil is still blocked, the teacher is told', async () => {
    const page = await getFrom(TEACHER, 'games.test', '/maths');
    expect(page.status).toBe(403);
    const ref = /name="ref" value="([^"]+)"/.exec(page.body)?.[1];
    const action = /action="([^"]+)"/.exec(page.body)?.[1];
    expect(ref && action).toBeTruthy();
    expect(await postFrom(TEACHER, action!, { ref: ref!, type: 'unblock_request', note: 'year 9 maths' })).toBe(200);
    await gw.incidents.flush();

    const requests = await api('/api/unblock-requests', nmCookie);
    expect(requests.text).not.toContain('teacher@school.test');
    expect(requests.text).not.toContain(TEACHER);
    const id = requests.json.items.find((r: { host: string }) => r.host === 'games.test').id;
    const decided = await api(`/api/unblock-requests/${id}/decision`, nmCookie, { method: 'POST', body: { decision: 'allow', reason: 'maths department uses it', group: 'staff' } });
    expect(decided.status, decided.text).toBe(200);

    const teacher = await getFrom(TEACHER, 'games.test', '/maths');
    expect(teacher.status).toBe(200);
    expect(origin.seen.some((s) => s.url === '/maths')).toBe(true);
    const pupil = await getFrom(PUPIL, 'games.test', '/maths');
    expect(pupil.status).toBe(403);
    expect(pupil.headers['x-schoolgate-category']).toBe('games');

    const mail = await waitFor(() => smtp.mails.find((m) => m.to.includes('teacher@school.test')), 'the decision email');
    expect(subjectOf(mail)).toBe('[schoolgate] Unblock request approved: games.test');
    const mine = await api('/api/incidents?kind=unblock_request', teacherCookie);
    expect(mine.json.items[0]).toMatchObject({ host: 'games.test', status: 'closed', decision: { outcome: 'approved', reason: 'maths department uses it' } });
  });

  it('stops applying an expired allow entry for pupils, with no restart and no request to the console', async () => {
    expect((await getFrom(PUPIL, 'arcade.test', '/probability')).status).toBe(403);
    const res = await api('/api/overrides', nmCookie, {
      method: 'POST',
      body: { action: 'allow', entry: 'arcade.test', reason: 'one lesson', group: 'pupils', expiresAt: new Date(Date.now() + 5000).toISOString() },
    });
    expect(res.status, res.text).toBe(200);
    expect((await getFrom(PUPIL, 'arcade.test', '/probability')).status).toBe(200);
    expect((await getFrom(TEACHER, 'arcade.test', '/probability')).status).toBe(403);
    await waitFor(async () => (await getFrom(PUPIL, 'arcade.test', '/probability')).status === 403, 'the expired entry to stop applying', 20_000, 250);
    const listed = (await api('/api/overrides', nmCookie)).json.items.find((o: { entry: string }) => o.entry === 'arcade.test');
    expect(listed).toMatchObject({ expired: true, group: 'pupils' });
  });
});
