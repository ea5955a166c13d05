import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkLogin } from '../../admin-api/auth';
import { openDb } from '../../db/db';
import { projectRoot } from '../helpers/parts';
import { runCommand } from '../helpers/process';

const dir = mkdtempSync(path.join(os.tmpdir(), 'sg-users-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cliEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, SCHOOLGATE_LOG_LEVEL: 'warn' };
  delete env.DATABASE_URL;
  return env;
};
const schoolgate = (args: string[], stdin: string | null = null) =>
  runCommand(process.execPath, ['--import=tsx', path.join(projectRoot, 'bin', 'schoolgate.ts'), ...args, '--data-dir', dir], { stdin, env: cliEnv() });

describe('schoolgate users', () => {
  it('adds a user with the password from stdin (npx contract), and it logs in', async () => {
    const r = await runCommand('npx', ['schoolgate', 'users', 'add', 'dsl@school.example', '--role', 'safeguarding_lead', '--data-dir', dir], { stdin: 'Very-secret-pass-1\n', env: cliEnv() });
    expect(r.stderr).not.toMatch(/SG_ERR/);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('added dsl@school.example (safeguarding_lead)');
    expect(r.stdout).not.toContain('Very-secret-pass-1');
    expect(r.stdout).not.toContain('password:');
  });

  it('generates and prints a password once when stdin gives none', async () => {
    const r = await schoolgate(['users', 'add', 'tech@school.example', '--role', 'network_manager']);
    expect(r.code, r.stderr).toBe(0);
    const m = /password: (\S+)/.exec(r.stdout);
    expect(m).not.toBeNull();
    const db = await openDb({ databaseUrl: null, dataDir: dir });
    try {
      expect((await checkLogin(db, 'dsl@school.example', 'Very-secret-pass-1'))?.role).toBe('safeguarding_lead');
      expect((await checkLogin(db, 'tech@school.example', m![1]))?.role).toBe('network_manager');
      expect(await checkLogin(db, 'tech@school.example', 'wrong')).toBeNull();
      const stored = await db.query<{ password_hash: string }>('SELECT password_hash FROM users');
      expect(stored.rows.every((u) => u.password_hash.startsWith('scrypt$'))).toBe(true);
    } finally {
      await db.close();
    }
  });

  it('refuses a bad role, a duplicate email and a short password with clear errors', async () => {
    const bad = await schoolgate(['users', 'add', 'x@school.example', '--role', 'admin'], 'long-enough-pw\n');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('SG_ERR_USAGE');
    const dup = await schoolgate(['users', 'add', 'DSL@school.example', '--role', 'staff'], 'long-enough-pw\n');
    expect(dup.code).toBe(1);
    expect(dup.stderr).toContain('SG_ERR_USER_EXISTS');
    const short = await schoolgate(['users', 'add', 'y@school.example', '--role', 'staff'], 'short\n');
    expect(short.code).toBe(1);
    expect(short.stderr).toContain('SG_ERR_VALIDATION');
    const passwd = await schoolgate(['users', 'passwd', 'TECH@school.example'], 'Brand-new-pass-2\n');
    expect(passwd.code, passwd.stderr).toBe(0);
    expect(passwd.stdout).toContain('password changed for tech@school.example');
    const nobody = await schoolgate(['users', 'passwd', 'nobody@school.example'], 'Brand-new-pass-2\n');
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toContain('SG_ERR_NOT_FOUND');
    const list = await schoolgate(['users', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout.trim().split('\n').map((l) => l.split('\t').slice(1).join(' '))).toEqual([
      'dsl@school.example safeguarding_lead',
      'tech@school.example network_manager',
    ]);
  }, 180_000); // six CLI processes, each opening the embedded database: minutes on a loaded 2-core CI machine, not 60 s

  it('the changed password is the one that works', async () => {
    const db = await openDb({ databaseUrl: null, dataDir: dir });
    try {
      expect((await checkLogin(db, 'tech@school.example', 'Brand-new-pass-2'))?.email).toBe('tech@school.example');
    } finally {
      await db.close();
    }
  });
});
