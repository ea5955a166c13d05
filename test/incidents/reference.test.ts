import { describe, expect, it } from 'vitest';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadReferenceSecret, signReference, verifyReference, type BlockReference } from '../../incidents/reference';

const ref: BlockReference = { k: 'key-1', url: 'http://casino.example/', host: 'casino.example', category: 'gambling', clientIp: '10.0.0.5', user: null, group: 'staff', t: Date.now() };

describe('block references', () => {
  it('round-trips and keeps the secret private to its owner', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sg-ref-'));
    const secret = loadReferenceSecret(dir);
    expect(loadReferenceSecret(dir).equals(secret)).toBe(true);
    expect(statSync(path.join(dir, 'reference.key')).mode & 0o777).toBe(0o600);
    expect(verifyReference(secret, signReference(secret, ref))).toEqual(ref);
  });

  it('refuses forged, altered and malformed references', () => {
    const secret = Buffer.alloc(32, 1);
    const token = signReference(secret, ref);
    expect(verifyReference(Buffer.alloc(32, 2), token)).toBeNull();
    const [body, mac] = token.split('.');
    const altered = Buffer.from(JSON.stringify({ ...ref, user: 'someone.else@school' })).toString('base64url');
    expect(verifyReference(secret, `${altered}.${mac}`)).toBeNull();
    expect(verifyReference(secret, body)).toBeNull();
    expect(verifyReference(secret, '')).toBeNull();
    expect(verifyReference(secret, 'x'.repeat(10_000))).toBeNull();
  });
});
