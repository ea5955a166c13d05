import { createPrivateKey, generateKeyPairSync, createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import forge from 'node-forge';
import { LRUCache } from 'lru-cache';
import { SchoolgateError } from '../core/errors';
import { randomSerial, signCertificate, type SchoolCa } from './ca';

/**
 * Host names come from clients (CONNECT lines, SNI): only names that are valid DNS names or IP
 * literals get a certificate. Returns the canonical form (lower case, no trailing dot, IPv6 without
 * brackets), or throws SG_ERR_CERT_HOST. Nothing here ever becomes a file path.
 */
export function validateCertHost(raw: string): string {
  if (typeof raw !== 'string') throw new SchoolgateError('SG_ERR_CERT_HOST', 'not a string');
  let host = raw.trim().toLowerCase();
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (isIP(host)) return host;
  const label = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;
  if (host.length === 0 || host.length > 253 || !host.split('.').every((l) => label.test(l)) || /^[0-9.]+$/.test(host)) {
    throw new SchoolgateError('SG_ERR_CERT_HOST', JSON.stringify(raw.slice(0, 300)));
  }
  return host;
}

export interface LeafOptions {
  ca: SchoolCa;
  /** Where the shared leaf key is kept (`<dataDir>/ca/leaf.key`, mode 0600). */
  dataDir: string;
  /** How many hosts' contexts stay in memory. */
  max?: number;
}

const LEAF_DAYS = 397; // browsers refuse TLS server certificates valid for longer than 398 days

/**
 * Leaf certificates for intercepted hosts. Every leaf shares one RSA key (generated once and kept),
 * so a new host costs one signature, not a key generation; contexts are cached, and concurrent
 * requests for the same host share one signing.
 */
export class LeafCertificates {
  readonly keyPem: string;
  private readonly contextKeyPem: string;
  private readonly key: KeyObject;
  private readonly publicKey: forge.pki.PublicKey;
  private readonly ca: SchoolCa;
  private readonly caKeyId: string;
  private readonly cache: LRUCache<string, { context: tls.SecureContext; certPem: string }>;
  /** How many certificates were signed: tests read it to see the cache and de-duplication work. */
  issued = 0;

  constructor(opts: LeafOptions) {
    this.ca = opts.ca;
    this.key = loadOrCreateLeafKey(opts.dataDir);
    this.keyPem = this.key.export({ type: 'pkcs8', format: 'pem' }).toString();
    // OpenSSL reads PKCS#1 a little faster, and it is read once per new host.
    this.contextKeyPem = this.key.export({ type: 'pkcs1', format: 'pem' }).toString();
    this.publicKey = forge.pki.publicKeyFromPem(createPublicKey(this.key).export({ type: 'spki', format: 'pem' }).toString());
    // Must equal the CA's subjectKeyIdentifier, or OpenSSL cannot chain the leaf to it.
    this.caKeyId = this.ca.cert.generateSubjectKeyIdentifier().getBytes();
    this.cache = new LRUCache({
      max: opts.max ?? 5000,
      fetchMethod: async (host) => {
        // Yield first: the caller (a CONNECT) answers its client before the ~3 ms of signing starts.
        await Promise.resolve();
        const certPem = this.issue(host);
        return { certPem, context: tls.createSecureContext({ key: this.contextKeyPem, cert: certPem }) };
      },
    });
  }

  /** The TLS context for a host (validated first); signs a certificate on first use. */
  async context(host: string): Promise<tls.SecureContext> {
    return (await this.entry(host)).context;
  }

  async certificatePem(host: string): Promise<string> {
    return (await this.entry(host)).certPem;
  }

  private async entry(host: string) {
    const name = validateCertHost(host);
    const e = await this.cache.fetch(name);
    if (!e) throw new SchoolgateError('SG_ERR_CERT_HOST', `no certificate for ${name}`);
    return e;
  }

  /** A `tls` SNICallback serving every intercepted host from one TLS server. */
  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
    this.context(servername).then((ctx) => cb(null, ctx), (err) => cb(err as Error));
  };

  private issue(host: string): string {
    const cert = forge.pki.createCertificate();
    cert.publicKey = this.publicKey;
    cert.serialNumber = randomSerial();
    const now = Date.now();
    cert.validity.notBefore = new Date(now - 24 * 3600 * 1000);
    const notAfter = new Date(now + LEAF_DAYS * 24 * 3600 * 1000);
    cert.validity.notAfter = notAfter < this.ca.cert.validity.notAfter ? notAfter : this.ca.cert.validity.notAfter;
    // CN is capped at 64 characters; SAN alone identifies the host for every modern client.
    cert.setSubject(host.length <= 64 ? [{ name: 'commonName', value: host }, { name: 'organizationName', value: 'schoolgate' }] : [{ name: 'organizationName', value: 'schoolgate' }]);
    cert.setIssuer(this.ca.cert.subject.attributes);
    const ipVersion = isIP(host);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [ipVersion ? { type: 7, ip: host } : { type: 2, value: host }] },
      { name: 'authorityKeyIdentifier', keyIdentifier: this.caKeyId },
    ]);
    signCertificate(cert, this.ca.key);
    this.issued++;
    return forge.pki.certificateToPem(cert);
  }
}

function loadOrCreateLeafKey(dataDir: string): KeyObject {
  const file = path.join(dataDir, 'ca', 'leaf.key');
  if (existsSync(file)) return createPrivateKey(readFileSync(file));
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  try {
    writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another process on this data folder wrote it first; share theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return createPrivateKey(readFileSync(file));
    throw err;
  }
  return privateKey;
}
