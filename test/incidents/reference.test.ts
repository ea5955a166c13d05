import { describe, expect, it } from 'vitest';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadReferenceSecret, openReference, sealReference, type BlockReference } from '../../incidents/reference';

const ref: BlockReference = { k: 'key-1', url: 'http://casino.example/', host: 'casino.example', category: 'gambling', clientIp: '10.0.0.5', user: 'pupil.one@school.example', group: 'staff', t: Date.now() };

/** Every way the token could show what it carries: as it is, decoded, and decoded from its parts. */
function readings(token: string): string {
  const parts = [token, ...token.split(/[._~-]/)];
  return parts.flatMap((p) => [p, Buffer.from(p, 'base64url').toString('latin1'), Buffer.from(p, 'base64').toString('latin1')]).join('\n');
}

describe('block references', () => {
  it('round-trips and keeps the secret private to its owner', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sg-ref-'));
    const secret = loadReferenceSecret(dir);
    expect(loadReferenceSecret(dir).equals(secret)).toBe(true);
    expect(statSync(path.join(dir, 'reference.key')).mode & 0o777).toBe(0o600);
    expect(openReference(secret, sealReference(secret, ref))).toEqual(ref);
  });

  it('shows nothing it carries to whoever reads the page', () => {
    const secret = Buffer.alloc(32, 1);
    const token = sealReference(secret, ref);
    const seen = readings(token);
    for (const secretPart of [ref.user!, ref.clientIp!, ref.url, ref.host, ref.group!, ref.k, 'pupil', '10.0.0']) {
      expect(seen).not.toContain(secretPart);
    }
    // The same block sealed twice reads differently: equal tokens would tell a reader two blocks apart.
    expect(sealReference(secret, ref)).not.toBe(token);
    // Every seal a fresh IV (GCM must never reuse one under a key), across refills of the IV batch.
    const ivs = new Set(Array.from({ length: 1000 }, () => Buffer.from(sealReference(secret, ref), 'base64url').subarray(1, 13).toString('hex')));
    expect(ivs.size).toBe(1000);
  });

  it('refuses forged, altered and malformed references', () => {
    const secret = Buffer.alloc(32, 1);
    const token = sealReference(secret, ref);
    expect(openReference(Buffer.alloc(32, 2), token)).toBeNull();
    // Sealed under another secret, claiming another user.
    expect(openReference(secret, sealReference(Buffer.alloc(32, 2), { ...ref, user: 'someone.else@school' }))).toBeNull();
    const raw = Buffer.from(token, 'base64url');
    for (const at of [0, 5, 20, raw.length - 1]) {
      const flipped = Buffer.from(raw);
      flipped[at] ^= 0x01;
      expect(openReference(secret, flipped.toString('base64url'))).toBeNull();
    }
    expect(openReference(secret, raw.subarray(0, raw.length - 1).toString('base64url'))).toBeNull();
    expect(openReference(secret, `${token}.x`)).toBeNull();
    expect(openReference(secret, '')).toBeNull();
    expect(openReference(secret, 'x'.repeat(100_000))).toBeNull();
    expect(openReference(secret, undefined as unknown as string)).toBeNull();
  });
});
