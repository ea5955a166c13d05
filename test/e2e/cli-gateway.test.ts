import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDb } from '../../db/db';
import { commandMissing, need, projectRoot, sharedListsMissing, ut1 } from '../helpers/parts';
import { freePort, startHttpOrigin, tempDir, waitFor, type Origin } from './fixtures';

/**
 * The contract outside checks rely on, through the real CLI and the real UT1 lists:
 *   npx schoolgate start --lists DIR --categories a,b --proxy-port P --admin-port A --data-dir D
 *   npx schoolgate ca export --data-dir D
 *   curl -x http://127.0.0.1:P http://<blocked>/   -> 403 block page
 */

const run = promisify(execFile);
// curl is the outside check the contract names; ps finds the node process npx started, to signal it.
const skip =
  need('shared UT1 lists', sharedListsMissing()) !== null ||
  need('curl', commandMissing('curl', 'curl')) !== null ||
  need('ps', commandMissing('ps', 'procps')) !== null;

/** The child's environment: the contract's flags only, nothing inherited that would change the config. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SCHOOLGATE_') && k !== 'DATABASE_URL') env[k] = v;
  return env;
}

/** First entry of a UT1 file (comments and blanks skipped): read in place, never copied. */
/** The process npx ends up running: the deepest descendant (npm exec -> sh -> node). */
async function innermost(pid: number): Promise<number> {
  for (;;) {
    const { stdout } = await run('ps', ['-o', 'pid=,comm=', '--ppid', String(pid)]).catch(() => ({ stdout: '' }));
    const kids = stdout.split('\n').map((l) => l.trim().split(/\s+/)).filter((p) => p[0] && p[1] !== 'esbuild');
    if (kids.length === 0) return pid;
    pid = Number(kids[0][0]);
  }
}

const firstEntry = (file: string) => readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).find((l) => l && !l.startsWith('#'))!;

describe.skipIf(skip)('schoolgate start, the real CLI, with the real UT1 lists', () => {
  const tmp = tempDir('sg-e2e-cli-');
  const dataDir = path.join(tmp.dir, 'data');
  let child: ChildProcess;
  let proxyPort: number;
  let adminPort: number;
  let stdout = '';
  let stderr = '';
  let origin: Origin;
  let exitCode: number | null = null;
  let exited: Promise<void>;

  const curl = async (args: string[]) => {
    const { stdout: out } = await run('curl', ['-sS', '--max-time', '20', '-x', `http://127.0.0.1:${proxyPort}`, '-w', '\n%{http_code}', ...args], { maxBuffer: 4 << 20 });
    const i = out.lastIndexOf('\n');
    return { status: Number(out.slice(i + 1)), body: out.slice(0, i) };
  };

  beforeAll(async () => {
    origin = await startHttpOrigin('cli-origin');
    proxyPort = await freePort();
    adminPort = await freePort();
    child = spawn(
      'npx',
      ['schoolgate', 'start', '--lists', ut1, '--categories', 'gambling,adult', '--proxy-port', String(proxyPort), '--admin-port', String(adminPort), '--data-dir', dataDir],
      // Its own process group, so the test can stop npx and the node under it together.
      // The test origin lives on loopback, which the gateway refuses unless the school allows it.
      { cwd: projectRoot, env: { ...childEnv(), SCHOOLGATE_ALLOWED_DESTINATIONS: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    exited = new Promise((resolve) => child.once('exit', (code) => { exitCode = code; resolve(); }));
    await waitFor(() => {
      if (exitCode !== null) throw new Error(`schoolgate start exited with ${exitCode}: ${stderr.slice(-2000)}`);
      return stdout.includes('schoolgate is running');
    }, 'the startup banner', 110_000, 200);
  }, 120_000);

  afterAll(async () => {
    if (child && exitCode === null) {
      process.kill(-child.pid!, 'SIGKILL');
      await exited;
    }
    await origin?.close();
    tmp.remove();
  });

  it('prints where the proxy, the console and the CA certificate are', () => {
    expect(stdout).toContain(`proxy:          http://127.0.0.1:${proxyPort}`);
    expect(stdout).toContain(`console:        http://127.0.0.1:${adminPort}`);
    expect(stdout).toContain(path.join(dataDir, 'ca', 'ca.crt'));
    expect(stdout).toMatch(/lists: +\d+ entries in \d+ categories/);
  });

  it('`ca export` prints the CA PEM; `--der` the same certificate in DER', async () => {
    const { stdout: pem } = await run('npx', ['schoolgate', 'ca', 'export', '--data-dir', dataDir], { cwd: projectRoot, env: childEnv() });
    expect(pem).toMatch(/^-----BEGIN CERTIFICATE-----/);
    const ca = new X509Certificate(pem);
    expect(ca.ca).toBe(true);
    expect(pem.trim()).toBe(readFileSync(path.join(dataDir, 'ca', 'ca.crt'), 'utf8').trim());
    const der = await run('npx', ['schoolgate', 'ca', 'export', '--der', '--data-dir', dataDir], { cwd: projectRoot, env: childEnv(), encoding: 'buffer' });
    expect(Buffer.compare(der.stdout, ca.raw)).toBe(0);
    writeFileSync(path.join(tmp.dir, 'ca.pem'), pem);
  });

  it('curl -x gets the 403 block page for a listed UT1 gambling domain', async () => {
    const host = firstEntry(path.join(ut1, 'gambling', 'domains'));
    const r = await curl([`http://${host}/`]);
    expect(r.status).toBe(403);
    expect(r.body).toContain('Gambling/Casino games');
    expect(r.body).toContain(host);
  });

  it('blocks a UT1 adult url entry by its path', async () => {
    const entry = firstEntry(path.join(ut1, 'adult', 'urls'));
    const r = await curl([`http://${entry}`]);
    expect(r.status).toBe(403);
    expect(r.body).toContain('Pornography'); // the UK school profile's name for UT1 adult (issue 14)
  });

  it('shows the block page over HTTPS with a certificate that verifies against the exported CA', async () => {
    const host = firstEntry(path.join(ut1, 'gambling', 'domains'));
    const r = await curl(['--cacert', path.join(tmp.dir, 'ca.pem'), `https://www.${host}/`]);
    expect(r.status).toBe(403);
    expect(r.body).toContain('Gambling/Casino games');
  });

  it('passes an allowed request to the origin', async () => {
    const r = await curl([`http://127.0.0.1:${origin.port}/through-cli`]);
    expect(r.status).toBe(200);
    expect(r.body).toContain('origin=cli-origin method=GET path=/through-cli');
  });

  it('stops on SIGTERM with exit code 0, having written the blocks to the database and no key to its output', async () => {
    // SIGTERM to schoolgate itself, as a service manager would send it; npx then exits with its code.
    const node = await innermost(child.pid!);
    expect(node).not.toBe(child.pid);
    process.kill(node, 'SIGTERM');
    await Promise.race([exited, new Promise((_, reject) => setTimeout(() => reject(new Error('schoolgate did not stop within 30 s of SIGTERM')), 30_000))]);
    expect(exitCode).toBe(0);
    expect(stdout + stderr).not.toMatch(/PRIVATE KEY/);
    // The embedded database is the process's own while it runs; now it is ours to read.
    const db = await openDb({ databaseUrl: null, dataDir });
    try {
      const host = firstEntry(path.join(ut1, 'gambling', 'domains'));
      // One person's pages of one site, HTTP and HTTPS, are one incident listing each attempt (issue 13).
      const rows = (await db.query<{ kind: string; category: string; client_ip: string; url: string; count: number }>(
        `SELECT i.kind, i.category, i.client_ip, a.url, i.count
           FROM (SELECT id AS incident_id, url FROM incidents UNION ALL SELECT incident_id, url FROM incident_folds) a JOIN incidents i ON i.id = a.incident_id
          WHERE i.host IN ($1, $2) ORDER BY a.url`,
        [host, `www.${host}`],
      )).rows;
      expect(rows.length).toBeGreaterThanOrEqual(2);
      expect(rows.every((r) => Number(r.count) >= 2)).toBe(true);
      expect(rows.every((r) => r.kind === 'blocked' && r.category === 'gambling' && r.client_ip === '127.0.0.1')).toBe(true);
      expect(rows.map((r) => r.url)).toEqual(expect.arrayContaining([`http://${host}/`, `https://www.${host}/`]));
    } finally {
      await db.close();
    }
  });
});
