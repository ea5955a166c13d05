import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import forge from 'node-forge';
import { LRUCache } from 'lru-cache';
import { SchoolgateError } from '../core/errors';
import { randomSerial, type SchoolCa } from './ca';

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

const { asn1 } = forge;
const SPARE_CONTEXTS = 8;
const SKI_OID = asn1.oidToDer('2.5.29.14').getBytes();
const sha256WithRSA = forge.pki.oids.sha256WithRSAEncryption;

/**
 * Leaf certificates for intercepted hosts. Every leaf shares one ECDSA P-256 key (generated once
 * and kept): a new host costs one CA signature, not a key generation, and the per-handshake
 * signature and context creation are a fraction of what an RSA key costs. The school CA stays
 * RSA, so devices already trusting it keep working. Contexts are cached, and concurrent requests
 * for the same host share one signing.
 */
export class LeafCertificates {
  readonly keyPem: string;
  private readonly key: KeyObject;
  /** The leaf key's SubjectPublicKeyInfo, parsed once and placed in every certificate as is. */
  private readonly spki: forge.asn1.Asn1;
  private readonly skiExtension: forge.asn1.Asn1;
  private readonly ca: SchoolCa;
  private readonly caKeyId: string;
  private readonly cache: LRUCache<string, { context: tls.SecureContext; certPem: string }>;
  /** How many certificates were signed: tests read it to see the cache and de-duplication work. */
  issued = 0;

  constructor(opts: LeafOptions) {
    this.ca = opts.ca;
    this.key = loadOrCreateLeafKey(opts.dataDir);
    this.keyPem = this.key.export({ type: 'pkcs8', format: 'pem' }).toString();
    const spkiDer = createPublicKey(this.key).export({ type: 'spki', format: 'der' });
    this.spki = asn1.fromDer(spkiDer.toString('binary'));
    // RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's contents.
    const publicKeyBits = (this.spki.value as forge.asn1.Asn1[])[1].value as string;
    const ski = createHash('sha1').update(Buffer.from(publicKeyBits.slice(1), 'binary')).digest().toString('binary');
    this.skiExtension = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, SKI_OID),
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, asn1.toDer(asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, ski)).getBytes()),
    ]);
    // Must equal the CA's subjectKeyIdentifier, or OpenSSL cannot chain the leaf to it.
    this.caKeyId = this.ca.cert.generateSubjectKeyIdentifier().getBytes();
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
   * node-forge assembles the TBSCertificate (it cannot encode EC keys, so the leaf's SPKI DER from
   * Node is put in place of the placeholder key), and OpenSSL signs it with the CA key in the
   * libuv threadpool: the event loop keeps serving while the ~1 ms RSA signature runs.
   */
  private async issue(host: string): Promise<string> {
    const cert = forge.pki.createCertificate();
    cert.publicKey = this.ca.cert.publicKey; // placeholder, replaced by the leaf's SPKI below
    cert.serialNumber = randomSerial();
    const now = Date.now();
    cert.validity.notBefore = new Date(now - 24 * 3600 * 1000);
    const notAfter = new Date(now + LEAF_DAYS * 24 * 3600 * 1000);
    cert.validity.notAfter = notAfter < this.ca.cert.validity.notAfter ? notAfter : this.ca.cert.validity.notAfter;
    // CN is capped at 64 characters; SAN alone identifies the host for every modern client.
    // UTF8String: a host name may hold '_', which PrintableString cannot.
    const cn = { name: 'commonName', value: host, valueTagClass: asn1.Type.UTF8 } as unknown as forge.pki.CertificateField;
    cert.setSubject(host.length <= 64 ? [cn, { name: 'organizationName', value: 'schoolgate' }] : [{ name: 'organizationName', value: 'schoolgate' }]);
    cert.setIssuer(this.ca.cert.subject.attributes);
    const ipVersion = isIP(host);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false },
      // An ECDSA key signs; it never decrypts a key transport, so no keyEncipherment.
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [ipVersion ? { type: 7, ip: host } : { type: 2, value: host }] },
      { name: 'authorityKeyIdentifier', keyIdentifier: this.caKeyId },
    ]);
    cert.siginfo.algorithmOid = sha256WithRSA;
    const tbs = (forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
    const parts = tbs.value as forge.asn1.Asn1[];
    parts[6] = this.spki; // version, serial, signature, issuer, validity, subject, SPKI, [3] extensions
    ((parts[7].value as forge.asn1.Asn1[])[0].value as forge.asn1.Asn1[]).push(this.skiExtension);
    const tbsDer = Buffer.from(asn1.toDer(tbs).getBytes(), 'binary');
    const signature = await new Promise<Buffer>((resolve, reject) => {
      sign('sha256', tbsDer, this.ca.key, (err, sig) => (err ? reject(err) : resolve(sig)));
    });
    const der = Buffer.from(
      asn1.toDer(asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
        tbs,
        parts[2],
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\0${signature.toString('binary')}`),
      ])).getBytes(),
      'binary',
    );
    this.issued++;
    const b64 = der.toString('base64').replace(/.{64}/g, '$&\n');
    return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
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
