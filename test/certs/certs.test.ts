import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate, createHash, createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
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
import { commandMissing, need, projectRoot } from '../helpers/parts';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'sg-certs-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const noOpenssl = need('openssl', commandMissing('openssl', 'openssl')) !== null;

/** The element at the start of `der` (identifier, length, contents), as the bytes it occupies: no re-encoding. */
function derElement(der: Buffer, at = 0): { bytes: Buffer; contents: Buffer; end: number } {
  let len = der[at + 1];
  let head = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[at + 2 + i];
    head += n;
  }
  return { bytes: der.subarray(at, at + head + len), contents: der.subarray(at + head, at + head + len), end: at + head + len };
}
/** The elements a SEQUENCE holds, each as its own bytes. */
function derChildren(seq: Buffer): Buffer[] {
  const { contents } = derElement(seq);
  const out: Buffer[] = [];
  for (let at = 0; at < contents.length; ) {
    const e = derElement(contents, at);
    out.push(e.bytes);
    at = e.end;
  }
  return out;
}
/** RFC 5758 §3.2: SEQUENCE { OID ecdsa-with-SHA256 }, with no parameters (not even NULL). */
const ECDSA_WITH_SHA256 = Buffer.from('300a06082a8648ce3d040302', 'hex');
/** RFC 5480 §2.2: a P-256 public key is the 65-byte uncompressed point that ends its SPKI. */
const p256KeyId = (spki: Buffer) => createHash('sha1').update(spki.subarray(spki.length - 65)).digest();

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
    if (!noOpenssl) {
      const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: pem.stdout }).toString();
      expect(text).toMatch(/CA:TRUE, pathlen:0/);
      expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA256/);
    }
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
    if (noOpenssl) return;
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

  it('assembles an ECDSA leaf under an ECDSA school CA (the default) byte for byte as forge encodes the same fields, signed as X.509 wants', async () => {
    // forge cannot hold an EC key, so its encoder builds the same certificate around a stand-in
    // RSA key; only the two EC fields are then put in its place, each taken from elsewhere:
    // the subjectPublicKeyInfo as OpenSSL exports it, the AlgorithmIdentifier as RFC 5758 §3.2 spells it.
    const dir = tmp();
    const ca = initCa(dir);
    expect(ca.keyType).toBe('ec');
    const caX = new X509Certificate(ca.certPem);
    const { publicKey: standIn } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const caAttrs = caX.subject.split('\n').map((l) => {
      const [k, v] = l.split('=');
      return { shortName: k, value: v };
    });
    for (const host of ['www.example.org', 'under_score.example', '10.1.2.3', '2001:db8::1', `${'l'.repeat(60)}.example`]) {
      const leafCerts = new LeafCertificates({ ca, dataDir: dir });
      const pem = await leafCerts.certificatePem(host);
      const x = new X509Certificate(pem);
      const raw = x.raw;
      const [tbs, algorithm, signatureBits] = derChildren(raw);
      const tbsFields = derChildren(tbs);
      const leafSpki = x.publicKey.export({ type: 'spki', format: 'der' });
      const isIp = /^[\d.]+$|:/.test(host);

      const f = forge.pki.createCertificate();
      f.publicKey = forge.pki.publicKeyFromPem(standIn.export({ type: 'spki', format: 'pem' }).toString());
      f.serialNumber = x.serialNumber.toLowerCase();
      f.validity.notBefore = new Date(x.validFrom);
      f.validity.notAfter = new Date(x.validTo);
      const subject: forge.pki.CertificateField[] = [{ name: 'organizationName', value: 'schoolgate' }];
      if (host.length <= 64) subject.unshift({ name: 'commonName', value: host, valueTagClass: forge.asn1.Type.UTF8 } as unknown as forge.pki.CertificateField);
      f.setSubject(subject);
      f.setIssuer(caAttrs);
      f.setExtensions([
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, critical: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'authorityKeyIdentifier', keyIdentifier: p256KeyId(caX.publicKey.export({ type: 'spki', format: 'der' })).toString('binary') },
        { name: 'subjectKeyIdentifier', value: forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.OCTETSTRING, false, p256KeyId(leafSpki).toString('binary')) },
        { name: 'subjectAltName', altNames: [isIp ? { type: 7, ip: host } : { type: 2, value: host }] },
      ] as never[]);
      f.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption;
      const forgeTbs = (forge.pki as unknown as { getTBSCertificate(c: unknown): forge.asn1.Asn1 }).getTBSCertificate(f);
      const parts = forgeTbs.value as forge.asn1.Asn1[];
      const fromDer = (b: Buffer) => (forge.asn1.fromDer as unknown as (b: string, o: object) => forge.asn1.Asn1)(b.toString('binary'), { decodeBitStrings: false });
      parts[2] = fromDer(ECDSA_WITH_SHA256);
      parts[6] = fromDer(leafSpki);
      const want = Buffer.from(forge.asn1.toDer(forgeTbs).getBytes(), 'binary');
      expect(tbs.toString('hex'), host).toBe(want.toString('hex'));
      expect(tbsFields[2].toString('hex'), host).toBe(ECDSA_WITH_SHA256.toString('hex'));
      expect(algorithm.toString('hex'), host).toBe(ECDSA_WITH_SHA256.toString('hex'));

      // The signature: a BIT STRING with no unused bits around a DER ECDSA-Sig-Value, over exactly the TBS bytes.
      const bits = derElement(signatureBits).contents;
      expect(signatureBits[0]).toBe(0x03);
      expect(bits[0]).toBe(0);
      const sig = bits.subarray(1);
      expect(sig[0]).toBe(0x30);
      expect(derElement(sig).end).toBe(sig.length);
      expect(verify('sha256', tbs, caX.publicKey, sig), host).toBe(true);
      const forgeCert = forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.SEQUENCE, true, [
        forgeTbs, fromDer(ECDSA_WITH_SHA256), forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.BITSTRING, false, `\0${sig.toString('binary')}`),
      ]);
      expect(raw.toString('hex'), host).toBe(Buffer.from(forge.asn1.toDer(forgeCert).getBytes(), 'binary').toString('hex'));
      expect(x.verify(caX.publicKey), host).toBe(true);
      if (!noOpenssl) {
        const file = path.join(dir, 'leaf.pem');
        writeFileSync(file, pem);
        const out = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', caCertPath(dir), file]).toString();
        expect(out, host).toMatch(/: OK/);
      }
    }
  });

  it('assembles the ECDSA school CA itself byte for byte as forge encodes the same fields, self-signed', () => {
    const dir = tmp();
    const ca = initCa(dir);
    const x = ca.x509;
    const [tbs, algorithm, signatureBits] = derChildren(x.raw);
    const spki = x.publicKey.export({ type: 'spki', format: 'der' });
    const attrs = x.subject.split('\n').map((l) => ({ shortName: l.split('=')[0], value: l.split('=')[1] }));
    expect(attrs.map((a) => a.shortName)).toEqual(['CN', 'O', 'OU']);
    const { publicKey: standIn } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const f = forge.pki.createCertificate();
    f.publicKey = forge.pki.publicKeyFromPem(standIn.export({ type: 'spki', format: 'pem' }).toString());
    f.serialNumber = x.serialNumber.toLowerCase();
    f.validity.notBefore = new Date(x.validFrom);
    f.validity.notAfter = new Date(x.validTo);
    f.setSubject(attrs);
    f.setIssuer(attrs);
    f.setExtensions([
      { name: 'basicConstraints', cA: true, critical: true, pathLenConstraint: 0 },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      { name: 'subjectKeyIdentifier', value: forge.asn1.create(forge.asn1.Class.UNIVERSAL, forge.asn1.Type.OCTETSTRING, false, p256KeyId(spki).toString('binary')) },
    ] as never[]);
    f.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption;
    const forgeTbs = (forge.pki as unknown as { getTBSCertificate(c: unknown): forge.asn1.Asn1 }).getTBSCertificate(f);
    const fromDer = (b: Buffer) => (forge.asn1.fromDer as unknown as (b: string, o: object) => forge.asn1.Asn1)(b.toString('binary'), { decodeBitStrings: false });
    (forgeTbs.value as forge.asn1.Asn1[])[2] = fromDer(ECDSA_WITH_SHA256);
    (forgeTbs.value as forge.asn1.Asn1[])[6] = fromDer(spki);
    expect(tbs.toString('hex')).toBe(Buffer.from(forge.asn1.toDer(forgeTbs).getBytes(), 'binary').toString('hex'));
    expect(algorithm.toString('hex')).toBe(ECDSA_WITH_SHA256.toString('hex'));
    expect(verify('sha256', tbs, x.publicKey, derElement(signatureBits).contents.subarray(1))).toBe(true);
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

  it('keep at most `max` hosts, evicting the least recently used', async () => {
    const small = new LeafCertificates({ ca, dataDir: dir, max: 2 });
    await small.context('a.example');
    await small.context('b.example');
    await small.context('a.example'); // a is now the most recently used
    expect(small.issued).toBe(2);
    await small.context('c.example'); // over max: b goes, not a
    expect(small.issued).toBe(3);
    await small.context('a.example');
    expect(small.issued, 'a, used recently, was kept').toBe(3);
    await small.context('b.example');
    expect(small.issued, 'b, least recently used, was evicted and is signed again').toBe(4);
  });

  it('are never valid beyond the school CA that signs them', async () => {
    // A CA with 30 days left: a 397-day leaf would outlive what vouches for it.
    const short = tmp();
    const { privateKey, publicKey } = keyType === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const name = x509.distinguishedName(x509.rdns([{ name: 'commonName', value: 'expiring school CA' }]));
    const caNotAfter = new Date(Math.floor(Date.now() / 1000) * 1000 + 30 * 86_400_000);
    const algorithm = x509.signatureAlgorithm(privateKey);
    const tbs = x509.tbsCertificate({
      serial: randomSerial(), algorithm, issuer: name, subject: name, notBefore: new Date(Date.now() - 86_400_000), notAfter: caNotAfter, spki: x509.spkiDer(publicKey),
      extensions: x509.extensions([{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, critical: true }, x509.subjectKeyIdentifier(x509.keyIdentifier(publicKey))]),
    });
    mkdirSync(path.join(short, 'ca'), { recursive: true });
    writeFileSync(caCertPath(short), x509.toPem(x509.certificate(tbs, algorithm, x509.signSync(tbs, privateKey))));
    writeFileSync(caKeyPath(short), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const expiring = loadCa(short);
    const leafX = new X509Certificate(await new LeafCertificates({ ca: expiring, dataDir: short }).certificatePem('capped.example'));
    expect(leafX.verify(expiring.x509.publicKey)).toBe(true);
    expect(new Date(leafX.validTo).getTime()).toBe(caNotAfter.getTime());
    // ...while under the 10-year CA the leaf gets its full 397 days (browsers refuse more than 398).
    const full = (new Date(new X509Certificate(await leaf.certificatePem('uncapped.example')).validTo).getTime() - Date.now()) / 86_400_000;
    expect(full).toBeGreaterThan(396.9);
    expect(full).toBeLessThanOrEqual(397);
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
