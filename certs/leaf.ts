import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { LRUCache } from 'lru-cache';
import { SchoolgateError } from '../core/errors';
import { randomSerial, type SchoolCa } from './ca';
import { authorityKeyIdentifier, certificate, commonNameRdn, distinguishedName, extensions, keyIdentifier, rdns, signAsync, signSync, spkiDer, subjectAltName, subjectKeyIdentifier, tbsCertificate, toPem } from './x509';

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

const DAY_MS = 24 * 3600 * 1000;
const SPARE_CONTEXTS = 8;

/**
 * Leaf certificates for intercepted hosts. Every leaf shares one ECDSA P-256 key (generated once
 * and kept): a new host costs one CA signature, not a key generation, and the per-handshake
 * signature and context creation are a fraction of what an RSA key costs. Contexts are cached,
 * and concurrent requests for the same host share one signing.
 */
export class LeafCertificates {
  readonly keyPem: string;
  private readonly ca: SchoolCa;
  private readonly spki: Buffer;
  /** Every leaf's extensions but its subjectAltName, encoded once. */
  private readonly fixedExtensions: Buffer[];
  private readonly organization: Buffer;
  private readonly cache: LRUCache<string, { context: tls.SecureContext; certPem: string }>;
  /** How many certificates were signed: tests read it to see the cache and de-duplication work. */
  issued = 0;

  constructor(opts: LeafOptions) {
    this.ca = opts.ca;
    const key = loadOrCreateLeafKey(opts.dataDir);
    this.keyPem = key.export({ type: 'pkcs8', format: 'pem' }).toString();
    const publicKey = createPublicKey(key);
    this.spki = spkiDer(publicKey);
    [this.organization] = rdns([{ name: 'organizationName', value: 'schoolgate' }]);
    this.fixedExtensions = extensions([
      { name: 'basicConstraints', cA: false },
      // An ECDSA key signs; it never decrypts a key transport, so no keyEncipherment.
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      authorityKeyIdentifier(this.ca.issuer.keyId),
      subjectKeyIdentifier(keyIdentifier(publicKey)),
    ]);
    this.cache = new LRUCache({
      max: opts.max ?? 5000,
      fetchMethod: async (host) => {
        const certPem = await this.issue(host);
        return { certPem, context: this.contextFor(certPem) };
      },
    });
    this.refillSpares();
  }

  /**
   * Contexts with the shared key already loaded, made ahead of need: parsing the key is most of
   * what building a context costs, and it is the same key every time. A new host then only adds
   * its certificate (Node's SecureContext.setCert, what createSecureContext itself calls).
   */
  private readonly spares: tls.SecureContext[] = [];
  private refillTimer: NodeJS.Timeout | null = null;

  private contextFor(certPem: string): tls.SecureContext {
    const ctx = this.spares.pop();
    const native = ctx?.context as { setCert?: (pem: string) => void } | undefined;
    this.refillSpares();
    if (!ctx || typeof native?.setCert !== 'function') return tls.createSecureContext({ key: this.keyPem, cert: certPem });
    native.setCert(certPem);
    return ctx;
  }

  private refillSpares(): void {
    if (this.refillTimer || this.spares.length >= SPARE_CONTEXTS) return;
    // Later, not now: the handshake that took a spare comes first.
    this.refillTimer = setTimeout(() => {
      this.refillTimer = null;
      while (this.spares.length < SPARE_CONTEXTS) this.spares.push(tls.createSecureContext({ key: this.keyPem }));
    }, 25);
    this.refillTimer.unref();
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

  /**
   * Only the serial, dates and names are new for each host; the rest was encoded once. An EC CA
   * signs in ~0.05 ms, less than a trip through the threadpool costs, so it signs in place; an RSA
   * CA's ~0.8 ms signature runs in libuv's threadpool while the event loop keeps serving.
   */
  private async issue(host: string): Promise<string> {
    const now = Date.now();
    const notAfter = Math.min(now + LEAF_DAYS * DAY_MS, this.ca.issuer.notAfter.getTime());
    // CN is capped at 64 characters; SAN alone identifies the host for every modern client.
    const subject = host.length <= 64 ? [commonNameRdn(host), this.organization] : [this.organization];
    const tbs = tbsCertificate({
      serial: randomSerial(),
      algorithm: this.ca.algorithm,
      issuer: this.ca.issuer.subject,
      notBefore: new Date(now - DAY_MS),
      notAfter: new Date(notAfter),
      subject: distinguishedName(subject),
      spki: this.spki,
      extensions: [...this.fixedExtensions, subjectAltName(host, isIP(host) !== 0)],
    });
    const signature = this.ca.keyType === 'ec' ? signSync(tbs, this.ca.key) : await signAsync(tbs, this.ca.key);
    this.issued++;
    return toPem(certificate(tbs, this.ca.algorithm, signature));
  }
}

const isP256 = (k: KeyObject) => k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1';

function loadOrCreateLeafKey(dataDir: string): KeyObject {
  const file = path.join(dataDir, 'ca', 'leaf.key');
  if (existsSync(file)) {
    const existing = createPrivateKey(readFileSync(file));
    if (isP256(existing)) return existing;
    // An RSA leaf key from an older release: leaves are made afresh at every start, so moving to
    // a new key changes nothing devices trust (they trust the CA).
    renameSync(file, `${file}.rsa.old`);
  }
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  try {
    writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another process on this data folder wrote it first; share theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return createPrivateKey(readFileSync(file));
    throw err;
  }
  return privateKey;
}
