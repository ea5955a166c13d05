import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import forge from 'node-forge';
import { afterAll, describe, expect, it } from 'vitest';
import { caCertPath, caKeyPath, ensureCa, initCa, loadCa, randomSerial } from '../../certs/ca';
import { LeafCertificates, validateCertHost } from '../../certs/leaf';
import * as x509 from '../../certs/x509';
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
  it('is a 10-year ECDSA P-256 CA with its key at mode 0600, and init refuses to replace it without --force', () => {
    const dir = tmp();
    const ca = initCa(dir);
    expect(statSync(caKeyPath(dir)).mode & 0o777).toBe(0o600);
    const x = new X509Certificate(ca.certPem);
    expect(x.ca).toBe(true);
    expect(x.publicKey.asymmetricKeyType).toBe('ec');
    expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
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
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
    expect(cli('ca', 'bogus', '--data-dir', dir).status).toBe(2);
    const rsa = cli('ca', 'init', '--force', '--key-type', 'rsa', '--data-dir', dir);
    expect(rsa.status).toBe(0);
    expect(rsa.stdout.toString()).toContain('RSA 2048');
    expect(new X509Certificate(readFileSync(caCertPath(dir))).publicKey.asymmetricKeyType).toBe('rsa');
    const bad = cli('ca', 'init', '--force', '--key-type', 'dsa', '--data-dir', dir);
    expect(bad.status).toBe(2);
    expect(bad.stderr.toString()).toContain('SG_ERR_USAGE');
  });

  it('refuses, with SG_ERR_CA_INVALID, a key that is not the certificate\'s and a certificate that is not a CA', () => {
    const a = tmp();
    const b = tmp();
    initCa(a);
    initCa(b);
    copyFileSync(caKeyPath(b), caKeyPath(a));
    expect(() => loadCa(a)).toThrow(/SG_ERR_CA_INVALID|cannot be used/);
    writeFileSync(caKeyPath(a), 'not a key');
    expect(() => loadCa(a)).toThrow(/SG_ERR_CA_INVALID|cannot be used/);
  });

  it('still serves a school CA made by an earlier release (RSA, built and signed by node-forge)', async () => {
    const dir = tmp();
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
    cert.serialNumber = '01f00d';
    cert.validity.notBefore = new Date(Date.now() - 86_400_000);
    cert.validity.notAfter = new Date(Date.now() + 5 * 365 * 86_400_000);
    const attrs = [{ name: 'commonName', value: 'schoolgate school CA' }, { name: 'organizationName', value: 'schoolgate' }];
    cert.setSubject(attrs);
    cert.setIssuer(attrs);
    cert.setExtensions([{ name: 'basicConstraints', cA: true, critical: true, pathLenConstraint: 0 }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true }, { name: 'subjectKeyIdentifier' }]);
    cert.sign(forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
    mkdirSync(path.join(dir, 'ca'), { recursive: true });
    writeFileSync(caCertPath(dir), forge.pki.certificateToPem(cert));
    writeFileSync(caKeyPath(dir), keyPem, { mode: 0o600 });
    const ca = loadCa(dir);
    expect(ca.keyType).toBe('rsa');
    const leafPem = await new LeafCertificates({ ca, dataDir: dir }).certificatePem('old-ca.example');
    const leafX = new X509Certificate(leafPem);
    expect(leafX.verify(ca.x509.publicKey)).toBe(true);
    expect(leafX.checkIssued(ca.x509)).toBe(true);
    writeFileSync(path.join(dir, 'leaf.pem'), leafPem);
    const verified = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', caCertPath(dir), path.join(dir, 'leaf.pem')]).toString();
    expect(verified).toMatch(/: OK/);
  });

  it('assembles certificates byte for byte as node-forge\'s own encoder does', () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const serial = randomSerial();
    const notBefore = new Date('2026-01-02T03:04:05Z');
    const notAfter = new Date('2051-06-07T08:09:10Z'); // GeneralizedTime from 2050
    const keyId = x509.keyIdentifier(publicKey);
    for (const host of ['www.example.org', 'under_score.example', '10.1.2.3', '2001:db8::1']) {
      const isIp = /^[\d.]+$|:/.test(host);
      const forgeExts = [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        x509.authorityKeyIdentifier(keyId),
        x509.subjectKeyIdentifier(keyId),
      ];
      const f = forge.pki.createCertificate();
      f.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
      f.serialNumber = serial.toString('hex');
      f.validity.notBefore = notBefore;
      f.validity.notAfter = notAfter;
      f.setSubject([{ name: 'commonName', value: host, valueTagClass: forge.asn1.Type.UTF8 } as unknown as forge.pki.CertificateField, { name: 'organizationName', value: 'schoolgate' }]);
      f.setIssuer([{ name: 'commonName', value: 'issuer' }, { shortName: 'OU', value: 'unit' }]);
      f.setExtensions([...forgeExts, { name: 'subjectAltName', altNames: [isIp ? { type: 7, ip: host } : { type: 2, value: host }] }]);
      f.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption;
      const forgeTbs = Buffer.from(forge.asn1.toDer((forge.pki as unknown as { getTBSCertificate(c: unknown): forge.asn1.Asn1 }).getTBSCertificate(f)).getBytes(), 'binary');

      const algorithm = x509.signatureAlgorithm(privateKey);
      const ours = x509.tbsCertificate({
        serial,
        algorithm,
        issuer: x509.distinguishedName(x509.rdns([{ name: 'commonName', value: 'issuer' }, { shortName: 'OU', value: 'unit' }])),
        notBefore,
        notAfter,
        subject: x509.distinguishedName([x509.commonNameRdn(host), ...x509.rdns([{ name: 'organizationName', value: 'schoolgate' }])]),
        spki: x509.spkiDer(publicKey),
        extensions: [...x509.extensions(forgeExts), x509.subjectAltName(host, isIp)],
      });
      expect(ours.toString('hex'), host).toBe(forgeTbs.toString('hex'));

      const signature = x509.signSync(ours, privateKey);
      f.signatureOid = forge.pki.oids.sha256WithRSAEncryption;
      f.signature = signature.toString('binary');
      (f as unknown as { tbsCertificate: unknown }).tbsCertificate = (forge.pki as unknown as { getTBSCertificate(c: unknown): forge.asn1.Asn1 }).getTBSCertificate(f);
      const forgeCert = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(f)).getBytes(), 'binary');
      expect(x509.certificate(ours, algorithm, signature).toString('hex'), host).toBe(forgeCert.toString('hex'));
    }
  });

  it('`ca export` on a fresh data folder creates the CA that start would use', () => {
    const dir = tmp();
    const r = cli('ca', 'export', '--data-dir', dir);
    expect(r.status).toBe(0);
    expect(r.stdout.toString()).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(loadCa(dir).certPem).toBe(r.stdout.toString());
  });
});

describe.each(['ec', 'rsa'] as const)('leaf certificates under an %s school CA', (keyType) => {
  const dir = tmp();
  const ca = initCa(dir, { keyType });
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
