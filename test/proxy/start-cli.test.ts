import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findBinary, need, projectRoot, sharedListsMissing } from '../helpers/parts';
import { GAMBLING_HOST, fixtureLists, tmpDir, ut1Gambling } from './helpers';

/**
 * The contract outside checks rely on: `schoolgate start ...` in the foreground, `ca export`, and
 * `curl -x` getting the block page. Real processes, real curl.
 */
const curl = findBinary('curl');
const skip = need('shared UT1 lists', sharedListsMissing()) !== null || need('curl', curl ? null : 'curl not installed (apt-get install curl)') !== null;

const bin = path.join(projectRoot, 'bin', 'schoolgate.ts');
const children: ChildProcess[] = [];
const dirs: string[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function start(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--import=tsx', bin, 'start', ...args], {
    cwd: projectRoot,
    env: { ...process.env, SCHOOLGATE_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const ready = new Promise<{ proxy: number; admin: number; banner: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner within 90 s\n${out}\n${err}`)), 90_000);
    child.stdout!.on('data', () => {
      const proxy = /proxy: +http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      const admin = /console: +http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (proxy && admin && /\n\s*(lists|!! Load)/.test(out)) {
        clearTimeout(timer);
        resolve({ proxy: Number(proxy[1]), admin: Number(admin[1]), banner: out });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`start exited with ${code}\n${out}\n${err}`));
    });
  });
  const stop = () =>
    new Promise<number | null>((resolve) => {
      if (child.exitCode !== null) return resolve(child.exitCode);
      child.once('exit', (code) => resolve(code));
      child.kill('SIGTERM');
    });
  return { child, ready, stop, stderr: () => err };
}

const curlGet = (args: string[]) => {
  const r = spawnSync(curl!, ['-sS', '--max-time', '20', '-w', '\n%{http_code}', ...args], { encoding: 'utf8' });
  const lines = r.stdout.trimEnd().split('\n');
  return { status: Number(lines.pop()), body: lines.join('\n'), stderr: r.stderr };
};

function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

describe.skipIf(skip)('schoolgate start (CLI)', () => {
  it('serves the block page to curl over HTTP and HTTPS, exports its CA, and stops cleanly on SIGTERM', async () => {
    const dataDir = tmpDir();
    const lists = fixtureLists();
    dirs.push(dataDir, lists);
    const sg = start(['--lists', ut1Gambling, '--lists', lists, '--categories', 'gambling,testblock', '--proxy-port', '0', '--admin-port', '0', '--data-dir', dataDir]);
    const { proxy, admin, banner } = await sg.ready;
    expect(banner).toContain(`CA certificate: ${path.join(dataDir, 'ca', 'ca.crt')}`);
    expect(banner).toMatch(/lists: +\d+ entries/);

    const http = curlGet(['-x', `http://127.0.0.1:${proxy}`, `http://${GAMBLING_HOST}/`]);
    expect(http.status).toBe(403);
    expect(http.body).toContain('Gambling/Casino games');

    const exported = spawnSync(process.execPath, ['--import=tsx', bin, 'ca', 'export', '--data-dir', dataDir], { cwd: projectRoot, encoding: 'utf8' });
    expect(exported.status).toBe(0);
    expect(exported.stdout).toBe(readFileSync(path.join(dataDir, 'ca', 'ca.crt'), 'utf8'));

    const caFile = path.join(dataDir, 'exported-ca.pem');
    writeFileSync(caFile, exported.stdout);
    const https = curlGet(['--cacert', caFile, '-x', `http://127.0.0.1:${proxy}`, `https://www.${GAMBLING_HOST}/path`]);
    expect(https.stderr).toBe('');
    expect(https.status).toBe(403);
    expect(https.body).toContain('Gambling/Casino games');

    const pac = curlGet([`http://127.0.0.1:${admin}/proxy.pac`]);
    expect(pac.status).toBe(200);
    expect(pac.body).toContain(`${proxy}`);

    // The gateway's own name (issue 14): the CA through the proxy, plain and over TLS, never looked up (curl -x sends the name to the proxy).
    expect(banner).toContain('own pages:      http://schoolgate.invalid/ through the proxy');
    const own = curlGet(['-x', `http://127.0.0.1:${proxy}`, 'http://schoolgate.invalid/ca.crt']);
    expect(own.status).toBe(200);
    expect(own.body.trim()).toBe(exported.stdout.trim());
    const ownTls = curlGet(['--cacert', caFile, '-x', `http://127.0.0.1:${proxy}`, 'https://schoolgate.invalid/ca.crt']);
    expect(ownTls.stderr).toBe('');
    expect(ownTls.body.trim()).toBe(exported.stdout.trim());
    expect(curlGet(['-x', `http://127.0.0.1:${proxy}`, 'http://schoolgate.invalid/api/session']).status).toBe(404);

    expect(await sg.stop()).toBe(0);
    expect(sg.stderr()).not.toMatch(/"level":50/); // no errors logged
  });

  it('starts fail-closed when the first-run download fails, then picks up `lists update`', async () => {
    const dataDir = tmpDir();
    const lists = fixtureLists();
    dirs.push(dataDir, lists);
    const sg = start(['--proxy-port', '0', '--admin-port', '0', '--data-dir', dataDir], {
      SCHOOLGATE_LISTS_URL: `http://127.0.0.1:${await closedPort()}/blacklists.tar.gz`,
    });
    const { proxy, admin, banner } = await sg.ready;
    expect(banner).toContain('NO LISTS LOADED');
    expect(banner).toContain(`npx schoolgate lists update --from http://127.0.0.1:`);
    const closed = curlGet(['-x', `http://127.0.0.1:${proxy}`, 'http://any.example.test/']);
    expect(closed.status).toBe(403);
    expect(closed.body).toContain('not ready');
    expect(curlGet([`http://127.0.0.1:${admin}/`]).status).toBeLessThan(500); // the console is up

    const update = spawnSync(process.execPath, ['--import=tsx', bin, 'lists', 'update', '--from', lists, '--data-dir', dataDir], { cwd: projectRoot, encoding: 'utf8' });
    expect(update.status, update.stderr).toBe(0);
    let blocked = { status: 0, body: '', stderr: '' };
    for (let i = 0; i < 40; i++) {
      blocked = curlGet(['-x', `http://127.0.0.1:${proxy}`, 'http://blocked.test/']);
      if (blocked.body.includes('testblock')) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(blocked.status).toBe(403);
    expect(blocked.body).toContain('This page is blocked');
    expect(await sg.stop()).toBe(0);
  });
});

