import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The "Continue to your results" link of the support page (blockpage.ts renderSupportPage) is the
 * same search with one query parameter added: a marker the gateway seals, checks and strips, so
 * the search engine never sees it and the search that already raised an incident does not raise
 * a second one, nor show the page again.
 *
 * The marker is an HMAC of who searched (address, user), where (host) and what (the terms), with
 * the time it was issued: a pupil cannot add one to another search, or hand theirs to a friend, to
 * search unseen. Stateless, so any gateway of the school (sharing the data folder's reference key)
 * can check one another's, and nothing is kept per search.
 */

export const CONTINUE_PARAM = 'schoolgate_continue';
/** Long enough to read the page and think, short enough that an old link is no pass. */
export const CONTINUE_TTL_MS = 30 * 60_000;

export interface ContinueSubject {
  clientIp: string | null;
  user: string | null;
  host: string;
  terms: string;
}

function mac(secret: Buffer, issued: string, s: ContinueSubject): Buffer {
  // Prefixed so this MAC can never be mistaken for any other use of the reference key.
  return createHmac('sha256', secret)
    .update(`schoolgate support continue\u0000${issued}\u0000${s.clientIp ?? ''}\u0000${s.user ?? ''}\u0000${s.host}\u0000${s.terms}`)
    .digest()
    .subarray(0, 18);
}

export function sealContinue(secret: Buffer, s: ContinueSubject, now = Date.now()): string {
  const issued = now.toString(36);
  return `${issued}.${mac(secret, issued, s).toString('base64url')}`;
}

export function checkContinue(secret: Buffer, token: string, s: ContinueSubject, now = Date.now()): boolean {
  const dot = token.indexOf('.');
  if (dot < 1 || dot > 12) return false;
  const issued = token.slice(0, dot);
  const at = parseInt(issued, 36);
  if (!Number.isFinite(at) || at > now + 60_000 || now - at > CONTINUE_TTL_MS) return false;
  const given = Buffer.from(token.slice(dot + 1), 'base64url');
  const want = mac(secret, issued, s);
  return given.length === want.length && timingSafeEqual(given, want);
}

/**
 * The path without the marker, and the marker's value, or null when the path holds none. Every
 * other parameter is kept byte for byte: the engine must get exactly the search the person made.
 */
export function takeContinue(path: string): { path: string; token: string } | null {
  const q = path.indexOf('?');
  if (q < 0 || !path.includes(CONTINUE_PARAM, q)) return null;
  const hash = path.indexOf('#', q);
  const query = path.slice(q + 1, hash < 0 ? undefined : hash);
  let token: string | null = null;
  const kept = query.split('&').filter((part) => {
    const eq = part.indexOf('=');
    if ((eq < 0 ? part : part.slice(0, eq)) !== CONTINUE_PARAM) return true;
    token ??= eq < 0 ? '' : part.slice(eq + 1);
    return false;
  });
  if (token === null) return null;
  const rest = hash < 0 ? '' : path.slice(hash);
  return { path: `${path.slice(0, q)}${kept.length ? `?${kept.join('&')}` : ''}${rest}`, token };
}

/** The same path with a fresh marker (any old one replaced). */
export function withContinue(path: string, token: string): string {
  const base = takeContinue(path)?.path ?? path;
  const hash = base.indexOf('#');
  const head = hash < 0 ? base : base.slice(0, hash);
  return `${head}${head.includes('?') ? '&' : '?'}${CONTINUE_PARAM}=${token}${hash < 0 ? '' : base.slice(hash)}`;
}
