import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type DirectoryConfig } from '../../core/config';
import { isSchoolgateError } from '../../core/errors';
import { cnOf, LdapDirectory } from '../../directory/ldap';
import { selfSignedCert } from '../../harness/certs';
import { startSlapd, type Slapd } from '../../harness/slapd';
import { need, slapdMissing } from '../helpers/parts';
import { tmpDir } from '../proxy/helpers';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('the directory config key', () => {
  const load = (directory: unknown) => {
    const dir = tmpDir('sg-dircfg-');
    dirs.push(dir);
    writeFileSync(path.join(dir, 'schoolgate.json'), JSON.stringify({ directory }));
    return () => loadConfig({ 'data-dir': dir }, {});
  };
  const base = { url: 'ldap://127.0.0.1:389', baseDn: 'dc=s', bindDn: 'cn=sg,dc=s', bindPasswordFile: 'bind.secret', groupMap: { Staff: 'staff' } };

  it('fills the defaults and resolves the password file beside the config file', () => {
    const c = load(base)().directory!;
    expect(c).toMatchObject({ loginAttributes: ['uid', 'mail'], syncIntervalMinutes: 60, cacheSeconds: 300, timeoutMs: 3000 });
    expect(path.isAbsolute(c.bindPasswordFile)).toBe(true);
  });

  it('refuses what cannot work, naming the key', () => {
    expect(load({ ...base, url: 'http://dc.school' })).toThrow(/directory\.url must be an ldap:\/\/ or ldaps:\/\/ URL/);
    expect(load({ ...base, url: 'ldap://sg:secret@dc.school' })).toThrow(/directory\.url must not hold credentials/);
    expect(load({ ...base, url: 'ldaps://dc.school', startTls: true })).toThrow(/directory\.startTls is for ldap:\/\/ URLs/);
    expect(load({ ...base, groupmap: {} })).toThrow(/unknown key directory\.groupmap \(did you mean directory\.groupMap\?\)/);
    expect(load({ ...base, groupMap: undefined })).toThrow(/directory\.groupMap is required/);
    expect(load({ ...base, loginAttributes: ['uid)(x=*'] })).toThrow(/directory\.loginAttributes must be attribute names/);
  });

  it('takes a group\'s cn from its DN, escapes undone', () => {
    expect(cnOf('CN=Year 7,OU=Groups,DC=school,DC=test')).toBe('Year 7');
    expect(cnOf('cn=Smith\\, J (staff),ou=groups,dc=s')).toBe('Smith, J (staff)');
    expect(cnOf('ou=groups,dc=s')).toBeNull();
  });
});

const noSlapd = need('OpenLDAP slapd', slapdMissing()) !== null;

describe.skipIf(noSlapd)('LdapDirectory against a real slapd over StartTLS and LDAPS', () => {
  let slapd: Slapd;
  let dir: string;
  const serverCert = selfSignedCert(['127.0.0.1']);
  beforeAll(async () => {
    slapd = await startSlapd(
      [
        { uid: 'sam.jones', mail: 'sam.jones@school.test', givenName: 'Sam', sn: 'Jones', password: 'pupil pass one', groups: ['Year 7'], form: '7B' },
        // In both groups: the groupMap's order decides, not the directory's.
        { uid: 'ta.lee', mail: 'ta.lee@school.test', givenName: 'Ta', sn: 'Lee', password: 'assistant pass', groups: ['Year 7', 'Staff'] },
      ],
      { tls: serverCert },
    );
    dir = tmpDir('sg-ldap-');
    dirs.push(dir);
    writeFileSync(path.join(dir, 'bind.secret'), `${slapd.bindPassword}\n`);
    writeFileSync(path.join(dir, 'wrong.secret'), 'not the service password\n');
    writeFileSync(path.join(dir, 'ca.pem'), serverCert.cert);
    writeFileSync(path.join(dir, 'other-ca.pem'), selfSignedCert(['127.0.0.1']).cert);
    writeFileSync(path.join(dir, 'other-name.pem'), serverCert.cert);
  }, 30_000);
  afterAll(async () => slapd?.close());

  const directory = (o: Partial<DirectoryConfig> = {}) =>
    new LdapDirectory({
      url: slapd.url, baseDn: slapd.baseDn, bindDn: slapd.bindDn, bindPasswordFile: path.join(dir, 'bind.secret'),
      groupMap: { Staff: 'staff', 'Year 7': 'pupils' }, timeoutMs: 2000, ...o,
    });
  const failure = async (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e);

  it('verifies over StartTLS, the server\'s certificate checked against caFile and the URL\'s host', async () => {
    const d = directory({ startTls: true, caFile: path.join(dir, 'ca.pem') });
    expect(await d.verify('sam.jones', 'pupil pass one')).toMatchObject({ email: 'sam.jones@school.test', name: 'Sam Jones', form: '7B', policyGroup: 'pupils' });
    expect(await d.verify('sam.jones', 'wrong')).toBeNull();
    const untrusted = await failure(directory({ startTls: true, caFile: path.join(dir, 'other-ca.pem') }).verify('sam.jones', 'pupil pass one'));
    expect(isSchoolgateError(untrusted, 'SG_ERR_DIRECTORY')).toBe(true);
    expect((untrusted as Error).message).toMatch(/self[- ]signed|unable to verify/i);
    // The same certificate, but the URL names a host it was not made for: refused, not sent the password.
    const misnamed = await failure(directory({ url: slapd.url.replace('127.0.0.1', 'localhost'), startTls: true, caFile: path.join(dir, 'ca.pem') }).verify('sam.jones', 'pupil pass one'));
    expect(isSchoolgateError(misnamed, 'SG_ERR_DIRECTORY')).toBe(true);
    expect((misnamed as Error).message).toMatch(/does not match certificate/);
  });

  it('verifies over LDAPS', async () => {
    expect(await directory({ url: slapd.ldapsUrl!, caFile: path.join(dir, 'ca.pem') }).verify('sam.jones@school.test', 'pupil pass one')).toMatchObject({ email: 'sam.jones@school.test' });
    expect(isSchoolgateError(await failure(directory({ url: slapd.ldapsUrl!, caFile: path.join(dir, 'other-ca.pem') }).verify('sam.jones', 'pupil pass one')), 'SG_ERR_DIRECTORY')).toBe(true);
  });

  it('maps a person in several groups by the groupMap\'s order', async () => {
    expect(await directory().verify('ta.lee', 'assistant pass')).toMatchObject({ groups: expect.arrayContaining(['Staff', 'Year 7']), policyGroup: 'staff' });
    expect(await directory({ groupMap: { 'Year 7': 'pupils', Staff: 'staff' } }).verify('ta.lee', 'assistant pass')).toMatchObject({ policyGroup: 'pupils' });
  });

  it('refuses an empty password without asking (an LDAP unauthenticated bind), and does not take the directory for down', async () => {
    const d = directory();
    expect(await d.verify('sam.jones', '')).toBeNull();
    expect(await d.verify('sam.jones', 'pupil pass one')).not.toBeNull();
  });

  it('says the service account was refused, without its password', async () => {
    const e = await failure(directory({ bindPasswordFile: path.join(dir, 'wrong.secret') }).verify('sam.jones', 'pupil pass one'));
    expect(isSchoolgateError(e, 'SG_ERR_DIRECTORY')).toBe(true);
    expect((e as Error).message).toContain('refused the service account');
    expect((e as Error).message).not.toContain('not the service password');
  });
});
