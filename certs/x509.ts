import { createHash, sign, X509Certificate, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { SchoolgateError } from '../core/errors';

/**
 * X.509 assembly: node-forge encodes every structure that has options (names, extensions,
 * algorithm identifiers) once, Node (OpenSSL) holds the keys and signs, and a certificate is put
 * together from those DER pieces. forge's own certificate object cannot carry an EC key (our leaves
 * and new school CAs are EC), and re-encoding forge's whole tree for each new host was a third of
 * the time a first handshake waited for its certificate. test/certs checks the assembly byte for
 * byte against forge's encoder.
 */
const { asn1 } = forge;
type Asn1 = forge.asn1.Asn1;
const U = asn1.Class.UNIVERSAL;
const T = asn1.Type;

/** X.690 §8.1: identifier, definite length, contents. */
export function der(tag: number, ...contents: Buffer[]): Buffer {
  let len = 0;
  for (const c of contents) len += c.length;
  const head = len < 0x80 ? [tag, len] : len < 0x100 ? [tag, 0x81, len] : len < 0x10000 ? [tag, 0x82, len >> 8, len & 0xff] : null;
  if (!head) throw new RangeError(`DER contents of ${len} bytes: more than a certificate ever holds`);
  return Buffer.concat([Buffer.from(head), ...contents], head.length + len);
}

const TAG = { INTEGER: 0x02, BIT_STRING: 0x03, OCTET_STRING: 0x04, UTF8: 0x0c, UTC_TIME: 0x17, GENERALIZED_TIME: 0x18, SEQUENCE: 0x30, SET: 0x31 } as const;
const toBuffer = (node: Asn1) => Buffer.from(asn1.toDer(node).getBytes(), 'binary');
/** forge's parser, leaving BIT STRINGs as bytes (key bits are not ASN.1 to be decoded); its types lack the options. */
const fromDer = (bytes: Buffer | string): Asn1 =>
  (asn1.fromDer as unknown as (b: string, o: object) => Asn1)(typeof bytes === 'string' ? bytes : bytes.toString('binary'), { decodeBitStrings: false });
const bytesFromIP = (forge.util as unknown as { bytesFromIP(ip: string): string | null }).bytesFromIP;
const oid = (dotted: string) => toBuffer(asn1.create(U, T.OID, false, asn1.oidToDer(dotted).getBytes()));

const OID_COMMON_NAME = oid('2.5.4.3');
const OID_SUBJECT_ALT_NAME = oid('2.5.29.17');
const OID_SUBJECT_KEY_ID = '2.5.29.14';
const VERSION_3 = Buffer.from([0xa0, 0x03, TAG.INTEGER, 0x01, 0x02]);

export type CaKeyType = 'ec' | 'rsa';

/** The AlgorithmIdentifier of signatures by this key: SHA-256 with RSA or with ECDSA. */
export function signatureAlgorithm(key: KeyObject): Buffer {
  if (key.asymmetricKeyType === 'rsa') return toBuffer(asn1.create(U, T.SEQUENCE, true, [asn1.create(U, T.OID, false, asn1.oidToDer(forge.pki.oids.sha256WithRSAEncryption).getBytes()), asn1.create(U, T.NULL, false, '')]));
  // RFC 5758 §3.2: ecdsa-with-SHA256 takes no parameters, not even NULL.
  if (key.asymmetricKeyType === 'ec') return toBuffer(asn1.create(U, T.SEQUENCE, true, [asn1.create(U, T.OID, false, asn1.oidToDer('1.2.840.10045.4.3.2').getBytes())]));
  throw new SchoolgateError('SG_ERR_CA_INVALID', `a ${key.asymmetricKeyType} key cannot sign certificates here (RSA or EC only)`);
}

/** A distinguished name's RDNs, each encoded by forge from its attribute table (OIDs, string types). */
export function rdns(attributes: forge.pki.CertificateField[]): Buffer[] {
  const scratch = forge.pki.createCertificate();
  scratch.setSubject(attributes);
  return (forge.pki.distinguishedNameToAsn1(scratch.subject).value as Asn1[]).map(toBuffer);
}

export const distinguishedName = (rdnList: Buffer[]): Buffer => der(TAG.SEQUENCE, ...rdnList);

/** A commonName RDN as UTF8String: a host name may hold '_', which PrintableString cannot. */
export const commonNameRdn = (value: string): Buffer => der(TAG.SET, der(TAG.SEQUENCE, OID_COMMON_NAME, der(TAG.UTF8, Buffer.from(value, 'utf8'))));

/** Extensions in forge's own notation (`{ name: 'keyUsage', digitalSignature: true }`), encoded by forge. */
export function extensions(exts: object[]): Buffer[] {
  const scratch = forge.pki.createCertificate();
  scratch.setExtensions(exts as never[]);
  const toAsn1 = (forge.pki as unknown as { certificateExtensionToAsn1(e: unknown): Asn1 }).certificateExtensionToAsn1;
  return scratch.extensions.map((e: unknown) => toBuffer(toAsn1(e)));
}

/** subjectKeyIdentifier with a given value, in forge's notation (forge computes one only for RSA keys). */
export const subjectKeyIdentifier = (keyId: Buffer) => ({ name: 'subjectKeyIdentifier', value: asn1.create(U, T.OCTETSTRING, false, keyId.toString('binary')) });
export const authorityKeyIdentifier = (keyId: Buffer) => ({ name: 'authorityKeyIdentifier', keyIdentifier: keyId.toString('binary') });

/** A subjectAltName naming one host: dNSName [2], or iPAddress [7] for an IP literal. */
export function subjectAltName(host: string, isIp: boolean): Buffer {
  let general: Buffer;
  if (isIp) {
    const bytes = bytesFromIP(host);
    if (!bytes) throw new SchoolgateError('SG_ERR_CERT_HOST', JSON.stringify(host));
    general = der(0x87, Buffer.from(bytes, 'binary'));
  } else general = der(0x82, Buffer.from(host, 'latin1'));
  return der(TAG.SEQUENCE, OID_SUBJECT_ALT_NAME, der(TAG.OCTET_STRING, der(TAG.SEQUENCE, general)));
}

export const spkiDer = (publicKey: KeyObject): Buffer => publicKey.export({ type: 'spki', format: 'der' });

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's contents. */
export function keyIdentifier(publicKey: KeyObject): Buffer {
  const bits = (fromDer(spkiDer(publicKey)).value as Asn1[])[1].value as string;
  return createHash('sha1').update(Buffer.from(bits.slice(1), 'binary')).digest();
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050. */
const time = (d: Date): Buffer =>
  d.getUTCFullYear() < 2050 ? der(TAG.UTC_TIME, Buffer.from(asn1.dateToUtcTime(d), 'latin1')) : der(TAG.GENERALIZED_TIME, Buffer.from(asn1.dateToGeneralizedTime(d), 'latin1'));

export interface TbsFields {
  /** The serial's INTEGER contents: positive, minimal (randomSerial() gives such). */
  serial: Buffer;
  /** From signatureAlgorithm(issuer's key). */
  algorithm: Buffer;
  issuer: Buffer;
  notBefore: Date;
  notAfter: Date;
  subject: Buffer;
  spki: Buffer;
  extensions: Buffer[];
}

/** The TBSCertificate (RFC 5280 §4.1): what the issuer signs. */
export function tbsCertificate(f: TbsFields): Buffer {
  return der(
    TAG.SEQUENCE,
    VERSION_3,
    der(TAG.INTEGER, f.serial),
    f.algorithm,
    f.issuer,
    der(TAG.SEQUENCE, time(f.notBefore), time(f.notAfter)),
    f.subject,
    f.spki,
    der(0xa3, der(TAG.SEQUENCE, ...f.extensions)),
  );
}

export const certificate = (tbs: Buffer, algorithm: Buffer, signature: Buffer): Buffer =>
  der(TAG.SEQUENCE, tbs, algorithm, der(TAG.BIT_STRING, Buffer.from([0]), signature));

/** SHA-256 signature: PKCS #1 v1.5 for RSA, DER-encoded ECDSA for EC (what X.509 wants). */
export const signSync = (tbs: Buffer, key: KeyObject): Buffer => sign('sha256', tbs, key);

/** The same in libuv's threadpool: an RSA signature (~1 ms) then keeps off the event loop. */
export const signAsync = (tbs: Buffer, key: KeyObject): Promise<Buffer> =>
  new Promise((resolve, reject) => sign('sha256', tbs, key, (err, sig) => (err ? reject(err) : resolve(sig))));

export function toPem(certDer: Buffer): string {
  const b64 = certDer.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}

/** What issuing under a CA certificate needs from it, read with forge's key-agnostic ASN.1 parser. */
export interface IssuerInfo {
  /** The CA's subject Name, DER: every leaf's issuer. */
  subject: Buffer;
  notAfter: Date;
  /** The CA's subjectKeyIdentifier: a leaf's authorityKeyIdentifier must equal it for OpenSSL to chain. */
  keyId: Buffer;
}

export function issuerInfo(x509: X509Certificate): IssuerInfo {
  const tbs = ((fromDer(x509.raw).value as Asn1[])[0].value as Asn1[]);
  // version is an optional [0]; a v1 certificate starts with the serial
  const at = tbs[0].tagClass === asn1.Class.CONTEXT_SPECIFIC ? 1 : 0;
  let keyId: Buffer | undefined;
  const extsNode = tbs.find((n) => n.tagClass === asn1.Class.CONTEXT_SPECIFIC && n.type === 3);
  for (const ext of ((extsNode?.value as Asn1[] | undefined)?.[0]?.value as Asn1[] | undefined) ?? []) {
    const parts = ext.value as Asn1[];
    if (asn1.derToOid(parts[0].value as string) !== OID_SUBJECT_KEY_ID) continue;
    keyId = Buffer.from(fromDer(parts[parts.length - 1].value as string).value as string, 'binary');
  }
  return { subject: toBuffer(tbs[at + 4]), notAfter: new Date(x509.validTo), keyId: keyId ?? keyIdentifier(x509.publicKey) };
}
