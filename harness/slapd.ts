import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * A real OpenLDAP server (Debian's slapd) of its own: a temporary config and database, seeded
 * offline with slapadd, listening on a free loopback port. Nothing of the system's slapd service
 * is used. Disabled accounts are locked the way OpenLDAP locks them: the ppolicy overlay with
 * `pwdAccountLockedTime: 000001010000Z` (locked until an administrator unlocks it), which makes
 * the server itself refuse the account's bind.
 */
export const SLAPD = '/usr/sbin/slapd';
export const SLAPADD = '/usr/sbin/slapadd';
export const SLAPPASSWD = '/usr/sbin/slappasswd';

export function slapdMissing(): string | null {
  for (const bin of [SLAPD, SLAPADD, SLAPPASSWD]) if (!existsSync(bin)) return `${bin} not installed (apt-get install slapd ldap-utils)`;
  if (!existsSync('/usr/lib/ldap/back_mdb.so') || !existsSync('/usr/lib/ldap/ppolicy.so')) return '/usr/lib/ldap modules (back_mdb, ppolicy) missing (apt-get install slapd)';
  return null;
}

export interface LdapPerson {
  uid: string;
  mail: string;
  givenName: string;
  sn: string;
  password: string;
  /** Group common names (groupOfNames under ou=groups). */
  groups: string[];
  /** The form, e.g. 9B (OpenLDAP's inetOrgPerson: departmentNumber). */
  form?: string;
  /** The year group (inetOrgPerson: businessCategory). */
  yearGroup?: string;
  /** Locked with ppolicy's pwdAccountLockedTime. */
  disabled?: boolean;
}

export interface Slapd {
  url: string;
  port: number;
  /** ldaps://127.0.0.1:PORT when started with `tls` (StartTLS is then offered on `url` too). */
  ldapsUrl: string | null;
  baseDn: string;
  bindDn: string;
  bindPassword: string;
  dir: string;
  /** Stops the server (SIGTERM, waits for it to exit). */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same data. */
  start(): Promise<void>;
  /** SIGSTOP: the port still accepts connections but nothing answers (a hung directory). */
  freeze(): void;
  thaw(): void;
  close(): Promise<void>;
}

const BASE = 'dc=school,dc=test';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function ssha(password: string): string {
  const r = spawnSync(SLAPPASSWD, ['-h', '{SSHA}', '-s', password], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`slappasswd failed: ${r.stderr}`);
  return r.stdout.trim();
}

function ldif(people: LdapPerson[], servicePassword: string): string {
  const groups = new Map<string, string[]>();
  for (const p of people) for (const g of p.groups) groups.set(g, [...(groups.get(g) ?? []), `uid=${p.uid},ou=people,${BASE}`]);
  const entries = [
    `dn: ${BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Test School\ndc: school`,
    `dn: ou=people,${BASE}\nobjectClass: organizationalUnit\nou: people`,
    `dn: ou=groups,${BASE}\nobjectClass: organizationalUnit\nou: groups`,
    `dn: ou=services,${BASE}\nobjectClass: organizationalUnit\nou: services`,
    `dn: ou=policies,${BASE}\nobjectClass: organizationalUnit\nou: policies`,
    `dn: cn=default,ou=policies,${BASE}\nobjectClass: organizationalRole\nobjectClass: pwdPolicy\ncn: default\npwdAttribute: userPassword\npwdLockout: TRUE\npwdMaxFailure: 0`,
    `dn: cn=schoolgate,ou=services,${BASE}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: schoolgate\nuserPassword: ${ssha(servicePassword)}`,
    ...people.map((p) =>
      [
        `dn: uid=${p.uid},ou=people,${BASE}`,
        'objectClass: inetOrgPerson',
        `uid: ${p.uid}`,
        `cn: ${p.givenName} ${p.sn}`,
        `givenName: ${p.givenName}`,
        `sn: ${p.sn}`,
        `mail: ${p.mail}`,
        ...(p.form ? [`departmentNumber: ${p.form}`] : []),
        ...(p.yearGroup ? [`businessCategory: ${p.yearGroup}`] : []),
        `userPassword: ${ssha(p.password)}`,
        ...(p.disabled ? ['pwdAccountLockedTime: 000001010000Z'] : []),
      ].join('\n'),
    ),
    ...[...groups].map(([cn, members]) => [`dn: cn=${cn},ou=groups,${BASE}`, 'objectClass: groupOfNames', `cn: ${cn}`, ...members.map((m) => `member: ${m}`)].join('\n')),
  ];
  return entries.join('\n\n') + '\n';
}

function conf(dir: string, bindDn: string, tls: { cert: string; key: string } | null): string {
  return [
    'include /etc/ldap/schema/core.schema',
    'include /etc/ldap/schema/cosine.schema',
    'include /etc/ldap/schema/inetorgperson.schema',
    'modulepath /usr/lib/ldap',
    'moduleload back_mdb.so',
    'moduleload ppolicy.so',
    `pidfile ${path.join(dir, 'slapd.pid')}`,
    ...(tls ? [`TLSCertificateFile ${tls.cert}`, `TLSCertificateKeyFile ${tls.key}`] : []),
    'database mdb',
    `suffix "${BASE}"`,
    `rootdn "cn=admin,${BASE}"`,
    `directory ${path.join(dir, 'db')}`,
    'maxsize 10485760',
    'overlay ppolicy',
    `ppolicy_default "cn=default,ou=policies,${BASE}"`,
    'access to attrs=userPassword by self write by anonymous auth by * none',
    `access to * by dn.exact="${bindDn}" read by self read by * none`,
    '',
  ].join('\n');
}

/** Starts a seeded slapd; `tls` adds StartTLS with that certificate. */
export async function startSlapd(people: LdapPerson[], opts: { tls?: { cert: string; key: string } } = {}): Promise<Slapd> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sg-slapd-'));
  mkdirSync(path.join(dir, 'db'));
  const bindDn = `cn=schoolgate,ou=services,${BASE}`;
  const bindPassword = 'service account passphrase';
  const confFile = path.join(dir, 'slapd.conf');
  let tls: { cert: string; key: string } | null = null;
  if (opts.tls) {
    tls = { cert: path.join(dir, 'tls.crt'), key: path.join(dir, 'tls.key') };
    writeFileSync(tls.cert, opts.tls.cert);
    writeFileSync(tls.key, opts.tls.key, { mode: 0o600 });
  }
  writeFileSync(confFile, conf(dir, bindDn, tls));
  writeFileSync(path.join(dir, 'seed.ldif'), ldif(people, bindPassword));
  const add = spawnSync(SLAPADD, ['-f', confFile, '-l', path.join(dir, 'seed.ldif')], { encoding: 'utf8' });
  if (add.status !== 0) throw new Error(`slapadd failed: ${add.stderr}`);
  const port = await freePort();
  const url = `ldap://127.0.0.1:${port}`;
  const ldapsUrl = tls ? `ldaps://127.0.0.1:${await freePort()}` : null;
  let child: ChildProcess | null = null;

  const start = async () => {
    // -d keeps it in the foreground (a child we can stop); level 0 prints nothing.
    const c = spawn(SLAPD, ['-f', confFile, '-h', [`${url}/`, ...(ldapsUrl ? [`${ldapsUrl}/`] : [])].join(' '), '-d', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr!.on('data', (d) => (err += d));
    child = c;
    const end = Date.now() + 10_000;
    for (;;) {
      if (c.exitCode !== null) throw new Error(`slapd exited (${c.exitCode}): ${err}`);
      const up = await new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.once('connect', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      });
      if (up) return;
      if (Date.now() > end) throw new Error(`slapd did not listen on ${port}: ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGCONT');
    c.kill('SIGTERM');
    await exited;
  };
  await start();
  return {
    url, port, ldapsUrl, baseDn: BASE, bindDn, bindPassword, dir,
    start, stop,
    freeze: () => void child?.kill('SIGSTOP'),
    thaw: () => void child?.kill('SIGCONT'),
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
