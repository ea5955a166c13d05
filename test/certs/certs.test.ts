import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate, createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { caCertPath, caKeyPath, ensureCa, initCa, loadCa } from '../../certs/ca';
import { LeafCertificates, validateCertHost } from '../../certs/leaf';
import { isSchoolgateError } from '../../core/errors';
import { projectRoot } from '../helpers/parts';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'sg-certs-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const cli = (...args: string[]) =>
  spawnSync(process.execPath, ['--import=tsx', path.join(projectRoot, 'bin/schoolgate.ts'), ...args], { cwd: projectRoot, encoding: 'buffer', env: { ...process.env, SCHOOLGATE_LOG_LEVEL: 'silent' } });

describe('school CA', () => {
  it('is a 10-year CA with its key at mode 0600, and init refuses to replace it without --force', () => {
    const dir = tmp();
    const ca = initCa(dir);
    expect(statSync(caKeyPath(dir)).mode & 0o777).toBe(0o600);
    const x = new X509Certificate(ca.certPem);
    expect(x.ca).toBe(true);
    const years = (new Date(x.validTo).getTime() - Date.now()) / (365.25 * 24 * 3600 * 1000);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
    expect(x.verify(x.publicKey)).toBe(true); // self-signed, with the key on disk
    expect(createPublicKey(readFileSync(caKeyPath(dir))).export({ format: 'der', type: 'spki' })).toEqual(x.publicKey.export({ format: 'der', type: 'spki' }));

    let err: unknown;
    try {
      initCa(dir);
    } catch (e) {
      err = e;
    }
    expect(isSchoolgateError(err, 'SG_ERR_CA_EXISTS')).toBe(true);
    expect(loadCa(dir).certPem).toBe(ca.certPem);
    const replaced = initCa(dir, { force: true });
    expect(replaced.certPem).not.toBe(ca.certPem);
  });

  it('loadCa on an empty folder says how to make one; ensureCa makes it once', () => {
    const dir = tmp();
    expect(() => loadCa(dir)).toThrow(/SG_ERR_CA_MISSING|not initialised/);
    const first = ensureCa(dir);
    expect(first.created).toBe(true);
    const again = ensureCa(dir);
    expect(again.created).toBe(false);
    expect(again.ca.certPem).toBe(first.ca.certPem);
  });

  it('`schoolgate ca init` and `ca export [--der]` work from the command line', () => {
    const dir = tmp();
    const init = cli('ca', 'init', '--data-dir', dir);
    expect(init.status).toBe(0);
    expect(existsSync(caCertPath(dir))).toBe(true);
    const again = cli('ca', 'init', '--data-dir', dir);
    expect(again.status).toBe(1);
    expect(again.stderr.toString()).toContain('SG_ERR_CA_EXISTS');
    const pem = cli('ca', 'export', '--data-dir', dir);
    expect(pem.status).toBe(0);
    expect(pem.stdout.toString()).toBe(readFileSync(caCertPath(dir), 'utf8'));
    const der = cli('ca', 'export', '--der', '--data-dir', dir);
    expect(der.status).toBe(0);
    expect(new X509Certificate(der.stdout).fingerprint256).toBe(new X509Certificate(pem.stdout).fingerprint256);
    // openssl, an independent parser, agrees it is a CA
    const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: pem.stdout }).toString();
    expect(text).toMatch(/CA:TRUE/);
    expect(cli('ca', 'bogus', '--data-dir', dir).status).toBe(2);
  });

  it('`ca export` on a fresh data folder creates the CA that start would use', () => {
    const dir = tmp();
    const r = cli('ca', 'export', '--data-dir', dir);
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(loadCa(dir).certPem).toBe(r.stdout.toString());
  });
});

describe('leaf certificates', () => {
  const dir = tmp();
  const ca = initCa(dir);
  const leaf = new LeafCertificates({ ca, dataDir: dir });
  const caX = new X509Certificate(ca.certPem);

  it('are signed by the school CA, name the host in SAN, and chain in OpenSSL', async () => {
    const pem = await leaf.certificatePem('Example.COM.');
    const x = new X509Certificate(pem);
    expect(x.verify(caX.publicKey)).toBe(true);
    expect(x.checkIssued(caX)).toBe(true);
    expect(x.checkHost('example.com')).toBe('example.com');
    expect(x.ca).toBe(false);
    const days = (new Date(x.validTo).getTime() - Date.now()) / 86_400_000;
    expect(days).toBeLessThanOrEqual(398);
    const ip = new X509Certificate(await leaf.certificatePem('127.0.0.1'));
    expect(ip.checkIP('127.0.0.1')).toBe('127.0.0.1');
    const v6 = new X509Certificate(await leaf.certificatePem('[::1]'));
    expect(v6.checkIP('::1')).toBe('::1');
    // A real TLS handshake verifies it against the CA alone.
    const server = tls.createServer({ SNICallback: leaf.sniCallback }, (s) => s.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const got = await new Promise<string>((resolve, reject) => {
      const c = tls.connect({ port, host: '127.0.0.1', servername: 'www.example.org', ca: ca.certPem }, () => {
        c.once('data', (d) => resolve(`${c.authorized}:${d}`));
      });
      c.on('error', reject);
    });
    server.close();
    expect(got).toBe('true:ok');
  });

  it('share one key across hosts, kept at 0600 and reused after a restart', async () => {
    const a = new X509Certificate(await leaf.certificatePem('a.example'));
    const b = new X509Certificate(await leaf.certificatePem('b.example'));
    expect(a.publicKey.export({ format: 'der', type: 'spki' })).toEqual(b.publicKey.export({ format: 'der', type: 'spki' }));
    expect(statSync(path.join(dir, 'ca', 'leaf.key')).mode & 0o777).toBe(0o600);
    const restarted = new LeafCertificates({ ca, dataDir: dir });
    expect(restarted.keyPem).toBe(leaf.keyPem);
  });

  it('sign each host once: cached, and concurrent first requests share one signing', async () => {
    const fresh = new LeafCertificates({ ca, dataDir: dir });
    const all = await Promise.all(Array.from({ length: 25 }, () => fresh.context('same.example')));
    expect(new Set(all).size).toBe(1);
    expect(fresh.issued).toBe(1);
    await fresh.context('SAME.example.');
    expect(fresh.issued).toBe(1);
    await fresh.context('other.example');
    expect(fresh.issued).toBe(2);
  });

  it('refuse names that are not host names before anything is signed or stored', async () => {
    for (const bad of ['../../etc/passwd', 'a b.example', '', 'x'.repeat(300), 'foo/bar', 'a..b', '-lead.example', 'ex%41mple.com', '*.example.com', 'host:443']) {
      expect(() => validateCertHost(bad), bad).toThrow(/SG_ERR_CERT_HOST|not valid/);
      await expect(leaf.context(bad)).rejects.toSatisfy((e: unknown) => isSchoolgateError(e, 'SG_ERR_CERT_HOST'));
    }
    expect(validateCertHost('Under_Score.Example.')).toBe('under_score.example');
    expect(validateCertHost('xn--bcher-kva.example')).toBe('xn--bcher-kva.example');
  });
});
