import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, randomFillSync } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { IdentitySource } from '../core/vocabulary';

/**
 * A block reference is what the block page carries so staff can report the block in one click.
 * It is sealed by the gateway (AES-256-GCM: encrypted and authenticated) so that the report
 * endpoint needs no database round trip (it works while the database is away, and for any
 * gateway sharing the data folder), cannot be forged to file reports in someone else's name, and
 * shows nothing to whoever reads the page. The page is served on the blocked site's own origin,
 * where that site's scripts on pages that are not blocked can read it; a signed-but-readable
 * reference handed them the user and the client address.
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
  /** Which source named the person; absent in references sealed before it was recorded. */
  src?: IdentitySource;
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

/** First byte of every sealed reference: a later format gets a new one, and old pages fail cleanly. */
const VERSION = 1;
const IV = 12;
const TAG = 16;
/** Bound to the version, so a token cannot be replayed under another format's reading. */
const AAD = Buffer.from('schoolgate block reference v1');
/** URLs may be long (Node admits 16 KiB of headers); the report form's body limit is 64 KiB. */
const MAX_TOKEN = 48 * 1024;

// The secret also keyed the earlier HMAC references; a key of its own for encryption keeps the two
// uses apart. Derived once per secret: HKDF per block would double the block page's crypto cost.
const keys = new WeakMap<Buffer, Buffer>();
function keyFor(secret: Buffer): Buffer {
  let key = keys.get(secret);
  if (!key) {
    key = Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'schoolgate block reference aes-256-gcm', 32));
    keys.set(secret, key);
  }
  return key;
}

// IVs drawn from the system CSPRNG in batches: one call per block page cost about as much as the
// cipher itself. Random rather than counted, because several gateways seal under the same key.
const ivPool = Buffer.alloc(IV * 256);
let ivAt = ivPool.length;
function nextIv(): Buffer {
  if (ivAt === ivPool.length) {
    randomFillSync(ivPool);
    ivAt = 0;
  }
  ivAt += IV;
  return ivPool.subarray(ivAt - IV, ivAt);
}

/** The opaque token the block page's forms carry: base64url of version, IV, ciphertext and tag. */
export function sealReference(secret: Buffer, ref: BlockReference): string {
  // A random 96-bit IV per reference: far below GCM's 2^32-messages-per-key bound for random IVs
  // at any school's block rate over the life of a key.
  const iv = nextIv();
  const cipher = createCipheriv('aes-256-gcm', keyFor(secret), iv, { authTagLength: TAG });
  cipher.setAAD(AAD);
  const body = Buffer.concat([cipher.update(JSON.stringify(ref), 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.of(VERSION), iv, body, cipher.getAuthTag()]).toString('base64url');
}

/** The reference, or null when it is malformed, altered, or was not sealed under this secret. */
export function openReference(secret: Buffer, token: string): BlockReference | null {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN || !/^[A-Za-z0-9_-]+$/.test(token)) return null;
  const raw = Buffer.from(token, 'base64url');
  if (raw.length < 1 + IV + TAG + 2 || raw[0] !== VERSION) return null;
  try {
    const decipher = createDecipheriv('aes-256-gcm', keyFor(secret), raw.subarray(1, 1 + IV), { authTagLength: TAG });
    decipher.setAAD(AAD);
    decipher.setAuthTag(raw.subarray(raw.length - TAG));
    const text = Buffer.concat([decipher.update(raw.subarray(1 + IV, raw.length - TAG)), decipher.final()]).toString('utf8');
    const ref = JSON.parse(text);
    return ref && typeof ref.k === 'string' && typeof ref.url === 'string' && typeof ref.t === 'number' ? (ref as BlockReference) : null;
  } catch {
    // final() throws when the tag does not match: altered, truncated or foreign.
    return null;
  }
}
