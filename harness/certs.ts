import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import net from 'node:net';
import forge from 'node-forge';

export interface KeyAndCert {
  key: string;
  cert: string;
  /** SHA-256 fingerprint as Node prints it (AA:BB:...). */
  fingerprint256: string;
}

/** A self-signed certificate for the given names (DNS names or IPv4 addresses), made with node-forge. */
export function selfSignedCert(names: string[], commonName = names[0]): KeyAndCert {
  // Native key generation: forge's pure-JS RSA takes seconds, and only the certificate needs forge.
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pub = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  const priv = forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString());
  const cert = forge.pki.createCertificate();
  cert.publicKey = pub;
  cert.serialNumber = '01' + forge.util.bytesToHex(forge.random.getBytesSync(8));
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 7 * 86_400_000);
  const attrs = [{ name: 'commonName', value: commonName }, { name: 'organizationName', value: 'schoolgate test origin' }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: names.map((n) => (net.isIPv4(n) ? { type: 7, ip: n } : { type: 2, value: n })),
    },
  ]);
  cert.sign(priv, forge.md.sha256.create());
  const certPem = forge.pki.certificateToPem(cert);
  return {
    key: privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(),
    cert: certPem,
    fingerprint256: new X509Certificate(certPem).fingerprint256,
  };
}
