/**
 * `schoolgate users` while `schoolgate start` holds the embedded database: the CLI hands its work
 * to the running server over the local control endpoint (control.json), and the contract
 * (users add with the password on stdin, then POST /api/login) holds.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Agent, ProxyAgent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../helpers/parts';
import { runCommand } from '../helpers/process';
import { harness, makeLists, ORIGIN, type Harness } from './helpers';

const root = mkdtempSync(path.join(os.tmpdir(), 'sg-cli-live-'));
const dataDir = path.join(root, 'data');
const listsDir = makeLists(path.join(root, 'ut1'), { adult: ['porn.example'], gambling: ['casino.example'] });
const PASSWORD = 'Live-server-pass-1';
const NEW_PASSWORD = 'Live-server-pass-2';

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DATABASE_URL;
  delete env.SCHOOLGATE_DATA_DIR;
  delete env.SCHOOLGATE_LOG_LEVEL;
  return env;
}

/** Exactly the contract's spelling: npx, from the project folder. */
const npx = (args: string[], stdin: string | null = null, dir = dataDir) => runCommand('npx', ['schoolgate', ...args, '--data-dir', dir], { stdin, env: childEnv() });

let server: ChildProcessWithoutNullStreams;
let serverOut = '';
let adminUrl = '';
let proxyUrl = '';

beforeAll(async () => {
  server = spawn(
    process.execPath,
    ['--import=tsx', path.join(projectRoot, 'bin', 'schoolgate.ts'), 'start', '--lists', listsDir, '--proxy-port', '0', '--admin-port', '0', '--data-dir', dataDir],
    { cwd: projectRoot, env: childEnv(), stdio: ['pipe', 'pipe', 'pipe'] },
  );
  server.stdout.on('data', (d) => (serverOut += d));
  server.stderr.on('data', (d) => (serverOut += d));
  adminUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner within 90 s:\n${serverOut}`)), 90_000);
    const check = () => {
      const m = /console:\s+(http:\/\/\S+)/.exec(serverOut);
      const p = /proxy:\s+(http:\/\/\S+)/.exec(serverOut);
      if (m && p) {
        proxyUrl = p[1];
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    server.stdout.on('data', check);
    server.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before its banner:\n${serverOut}`));
    });
  });
}, 120_000);

afterAll(async () => {
  if (server && server.exitCode === null && server.signalCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  rmSync(root, { recursive: true, force: true });
});

// Response shapes are what the assertions check.
const json = async (res: Response): Promise<any> => res.json();

async function login(email: string, password: string) {
  return fetch(`${adminUrl}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
}

describe('schoolgate users while schoolgate start runs on the same data folder', () => {
  it('publishes a private control file naming a 0600 Unix socket in the data folder', () => {
    const file = path.join(dataDir, 'control.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const c = JSON.parse(readFileSync(file, 'utf8'));
    expect(c.socket).toBe(path.join(dataDir, 'control.sock'));
    expect(c.url).toBeUndefined();
    expect(statSync(c.socket).isSocket()).toBe(true);
    expect(statSync(c.socket).mode & 0o777).toBe(0o600);
    expect(c.pid).toBe(server.pid);
    expect(c.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('users add (password on stdin) goes through the server, and that password logs in over HTTP', async () => {
    const r = await npx(['users', 'add', 'dsl@school.test', '--role', 'safeguarding_lead'], `${PASSWORD}\n`);
    expect(r.stderr).not.toMatch(/SG_ERR/);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('added dsl@school.test (safeguarding_lead)\n');

    const res = await login('dsl@school.test', PASSWORD);
    expect(res.status).toBe(200);
    expect(res.headers.get('set-cookie')).toMatch(/^sg_session=[^;]+;.*HttpOnly/i);
    expect((await json(res)).user).toMatchObject({ email: 'dsl@school.test', role: 'safeguarding_lead' });
  });

  it('users add without a password prints the generated one once; users list shows both', async () => {
    const r = await npx(['users', 'add', 'tech@school.test', '--role', 'network_manager']);
    expect(r.code, r.stderr).toBe(0);
    const generated = /^added tech@school\.test \(network_manager\)\npassword: (\S+)\n$/.exec(r.stdout);
    expect(generated).not.toBeNull();
    expect((await login('tech@school.test', generated![1])).status).toBe(200);

    const list = await npx(['users', 'list']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout.trim().split('\n').map((l) => l.split('\t').slice(1).join(' '))).toEqual([
      'dsl@school.test safeguarding_lead',
      'tech@school.test network_manager',
    ]);
  });

  it('refuses as the direct path does: duplicate, short password, unknown user, bad role', async () => {
    const dup = await npx(['users', 'add', 'DSL@school.test', '--role', 'staff'], 'long-enough-pw\n');
    expect(dup.code).toBe(1);
    expect(dup.stderr).toContain('schoolgate: SG_ERR_USER_EXISTS: user already exists: DSL@school.test\n');
    const short = await npx(['users', 'add', 'y@school.test', '--role', 'staff'], 'short\n');
    expect(short.code).toBe(1);
    expect(short.stderr).toContain('SG_ERR_VALIDATION: invalid input: password must be at least 8 characters');
    const bad = await npx(['users', 'add', 'z@school.test', '--role', 'admin'], 'long-enough-pw\n');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('SG_ERR_USAGE');
    const nobody = await npx(['users', 'passwd', 'nobody@school.test'], `${NEW_PASSWORD}\n`);
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toContain('SG_ERR_NOT_FOUND: not found: no user nobody@school.test');
  });

  it('users passwd changes the password and ends the sessions; the audit log names the cli', async () => {
    const before = await login('dsl@school.test', PASSWORD);
    const oldCookie = before.headers.get('set-cookie')!.split(';')[0];
    const r = await npx(['users', 'passwd', 'DSL@school.test'], `${NEW_PASSWORD}\n`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('password changed for dsl@school.test\n');
    expect((await fetch(`${adminUrl}/api/me`, { headers: { cookie: oldCookie } })).status).toBe(401);
    expect((await login('dsl@school.test', PASSWORD)).status).toBe(401);
    const now = await login('dsl@school.test', NEW_PASSWORD);
    expect(now.status).toBe(200);
    const cookie = now.headers.get('set-cookie')!.split(';')[0];
    const audit = await json(await fetch(`${adminUrl}/api/audit?actor=cli`, { headers: { cookie } }));
    const actions = audit.items.map((a: { actor: string; action: string; details: { email?: string } }) => `${a.actor} ${a.action} ${a.details?.email}`);
    expect(actions).toEqual(expect.arrayContaining(['cli user_add dsl@school.test', 'cli user_add tech@school.test', 'cli user_password dsl@school.test']));
  });

  it('the control routes are not on the TCP port, not even with the real token, nor relayed through the gateway', async () => {
    const real = JSON.parse(readFileSync(path.join(dataDir, 'control.json'), 'utf8')).token as string;
    const body = JSON.stringify({ email: 'evil@school.test', role: 'safeguarding_lead', password: 'Evil-pass-123' });
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${real}` };
    const direct = await fetch(`${adminUrl}/api/control/users`, { method: 'POST', headers, body });
    // The console's auth answers first (the control token is no console credential): never a 200.
    expect([401, 404]).toContain(direct.status);
    expect([401, 404]).toContain((await fetch(`${adminUrl}/api/control/users`, { headers })).status);
    // A school device asks the gateway to fetch the admin port's loopback address for it.
    // As a plain proxy request (absolute URL), and as a CONNECT tunnel: both refused by the gateway.
    const plain = new ProxyAgent({ uri: proxyUrl, proxyTunnel: false });
    const proxied = await request(`${adminUrl}/api/control/users`, { method: 'POST', headers, body, dispatcher: plain });
    expect(proxied.statusCode).toBe(403);
    expect(proxied.headers['x-schoolgate-error']).toBe('SG_ERR_DESTINATION_DENIED');
    expect(await proxied.body.text()).not.toContain('evil@school.test');
    await plain.close();
    const tunnel = new ProxyAgent(proxyUrl);
    await expect(request(`${adminUrl}/api/control/users`, { method: 'POST', headers, body, dispatcher: tunnel })).rejects.toThrow(/403/);
    await tunnel.close();
    const list = await npx(['users', 'list']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).not.toContain('evil@school.test');
  });

  it('the control socket refuses a missing or wrong token, a session cookie and a user API token; /docs does not list it', async () => {
    const body = JSON.stringify({ email: 'evil@school.test', role: 'safeguarding_lead', password: 'Evil-pass-123' });
    const socket = path.join(dataDir, 'control.sock');
    const agent = new Agent({ connect: { socketPath: socket } });
    const post = (headers: Record<string, string>) =>
      request('http://localhost/api/control/users', { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json', ...headers }, body });
    const dsl = await login('dsl@school.test', NEW_PASSWORD);
    const cookie = dsl.headers.get('set-cookie')!.split(';')[0];
    const tokenRes = await fetch(`${adminUrl}/api/tokens`, {
      method: 'POST', headers: { 'content-type': 'application/json', cookie, origin: adminUrl }, body: JSON.stringify({ name: 'automation' }),
    });
    expect(tokenRes.status).toBe(200);
    const { token: userToken } = await json(tokenRes);
    const real = JSON.parse(readFileSync(path.join(dataDir, 'control.json'), 'utf8')).token as string;
    const wrong = real.slice(0, -1) + (real.endsWith('A') ? 'B' : 'A');

    const attempts: Record<string, string>[] = [{}, { authorization: `Bearer ${wrong}` }, { authorization: 'Bearer ' }, { cookie, origin: adminUrl }, { authorization: `Bearer ${userToken}` }];
    for (const headers of attempts) {
      const res = await post(headers);
      expect(res.statusCode, JSON.stringify(headers)).toBe(401);
      expect(((await res.body.json()) as any).error.code).toBe('SG_ERR_UNAUTHENTICATED');
    }
    expect((await request('http://localhost/api/control/users', { dispatcher: agent, headers: { authorization: `Bearer ${wrong}` } })).statusCode).toBe(401);
    await agent.close();
    const list = await npx(['users', 'list']);
    expect(list.stdout).not.toContain('evil@school.test');

    const spec = await json(await fetch(`${adminUrl}/docs/json`));
    expect(Object.keys(spec.paths).some((p) => p.startsWith('/api/control'))).toBe(false);
    expect(Object.keys(spec.paths)).toContain('/api/users');
  });

  it('never logs a password or the control token', () => {
    const token = JSON.parse(readFileSync(path.join(dataDir, 'control.json'), 'utf8')).token as string;
    for (const secret of [PASSWORD, NEW_PASSWORD, token]) expect(serverOut).not.toContain(secret);
  });

  it('on SIGTERM the server withdraws its control file, and the CLI opens the database directly again', async () => {
    server.kill('SIGTERM');
    const code = await new Promise((r) => server.once('exit', r));
    expect(code).toBe(0);
    expect(existsSync(path.join(dataDir, 'control.json'))).toBe(false);
    expect(existsSync(path.join(dataDir, 'control.sock'))).toBe(false);
    const list = await npx(['users', 'list']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain('dsl@school.test\tsafeguarding_lead');
  });
});

describe('schoolgate users when the embedded database is held and no server answers', () => {
  /** A data folder whose lock is held by a live process (this test worker), as a foreign opener would. */
  function heldFolder(name: string): string {
    const dir = path.join(root, name);
    mkdirSync(path.join(dir, 'pglite'), { recursive: true });
    writeFileSync(path.join(dir, 'pglite.lock'), `${process.pid}\n`);
    return dir;
  }

  it('without a control file: a clear "in use by another process" error', async () => {
    const dir = heldFolder('no-control');
    const r = await npx(['users', 'list'], null, dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('SG_ERR_DB_LOCKED');
    expect(r.stderr).toContain(`in use by process ${process.pid}`);
    expect(r.stderr).toContain('control.json');
  });

  it('with a control file left by another (dead) process: not trusted, nothing sent', async () => {
    const dir = heldFolder('stale-control');
    const sink = createServer((s) => {
      received = true;
      s.destroy();
    });
    let received = false;
    const sinkPath = path.join(dir, 'sink.sock');
    await new Promise<void>((r) => sink.listen(sinkPath, r));
    try {
      writeFileSync(path.join(dir, 'control.json'), JSON.stringify({ socket: sinkPath, token: 'x', pid: process.pid + 1_000_000 }));
      const r = await npx(['users', 'add', 'a@school.test', '--role', 'staff'], 'Some-password-1\n', dir);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('SG_ERR_DB_LOCKED');
      expect(received).toBe(false);
    } finally {
      sink.close();
    }
  });

  it('with the holder\'s control endpoint unreachable: says so', async () => {
    const dir = heldFolder('unreachable');
    writeFileSync(path.join(dir, 'control.json'), JSON.stringify({ socket: path.join(dir, 'control.sock'), token: 'x', pid: process.pid }));
    const r = await npx(['users', 'list'], null, dir);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('SG_ERR_DB_LOCKED');
    expect(r.stderr).toContain('cannot be reached');
  });
});

describe('control endpoint (in process)', () => {
  let h: Harness;
  let token: string;
  beforeAll(async () => {
    h = await harness();
    await h.app.listen({ port: 0, host: '127.0.0.1' });
    // The socket is opened by an onListen hook, which fastify does not wait for.
    for (let i = 0; i < 200 && !existsSync(path.join(h.dir, 'control.json')); i++) await new Promise((r) => setTimeout(r, 50));
    token = JSON.parse(readFileSync(path.join(h.dir, 'control.json'), 'utf8')).token;
  });
  afterAll(async () => {
    await h?.close();
  });

  const add = (bearer: string, email: string) =>
    request('http://localhost/api/control/users', {
      method: 'POST', dispatcher: new Agent({ connect: { socketPath: path.join(h.dir, 'control.sock') } }),
      headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
      body: JSON.stringify({ email, role: 'staff', password: 'Staff-pass-123' }),
    });

  it('answers on the socket with the token; the TCP app has no control route, from any address, even with it', async () => {
    for (const remoteAddress of ['127.0.0.1', '::1', '203.0.113.7']) {
      const res = await h.app.inject({
        method: 'POST', url: '/api/control/users', remoteAddress,
        headers: { authorization: `Bearer ${token}` },
        payload: { email: 'tcp@school.test', role: 'staff', password: 'Staff-pass-123' },
      });
      expect([401, 404], remoteAddress).toContain(res.statusCode);
    }
    const ok = await add(token, 'local@school.test');
    expect(ok.statusCode).toBe(200);
    expect(((await ok.body.json()) as any).user).toMatchObject({ role: 'staff', disabled: false });
    expect((await add('not-the-token', 'x@school.test')).statusCode).toBe(401);
    const users = await h.db.query<{ email: string }>("SELECT email FROM users WHERE email IN ('tcp@school.test', 'x@school.test')");
    expect(users.rows).toEqual([]);
    // The console's own account route is untouched by this: a staff cookie still may not add users.
    const asStaff = await h.app.inject({
      method: 'POST', url: '/api/users', headers: { cookie: h.users.staff.cookie, origin: ORIGIN }, payload: { email: 'n@school.test', role: 'staff' },
    });
    expect(asStaff.statusCode).toBe(403);
  });

  it('on close leaves a control file that another server has since written', async () => {
    const file = path.join(h.dir, 'control.json');
    const foreign = JSON.stringify({ socket: '/nonexistent/control.sock', token: 'someone-else', pid: 1 });
    writeFileSync(file, foreign);
    await h.app.close();
    expect(readFileSync(file, 'utf8')).toBe(foreign);
  });
});
