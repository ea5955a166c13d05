import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';

/**
 * A block reference is what the block page carries so staff can report the block in one click.
 * It is signed by the gateway so the report endpoint needs no database round trip and cannot be
 * forged to file reports in someone else's name.
 */
export interface BlockReference {
  /** Idempotency key of the `blocked` incident. */
  k: string;
  url: string;
  host: string;
  category: string | null;
  clientIp: string | null;
  user: string | null;
  group: string | null;
  /** Time of the block, ms since the epoch. */
  t: number;
}

/** Reads (or creates, 0600) the secret shared by every gateway and admin API on this data folder. */
export function loadReferenceSecret(dataDir: string): Buffer {
  const file = path.join(dataDir, 'reference.key');
  if (existsSync(file)) return Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32);
  try {
    writeFileSync(file, secret.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another process on this data folder created it first: theirs is the one to share.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
  }
  return secret;
}

const mac = (secret: Buffer, body: string) => createHmac('sha256', secret).update(body).digest('base64url');

export function signReference(secret: Buffer, ref: BlockReference): string {
  const body = Buffer.from(JSON.stringify(ref)).toString('base64url');
  return `${body}.${mac(secret, body)}`;
}

/** The reference, or null when it is malformed or its signature does not match. */
export function verifyReference(secret: Buffer, token: string): BlockReference | null {
  if (typeof token !== 'string' || token.length > 8192) return null;
  const dot = token.indexOf('.');
  if (dot <= 0) return null;
  const body = token.slice(0, dot);
  const given = Buffer.from(token.slice(dot + 1));
  const want = Buffer.from(mac(secret, body));
  if (given.length !== want.length || !timingSafeEqual(given, want)) return null;
  try {
    const ref = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    return ref && typeof ref.k === 'string' && typeof ref.url === 'string' ? (ref as BlockReference) : null;
  } catch {
    return null;
  }
}
