/**
 * Issue #11 point 2: the data folder is for the user schoolgate runs as. The embedded database's
 * files (its WAL holds password hashes), the spool, the keys and the control token must not be
 * readable by other local users; only the school CA certificate may be.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../helpers/parts';
import { runCommand } from '../helpers/process';
import { makeLists } from '../admin-api/helpers';
import { secureDataDir } from '../../core/files';

const root = mkdtempSync(path.join(os.tmpdir(), 'sg-datadir-'));
const listsDir = makeLists(path.join(root, 'ut1'), { gambling: ['casino.example'] });
afterAll(() => rmSync(root, { recursive: true, force: true }));

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DATABASE_URL;
  delete env.SCHOOLGATE_DATA_DIR;
  return env;
}

/** Every path under `dir` (itself included) with its permission bits, symlinks not followed. */
function walk(dir: string): Array<{ rel: string; mode: number; dir: boolean }> {
  const out: Array<{ rel: string; mode: number; dir: boolean }> = [];
  const visit = (abs: string, rel: string) => {
    const st = lstatSync(abs);
    if (st.isSymbolicLink()) return;
    out.push({ rel: rel || '.', mode: st.mode & 0o777, dir: st.isDirectory() });
    if (st.isDirectory()) for (const n of readdirSync(abs)) visit(path.join(abs, n), rel ? `${rel}/${n}` : n);
  };
  visit(dir, '');
  return out;
}

/** The paths that let group or other users in: everything but ca/ca.crt must be owner-only. */
function exposed(dir: string): string[] {
  return walk(dir)
    .filter((e) => (e.rel === 'ca/ca.crt' ? (e.mode & 0o022) !== 0 : (e.mode & 0o077) !== 0))
    .map((e) => `${e.rel} ${e.mode.toString(8)}`);
}

/** An older release's folder: world-readable folders and files, as 0755/0666 made them. */
function olderReleaseFolder(dir: string): void {
  mkdirSync(path.join(dir, 'spool'), { recursive: true });
  mkdirSync(path.join(dir, 'pglite', 'pg_wal'), { recursive: true });
  writeFileSync(path.join(dir, 'spool', 'incidents-1.ndjson'), '{}\n');
  writeFileSync(path.join(dir, 'pglite', 'pg_wal', '000000010000000000000001'), 'hashes');
  writeFileSync(path.join(dir, 'control.json'), '{}');
  for (const f of ['spool/incidents-1.ndjson', 'pglite/pg_wal/000000010000000000000001', 'control.json']) chmodSync(path.join(dir, f), 0o666);
  for (const d of ['.', 'spool', 'pglite', 'pglite/pg_wal']) chmodSync(path.join(dir, d), 0o755);
}

/** Sends one request through the proxy and resolves with its status. */
function viaProxy(proxyPort: number, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({ host: '127.0.0.1', port: proxyPort, path: url, headers: { host: u.host } }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('error', reject);
    req.end();
  });
}

async function startServer(dataDir: string): Promise<{ child: ChildProcessWithoutNullStreams; proxyPort: number; out: () => string }> {
  // A umask that lets everyone read (what a school server often has), so only schoolgate's own mask protects the files.
  const child = spawn('sh', ['-c', `umask 000 && exec "$0" "$@"`, process.execPath, '--import=tsx', path.join(projectRoot, 'bin', 'schoolgate.ts'), 'start', '--lists', listsDir, '--proxy-port', '0', '--admin-port', '0', '--data-dir', dataDir], {
    cwd: projectRoot, env: childEnv(), stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const proxyPort = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner within 90 s:\n${out}`)), 90_000);
    const check = () => {
      const m = /proxy:\s+http:\/\/[^\s]+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before its banner:\n${out}`));
    });
  });
  return { child, proxyPort, out: () => out };
}

async function stop(child: ChildProcessWithoutNullStreams): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

describe('the data folder is owner-only', () => {
  it('after start, a blocked request and a new account, nothing in a fresh data folder is open to group or others (ca.crt aside)', async () => {
    const dataDir = path.join(root, 'fresh');
    const s = await startServer(dataDir);
    try {
      expect(await viaProxy(s.proxyPort, 'http://casino.example/')).toBe(403);
      // Checked before the CLI below runs: it tightens the folder itself, which would hide the server's lapses.
      expect(exposed(dataDir)).toEqual([]);
      const add = await runCommand('sh', ['-c', 'umask 000 && exec "$0" "$@"', 'npx', 'schoolgate', 'users', 'add', 'dsl@school.example', '--role', 'safeguarding_lead', '--data-dir', dataDir], {
        stdin: 'a long passphrase here\n', env: childEnv(),
      });
      expect(add.code, add.stderr).toBe(0);
    } finally {
      await stop(s.child);
    }
    const entries = walk(dataDir);
    // The walk covered what matters: the embedded database, its WAL, the CA and the control file's folder.
    expect(entries.some((e) => e.rel.startsWith('pglite/') && e.rel.includes('pg_wal/') && !e.dir)).toBe(true);
    expect(entries.some((e) => e.rel === 'ca/ca.key')).toBe(true);
    expect(exposed(dataDir)).toEqual([]);
    expect(entries.find((e) => e.rel === '.')!.mode).toBe(0o700);
  }, 180_000);

  it('tightens what an older release left readable when schoolgate starts', async () => {
    const dataDir = path.join(root, 'older');
    olderReleaseFolder(dataDir);
    expect(exposed(dataDir).length).toBeGreaterThan(0);
    const s = await startServer(dataDir);
    try {
      expect(exposed(dataDir)).toEqual([]);
      expect(lstatSync(path.join(dataDir, 'control.json')).mode & 0o777).toBe(0o600);
    } finally {
      await stop(s.child);
    }
  }, 180_000);

  it('refuses a home folder as the data folder rather than strip access from everything in it', () => {
    // HOME points at a scratch folder, so a broken guard would only touch that.
    const home = path.join(root, 'home');
    mkdirSync(path.join(home, 'Documents'), { recursive: true });
    chmodSync(path.join(home, 'Documents'), 0o755);
    const saved = process.env.HOME;
    process.env.HOME = home;
    try {
      expect(() => secureDataDir(home)).toThrow(expect.objectContaining({ code: 'SG_ERR_DATA_DIR' }));
    } finally {
      process.env.HOME = saved;
    }
    expect(lstatSync(path.join(home, 'Documents')).mode & 0o777).toBe(0o755);
  });

  it('tightens an older folder in CLI commands too (schoolgate check)', async () => {
    const dataDir = path.join(root, 'older-cli');
    olderReleaseFolder(dataDir);
    const r = await runCommand(process.execPath, ['--import=tsx', 'bin/schoolgate.ts', 'check', '--lists', listsDir, '--data-dir', dataDir], { stdin: 'http://casino.example/\n', env: childEnv() });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('block\tgambling\n');
    expect(exposed(dataDir)).toEqual([]);
  }, 60_000);
});
