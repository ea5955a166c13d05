import { appendFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config';
import { createLogger } from '../../core/log';
import { startSchoolgate, type SchoolgateHandle } from '../../server/start';
import { fixtureLists, refFrom, tmpDir, type Reply } from './helpers';

/**
 * The network manager reads the service log; the safeguarding lead's console is where who did what
 * belongs (issue 11, point 8). A named user on a loopback address of its own (the clients map), a
 * block, the reports from its page, a forgery and a bad list line holding a secret: at info, none
 * of who, where from, or the secret reaches the log; at debug (a deliberate choice to see more)
 * who and where from may.
 */
const CLIENT = '127.0.0.5';
const OTHER = '127.0.0.6';
const USER = 'pupil.named@school.test';
const DEVICE = 'LAB-PC-07';
const LIST_SECRET = 'c0ntrol-t0ken-9f8e7d';

function request(port: number, opts: { path: string; method?: string; headers?: Record<string, string>; body?: string; from: string }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, localAddress: opts.from, method: opts.method ?? 'GET', path: opts.path, headers: opts.headers, agent: false });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body, reusedSocket: false }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('the service log tells the network manager what happened, not who did it', () => {
  let sg: SchoolgateHandle | undefined;
  const dirs: string[] = [];
  afterEach(async () => {
    await sg?.close();
    sg = undefined;
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  async function scenario(level: 'info' | 'debug'): Promise<{ log: string; secrets: string[] }> {
    const dataDir = tmpDir();
    const lists = fixtureLists();
    dirs.push(dataDir, lists);
    // A line that is not a domain, as a list source pointed at a control file would read.
    appendFileSync(path.join(lists, 'testblock', 'domains'), `{"token":"${LIST_SECRET}"}\n`);
    writeFileSync(path.join(dataDir, 'schoolgate.json'), JSON.stringify({ clients: [{ cidr: `${CLIENT}/32`, user: USER, device: DEVICE, group: 'pupils' }] }));
    const config = loadConfig({ 'data-dir': dataDir, lists: [lists], categories: 'testblock', 'proxy-port': '0', 'admin-port': '0', listen: '127.0.0.1' }, {});
    const out = new PassThrough();
    let log = '';
    out.on('data', (d: Buffer) => (log += d.toString()));
    sg = await startSchoolgate(config, { logger: createLogger({ level, destination: out }), out: new Writable({ write: (_c, _e, cb) => cb() }) });

    const page = await request(sg.proxyPort, { path: 'http://blocked.test/page', headers: { host: 'blocked.test' }, from: CLIENT });
    expect(page.status).toBe(403);
    const ref = refFrom(page.body)!;
    const report = (from: string, fields: Record<string, string>) =>
      request(sg!.adminPort, {
        path: '/block/report', method: 'POST', from,
        headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString(),
      });
    expect((await report(CLIENT, { ref, type: 'self_report', note: 'clicked a link' })).status).toBe(200);
    expect((await report(OTHER, { ref, type: 'unblock_request' })).status).toBe(403);
    expect((await report(OTHER, { ref: 'forged', type: 'self_report' })).status).toBe(400);
    await sg.incidents.flush();
    // The incidents themselves keep who and where from: that is the record the school needs.
    const rows = (await sg.db.query<{ kind: string; user_name: string; device: string; client_ip: string }>(
      'SELECT kind, user_name, device, client_ip::text AS client_ip FROM incidents ORDER BY id',
    )).rows;
    expect(rows).toEqual([
      { kind: 'blocked', user_name: USER, device: DEVICE, client_ip: CLIENT },
      expect.objectContaining({ kind: 'self_report', user_name: USER, client_ip: CLIENT }),
    ]);
    // Nothing identifying on the page either: it is served on the blocked site's origin.
    for (const s of [USER, DEVICE, CLIENT]) expect(page.body).not.toContain(s);

    const control = path.join(dataDir, 'control.json');
    const secrets = [LIST_SECRET, ref, readFileSync(path.join(dataDir, 'reference.key'), 'utf8').trim()];
    if (existsSync(control)) secrets.push((JSON.parse(readFileSync(control, 'utf8')) as { token: string }).token);
    await sg.close();
    sg = undefined;
    // Something was logged about each event, so the absence below is not an empty log.
    for (const msg of ['"msg":"blocked"', 'blocklist lines skipped', 'block report recorded', 'SG_ERR_REFERENCE_CLIENT', 'SG_ERR_BAD_REFERENCE']) {
      expect(log).toContain(msg);
    }
    return { log, secrets };
  }

  it('at info: no user, device or client address, and no secret or list-line text', async () => {
    const { log, secrets } = await scenario('info');
    for (const who of [USER, 'pupil.named', DEVICE, CLIENT, OTHER]) expect(log).not.toContain(who);
    for (const s of secrets) expect(log).not.toContain(s);
    expect(log).toContain('"category":"testblock"');
  });

  it('at debug: who and where from are there for whoever chose to look', async () => {
    const { log, secrets } = await scenario('debug');
    for (const who of [USER, DEVICE, CLIENT, OTHER]) expect(log).toContain(who);
    // Secrets stay out at every level; list-line text from the lists themselves is allowed at debug.
    for (const s of secrets.slice(1)) expect(log).not.toContain(s);
  });
});
