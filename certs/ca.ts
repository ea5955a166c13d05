import { createPrivateKey, generateKeyPairSync, privateEncrypt, randomBytes, constants, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import forge from 'node-forge';
import { SchoolgateError } from '../core/errors';
import { writeFileAtomicSync } from '../core/files';

/**
 * The school's own certificate authority. Devices trust it (deployed by the network manager), so
 * the gateway can show the block page over TLS and apply SafeSearch on intercepted traffic.
 * Files live in `<dataDir>/ca/`: `ca.crt` (public, handed out) and `ca.key` (mode 0600).
 */
export interface SchoolCa {
  certPem: string;
  cert: forge.pki.Certificate;
  /** Native key: signing leaves with it costs ~1 ms, where node-forge's JS RSA costs tens. */
  key: KeyObject;
  dir: string;
}

export const caDir = (dataDir: string) => path.join(dataDir, 'ca');
export const caCertPath = (dataDir: string) => path.join(caDir(dataDir), 'ca.crt');
export const caKeyPath = (dataDir: string) => path.join(caDir(dataDir), 'ca.key');

const CA_YEARS = 10;

/** SHA-256 DigestInfo prefix (RFC 8017 §9.2 note 1): with it, privateEncrypt is an RSASSA-PKCS1-v1_5 signature. */
const SHA256_DIGEST_INFO = Buffer.from('3031300d060960864801650304020105000420', 'hex');

/**
 * Signs a node-forge certificate with a native key. forge builds and encodes the certificate;
 * the RSA operation itself runs in OpenSSL.
 */
export function signCertificate(cert: forge.pki.Certificate, key: KeyObject): void {
  const nativeSigner = {
    sign(md: forge.md.MessageDigest): string {
      const digest = Buffer.from(md.digest().getBytes(), 'binary');
      const sig = privateEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, Buffer.concat([SHA256_DIGEST_INFO, digest]));
      return sig.toString('binary');
    },
  };
  cert.sign(nativeSigner as unknown as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
}

/** A positive serial number: RFC 5280 forbids negative ones, and some clients reject them. */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] &= 0x7f;
  b[0] |= 0x01;
  return b.toString('hex');
}

export function initCa(dataDir: string, opts: { force?: boolean; commonName?: string } = {}): SchoolCa {
  const dir = caDir(dataDir);
  if (existsSync(caCertPath(dataDir)) && !opts.force) {
    throw new SchoolgateError('SG_ERR_CA_EXISTS', `${caCertPath(dataDir)} exists; use --force to replace it (every device must then trust the new one)`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();

  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicPem);
  cert.serialNumber = randomSerial();
  const now = new Date();
  cert.validity.notBefore = new Date(now.getTime() - 24 * 3600 * 1000);
  cert.validity.notAfter = new Date(now);
  cert.validity.notAfter.setFullYear(now.getFullYear() + CA_YEARS);
  const attrs = [
    { name: 'commonName', value: opts.commonName ?? 'schoolgate school CA' },
    { name: 'organizationName', value: 'schoolgate' },
    { shortName: 'OU', value: `generated ${now.toISOString().slice(0, 10)}` },
  ];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true, pathLenConstraint: 0 },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  signCertificate(cert, privateKey);
  const certPem = forge.pki.certificateToPem(cert);

  // Key first, written whole, so a crash never leaves a certificate without its key.
  writeFileAtomicSync(caKeyPath(dataDir), privateKey.export({ type: 'pkcs8', format: 'pem' }), 0o600);
  writeFileSync(caCertPath(dataDir), certPem, { mode: 0o644 });
  // The shared leaf key was issued under the old CA's watch; a new CA starts a new one too.
  const leafKey = path.join(dir, 'leaf.key');
  if (existsSync(leafKey)) renameSync(leafKey, `${leafKey}.old`);
  return { certPem, cert, key: privateKey, dir };
}

export function loadCa(dataDir: string): SchoolCa {
  const certFile = caCertPath(dataDir);
  const keyFile = caKeyPath(dataDir);
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    throw new SchoolgateError('SG_ERR_CA_MISSING', `no CA in ${caDir(dataDir)}; run "schoolgate ca init --data-dir ${dataDir}"`);
  }
  const certPem = readFileSync(certFile, 'utf8');
  return { certPem, cert: forge.pki.certificateFromPem(certPem), key: createPrivateKey(readFileSync(keyFile)), dir: caDir(dataDir) };
}

/** Loads the CA, creating it on first run so `schoolgate start` works with no setup. */
export function ensureCa(dataDir: string): { ca: SchoolCa; created: boolean } {
  // Only a folder with neither file is a first run: half a CA is an operator's problem to see, not to paper over.
  if (existsSync(caCertPath(dataDir)) || existsSync(caKeyPath(dataDir))) return { ca: loadCa(dataDir), created: false };
  return { ca: initCa(dataDir), created: true };
}

export function caDer(ca: Pick<SchoolCa, 'cert'>): Buffer {
  return Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(ca.cert)).getBytes(), 'binary');
}
