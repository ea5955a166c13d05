import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Parts a fresh machine may lack: a PostgreSQL server, squidGuard, Chromium, certutil, the shared
 * UT1 lists, OpenLDAP's slapd (with ldap-utils; each directory test runs its own, never the
 * system's service), and the command-line tools tests run (curl, openssl, tar, ps, radclient). squid is not among
 * them: no test runs it; it is a peer in bench/proxy.ts, which says when it is absent.
 * `npm test` skips what is missing and says why; `.ci/run` installs them and sets
 * SCHOOLGATE_REQUIRE_ALL=1, under which a missing part fails the run instead.
 */
export const requireAll = process.env.SCHOOLGATE_REQUIRE_ALL === '1';

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const sharedLists = path.resolve(projectRoot, '..', 'shared', 'blocklists');
export const ut1 = path.join(sharedLists, 'ut1');

/** Returns null when the part is there, else the reason it is missing (and throws under REQUIRE_ALL). */
export function need(part: string, missing: string | null): string | null {
  if (missing === null) return null;
  const reason = `${part} not available: ${missing}`;
  if (requireAll) throw new Error(`SCHOOLGATE_REQUIRE_ALL=1 but ${reason}`);
  console.warn(`[skip] ${reason}`);
  return reason;
}

function which(cmd: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

export function findBinary(...candidates: string[]): string | null {
  for (const c of candidates) {
    if (c.startsWith('/') ? existsSync(c) : which(c)) return c.startsWith('/') ? c : which(c);
  }
  return null;
}

export const chromiumPath = '/usr/bin/chromium';
export const chromiumMissing = (): string | null => (existsSync(chromiumPath) ? null : `${chromiumPath} not installed (apt-get install chromium)`);
/** FreeRADIUS's test client, which sends the RADIUS accounting packets test/e2e/radius.test.ts checks. */
export const radclientMissing = (): string | null => commandMissing('radclient', 'freeradius-utils');
/** OpenLDAP's slapd, slapadd and slappasswd, and the mdb and ppolicy modules (harness/slapd.ts). */
export { slapdMissing } from '../../harness/slapd';
export const sharedListsMissing = (): string | null => (existsSync(ut1) ? null : `${ut1} not found`);

/** A command-line tool a test runs (curl, openssl, tar, ps): null when it is on PATH, else why not and how to get it. */
export const commandMissing = (cmd: string, aptPackage: string): string | null =>
  findBinary(cmd) ? null : `${cmd} not installed (apt-get install ${aptPackage})`;
