import { createPrivateKey, generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SchoolgateError } from '../core/errors';
import { writeFileAtomicSync } from '../core/files';
import { certificate, distinguishedName, extensions, issuerInfo, keyIdentifier, rdns, signatureAlgorithm, signSync, spkiDer, subjectKeyIdentifier, tbsCertificate, toPem, type CaKeyType, type IssuerInfo } from './x509';

/**
 * The school's own certificate authority. Devices trust it (deployed by the network manager), so
 * the gateway can show the block page over TLS and apply SafeSearch on intercepted traffic.
 * Files live in `<dataDir>/ca/`: `ca.crt` (public, handed out) and `ca.key` (mode 0600).
 */
export interface SchoolCa {
  certPem: string;
  x509: X509Certificate;
  /** Native key: OpenSSL signs every leaf with it. */
  key: KeyObject;
  keyType: CaKeyType;
  /** The AlgorithmIdentifier (DER) of signatures by `key`: the signature field of every leaf. */
  algorithm: Buffer;
  issuer: IssuerInfo;
  dir: string;
}

export const caDir = (dataDir: string) => path.join(dataDir, 'ca');
export const caCertPath = (dataDir: string) => path.join(caDir(dataDir), 'ca.crt');
export const caKeyPath = (dataDir: string) => path.join(caDir(dataDir), 'ca.key');

const CA_YEARS = 10;

/** A serial number's INTEGER contents: positive (RFC 5280 forbids negative ones, and some clients reject them) and minimal. */
export function randomSerial(): Buffer {
  const b = randomBytes(16);
  b[0] &= 0x7f;
  b[0] |= 0x01;
  return b;
}

export function parseCaKeyType(raw: string | undefined): CaKeyType {
  if (raw === undefined || raw === 'ec' || raw === 'ecdsa') return 'ec';
  if (raw === 'rsa') return 'rsa';
  throw new SchoolgateError('SG_ERR_USAGE', `--key-type must be ec or rsa, not ${JSON.stringify(raw)}`);
}

/**
 * New CAs are ECDSA P-256 by default: every device a school runs (Windows, macOS, iOS, Android,
 * ChromeOS, Linux) trusts EC roots, and each new host's certificate then costs a ~0.05 ms signature
 * instead of RSA's ~0.8 ms. `keyType: 'rsa'` (RSA 2048) remains for anything that needs it, and a
 * CA made by an earlier release keeps working as it is.
 */
export function initCa(dataDir: string, opts: { force?: boolean; commonName?: string; keyType?: CaKeyType } = {}): SchoolCa {
  const dir = caDir(dataDir);
  if (existsSync(caCertPath(dataDir)) && !opts.force) {
    throw new SchoolgateError('SG_ERR_CA_EXISTS', `${caCertPath(dataDir)} exists; use --force to replace it (every device must then trust the new one)`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = (opts.keyType ?? 'ec') === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const now = new Date();
  const notAfter = new Date(now);
  notAfter.setUTCFullYear(now.getUTCFullYear() + CA_YEARS);
  const subject = distinguishedName(rdns([
    { name: 'commonName', value: opts.commonName ?? 'schoolgate school CA' },
    { name: 'organizationName', value: 'schoolgate' },
    { shortName: 'OU', value: `generated ${now.toISOString().slice(0, 10)}` },
  ]));
  const algorithm = signatureAlgorithm(privateKey);
  const tbs = tbsCertificate({
    serial: randomSerial(),
    algorithm,
    issuer: subject,
    notBefore: new Date(now.getTime() - 24 * 3600 * 1000),
    notAfter,
    subject,
    spki: spkiDer(publicKey),
    extensions: extensions([
      { name: 'basicConstraints', cA: true, critical: true, pathLenConstraint: 0 },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      subjectKeyIdentifier(keyIdentifier(publicKey)),
    ]),
  });
  const certPem = toPem(certificate(tbs, algorithm, signSync(tbs, privateKey)));

  // Key first, written whole, so a crash never leaves a certificate without its key.
  writeFileAtomicSync(caKeyPath(dataDir), privateKey.export({ type: 'pkcs8', format: 'pem' }), 0o600);
  writeFileSync(caCertPath(dataDir), certPem, { mode: 0o644 });
  // The shared leaf key was issued under the old CA's watch; a new CA starts a new one too.
  const leafKey = path.join(dir, 'leaf.key');
  if (existsSync(leafKey)) renameSync(leafKey, `${leafKey}.old`);
  return caFrom(certPem, privateKey, dir);
}

function caFrom(certPem: string, key: KeyObject, dir: string): SchoolCa {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch (err) {
    throw new SchoolgateError('SG_ERR_CA_INVALID', `${path.join(dir, 'ca.crt')}: ${(err as Error).message}`);
  }
  if (!x509.ca) throw new SchoolgateError('SG_ERR_CA_INVALID', `${path.join(dir, 'ca.crt')} is not a CA certificate`);
  if (!x509.checkPrivateKey(key)) throw new SchoolgateError('SG_ERR_CA_INVALID', `${path.join(dir, 'ca.key')} is not the key of ${path.join(dir, 'ca.crt')}`);
  const algorithm = signatureAlgorithm(key); // throws SG_ERR_CA_INVALID for key types that cannot sign here
  return { certPem, x509, key, keyType: key.asymmetricKeyType === 'rsa' ? 'rsa' : 'ec', algorithm, issuer: issuerInfo(x509), dir };
}

export function loadCa(dataDir: string): SchoolCa {
  const certFile = caCertPath(dataDir);
  const keyFile = caKeyPath(dataDir);
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    throw new SchoolgateError('SG_ERR_CA_MISSING', `no CA in ${caDir(dataDir)}; run "schoolgate ca init --data-dir ${dataDir}"`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(keyFile));
  } catch (err) {
    throw new SchoolgateError('SG_ERR_CA_INVALID', `${keyFile}: ${(err as Error).message}`);
  }
  return caFrom(readFileSync(certFile, 'utf8'), key, caDir(dataDir));
}

/** Loads the CA, creating it on first run so `schoolgate start` works with no setup. */
export function ensureCa(dataDir: string): { ca: SchoolCa; created: boolean } {
  // Only a folder with neither file is a first run: half a CA is an operator's problem to see, not to paper over.
  if (existsSync(caCertPath(dataDir)) || existsSync(caKeyPath(dataDir))) return { ca: loadCa(dataDir), created: false };
  return { ca: initCa(dataDir), created: true };
}

export const caDer = (ca: Pick<SchoolCa, 'x509'>): Buffer => ca.x509.raw;
