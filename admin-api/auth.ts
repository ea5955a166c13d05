import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { adminBaseUrl, type Config } from '../core/config';
import { announceCredentialsChanged } from '../core/credentials';
import { SchoolgateError } from '../core/errors';
import type { Db, Queryable } from '../db/types';
import * as accounts from '../repos/accounts';

// Defined once in core/vocabulary.ts; re-exported for the routes and the CLI, which take roles from here.
export { ROLES, type Role } from '../core/vocabulary';
import { ROLES, type Role } from '../core/vocabulary';

export interface AuthUser {
  id: number;
  email: string;
  role: Role;
  displayName: string | null;
}

/** Who may call a route: 'public' (no login), 'any' logged-in user, or a list of roles. */
export type Access = 'public' | 'any' | readonly Role[];

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    user: AuthUser | null;
    authVia: 'cookie' | 'token' | null;
  }
}

export const SESSION_COOKIE = 'sg_session';
export const SESSION_HOURS = 12;

// ---------------------------------------------------------------------------------------------
// Passwords. scrypt from node:crypto: memory-hard, no native addon to build on school servers.
// The gateway's Proxy-Authorization check uses these same two functions.

const SCRYPT = { N: 16384, r: 8, p: 1, keylen: 32 };

// scrypt runs on libuv's thread pool (4 threads unless UV_THREADPOOL_SIZE says otherwise), the
// pool that also serves dns.lookup for every upstream connection the gateway opens. A burst of
// sign-ins or guesses would hold all of it for tens of milliseconds each and stall page loads
// across the school; so at most half the pool hashes at once and the rest wait here, in order.
const HASH_SLOTS = Math.max(1, Math.floor((Number(process.env.UV_THREADPOOL_SIZE) || 4) / 2));
let hashing = 0;
const hashQueue: Array<() => void> = [];

/** Hashes running and waiting for a slot: what the gateway checks before queuing another guess. */
export function hashLoad(): { running: number; waiting: number; slots: number } {
  return { running: hashing, waiting: hashQueue.length, slots: HASH_SLOTS };
}

async function scryptAsync(pw: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  if (hashing >= HASH_SLOTS) await new Promise<void>((resolve) => hashQueue.push(resolve));
  else hashing++;
  try {
    return await new Promise((resolve, reject) =>
      scrypt(pw.normalize('NFC'), salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))),
    );
  } finally {
    // The slot passes straight to the next waiter, so the count never dips and lets a newcomer jump the queue.
    const next = hashQueue.shift();
    if (next) next();
    else hashing--;
  }
}

/** `scrypt$N$r$p$saltB64$hashB64` */
export async function hashPassword(pw: string): Promise<string> {
  const salt = randomBytes(16);
  const { N, r, p, keylen } = SCRYPT;
  const key = await scryptAsync(pw, salt, keylen, { N, r, p, maxmem: 256 * N * r });
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/**
 * The password hash of an account the school's identity provider signs in (admin-api/oidc.ts): not
 * a hash, so no password matches it, neither at the console's login nor at the proxy.
 */
export const NO_PASSWORD = '!oidc';

export async function verifyPassword(pw: string, stored: string): Promise<boolean> {
  if (typeof pw !== 'string' || typeof stored !== 'string') return false;
  // As long as a real check, so a guess does not learn which accounts sign in at the provider.
  if (stored === NO_PASSWORD) return (await verifyPassword(pw, await getDummyHash())) && false;
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  // Bounds keep a tampered hash from turning one login into a memory or CPU bomb.
  if (!Number.isInteger(N) || N < 2 || N > 1 << 20 || (N & (N - 1)) !== 0) return false;
  if (!Number.isInteger(r) || r < 1 || r > 32 || !Number.isInteger(p) || p < 1 || p > 16) return false;
  const salt = Buffer.from(parts[4], 'base64');
  const want = Buffer.from(parts[5], 'base64');
  if (want.length < 16 || want.length > 128) return false;
  try {
    const got = await scryptAsync(pw, salt, want.length, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 });
    return timingSafeEqual(got, want);
  } catch {
    return false;
  }
}

/** A random password for accounts made without one: 18 bytes, base64url (24 characters). */
export function generatePassword(): string {
  return randomBytes(18).toString('base64url');
}

export const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

// A fixed hash to verify against when the email is unknown, so timing does not reveal accounts.
let dummyHash: Promise<string> | null = null;
export const getDummyHash = () => (dummyHash ??= hashPassword(randomBytes(16).toString('hex')));

// ---------------------------------------------------------------------------------------------
// Accounts, sessions and tokens

const toUser = (r: accounts.UserRow): AuthUser => ({ id: Number(r.id), email: r.email, role: r.role, displayName: r.display_name });

export function validateEmail(email: unknown): string {
  if (typeof email !== 'string' || email.length > 254 || !/^[^\s@]+@[^\s@]+$/.test(email)) {
    throw new SchoolgateError('SG_ERR_VALIDATION', `not an email address: ${JSON.stringify(String(email).slice(0, 80))}`);
  }
  return email.trim();
}

export function validateRole(role: unknown): Role {
  if (!ROLES.includes(role as Role)) {
    throw new SchoolgateError('SG_ERR_VALIDATION', `role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(role)}`);
  }
  return role as Role;
}

/** Creates an account; SG_ERR_USER_EXISTS when the email (case-insensitive) is taken. */
export async function createUser(
  db: Queryable,
  u: { email: string; role: Role; password: string; displayName?: string | null },
): Promise<AuthUser> {
  const email = validateEmail(u.email);
  const role = validateRole(u.role);
  if (u.password.length < 8) throw new SchoolgateError('SG_ERR_VALIDATION', 'password must be at least 8 characters');
  const hash = await hashPassword(u.password);
  if (await accounts.emailTaken(db, email)) throw new SchoolgateError('SG_ERR_USER_EXISTS', email);
  try {
    return toUser(await accounts.insertUser(db, { email, role, passwordHash: hash, displayName: u.displayName ?? null }));
  } catch (err) {
    // Two creations racing: the unique index decides.
    if ((err as { code?: string }).code === '23505') throw new SchoolgateError('SG_ERR_USER_EXISTS', email);
    throw err;
  }
}

/** Sets a user's password (at least 8 characters). Callers then revokeCredentials: the old one's sessions and tokens end. */
export async function setPassword(db: Queryable, userId: number, password: string): Promise<void> {
  if (typeof password !== 'string' || password.length < 8) throw new SchoolgateError('SG_ERR_VALIDATION', 'password must be at least 8 characters');
  if (!(await accounts.setPasswordHash(db, userId, await hashPassword(password)))) throw new SchoolgateError('SG_ERR_NOT_FOUND', `user ${userId}`);
}

/** The user when email and password match an enabled account, else null (same time either way). */
export async function checkLogin(db: Queryable, email: string, password: string): Promise<AuthUser | null> {
  const row = await accounts.findUserByEmail(db, email);
  const ok = await verifyPassword(password, row?.password_hash ?? (await getDummyHash()));
  return row && ok && !row.disabled ? toUser(row) : null;
}

export async function createSession(db: Queryable, userId: number): Promise<string> {
  const id = randomBytes(32).toString('base64url');
  await accounts.insertSession(db, sha256(id), userId, SESSION_HOURS);
  // Expired sessions are swept here rather than by a timer: logins are rare and this stays cheap.
  await accounts.deleteExpiredSessions(db);
  return id;
}

export async function deleteSession(db: Queryable, id: string): Promise<void> {
  await accounts.deleteSession(db, sha256(id));
}

export async function userForSession(db: Queryable, id: string): Promise<AuthUser | null> {
  const row = await accounts.userForSessionHash(db, sha256(id));
  return row ? toUser(row) : null;
}

export const TOKEN_PREFIX = 'sgt_';

/** The longest a token may be made to live: automation that needs more can be given a new one. */
export const TOKEN_MAX_DAYS = 5 * 366;

/**
 * A token expiry from the API: an ISO 8601 date-time with a zone, in the future and at most
 * TOKEN_MAX_DAYS ahead. Throws SG_ERR_VALIDATION naming the field otherwise.
 */
export function validateTokenExpiry(value: unknown, now = Date.now()): Date {
  // A zone is required: a bare local time would mean different instants on the server and the caller.
  const s = typeof value === 'string' ? value : '';
  const at = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/i.test(s) ? new Date(s) : new Date(NaN);
  // Date rolls 2027-02-30 over into March rather than refusing it.
  const [y, mo, d] = s.slice(0, 10).split('-').map(Number);
  const day = new Date(Date.UTC(y, mo - 1, d));
  if (Number.isNaN(at.getTime()) || day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d) {
    throw new SchoolgateError('SG_ERR_VALIDATION', `expiresAt must be a date-time such as 2027-07-31T17:00:00Z, got ${JSON.stringify(String(value).slice(0, 60))}`);
  }
  if (at.getTime() <= now) throw new SchoolgateError('SG_ERR_VALIDATION', `expiresAt ${s} is not in the future`);
  if (at.getTime() > now + TOKEN_MAX_DAYS * 86_400_000) {
    throw new SchoolgateError('SG_ERR_VALIDATION', `expiresAt ${s} is more than ${TOKEN_MAX_DAYS} days ahead`);
  }
  return at;
}

/** A new API token for the user; only its digest is kept, the token itself is shown once. */
export async function createToken(db: Queryable, userId: number, name: string, expiresAt: Date | null = null): Promise<{ id: number; token: string }> {
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  const id = await accounts.insertToken(db, { userId, name, tokenHash: sha256(token), expiresAt });
  return { id, token };
}

export async function userForToken(db: Queryable, token: string): Promise<AuthUser | null> {
  const row = await accounts.useToken(db, sha256(token));
  return row ? toUser(row) : null;
}

/**
 * What a password change or a disabled account must end, all at once: the user's console
 * sessions, their API tokens, and every gateway's cached Proxy-Authorization for them. Call it
 * on the database itself (not inside a transaction), after the change it follows is committed.
 */
export async function revokeCredentials(db: Db, user: { id: number; email: string }): Promise<void> {
  await accounts.endSessionsAndTokens(db, user.id);
  await announceCredentialsChanged(db, user.email);
}

// ---------------------------------------------------------------------------------------------
// Request checks: who is calling, may they call this route, and did the request come from the
// console itself (a cookie is sent by the browser whatever page made the request).

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function originOf(value: string | undefined): string | null {
  if (!value) return null;
  try {
    const u = new URL(value);
    return `${u.protocol}//${u.host}`;
  } catch {
    return null;
  }
}

export function allowedOrigins(config: Config, req: FastifyRequest): Set<string> {
  const set = new Set<string>();
  // Through URL on both sides, so http://host:80 and http://host compare equal.
  for (const o of [originOf(`${req.protocol}://${req.host}`), originOf(adminBaseUrl(config))]) if (o) set.add(o);
  return set;
}

/** The request's Origin (or Referer's origin) when it is one of ours; throws SG_ERR_BAD_ORIGIN otherwise. */
export function checkOrigin(config: Config, req: FastifyRequest, required: boolean): void {
  const raw = req.headers.origin ?? req.headers.referer;
  const origin = raw === 'null' ? 'null' : originOf(raw);
  if (origin === null && !raw) {
    if (required) throw new SchoolgateError('SG_ERR_BAD_ORIGIN', 'state-changing request without Origin or Referer');
    return;
  }
  if (!origin || !allowedOrigins(config, req).has(origin)) {
    throw new SchoolgateError('SG_ERR_BAD_ORIGIN', `origin ${JSON.stringify(String(raw).slice(0, 100))} is not this console`);
  }
}

export function requestIsTls(config: Config, req: FastifyRequest): boolean {
  return req.protocol === 'https' || (config.publicUrl ?? '').startsWith('https:');
}

export function setSessionCookie(config: Config, req: FastifyRequest, reply: FastifyReply, id: string): void {
  reply.setCookie(SESSION_COOKIE, id, {
    path: '/',
    httpOnly: true,
    sameSite: 'strict',
    secure: requestIsTls(config, req),
    maxAge: SESSION_HOURS * 3600,
  });
}

export function clearSessionCookie(config: Config, req: FastifyRequest, reply: FastifyReply): void {
  reply.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'strict', secure: requestIsTls(config, req) });
}

/**
 * Installs, on the root instance, the hook every request passes: it resolves the caller from the
 * Bearer token or session cookie, then enforces the route's `config.access` (401 anonymous, 403
 * wrong role) and the origin check for cookie-authenticated state changes. API routes that forget
 * to declare `access` require a login rather than being open.
 */
export function installAuth(app: FastifyInstance, opts: { db: Queryable; config: Config }): void {
  app.decorateRequest('user', null);
  app.decorateRequest('authVia', null);
  app.addHook('onRequest', async (req) => {
    const configured = req.routeOptions.config?.access;
    const access: Access = configured ?? (req.url.startsWith('/api/') ? 'any' : 'public');

    const auth = req.headers.authorization;
    if (auth && /^bearer /i.test(auth)) {
      const token = auth.slice(7).trim();
      req.user = token ? await userForToken(opts.db, token) : null;
      if (req.user) req.authVia = 'token';
      else if (access !== 'public') throw new SchoolgateError('SG_ERR_UNAUTHENTICATED', 'API token unknown or revoked');
    } else {
      const sid = req.cookies?.[SESSION_COOKIE];
      if (sid) {
        req.user = await userForSession(opts.db, sid);
        if (req.user) req.authVia = 'cookie';
      }
    }

    if (access === 'public') {
      // Login carries no cookie yet, but a foreign page must still not log someone in as itself.
      if (!SAFE_METHODS.has(req.method) && req.routeOptions.url === '/api/login') checkOrigin(opts.config, req, false);
      return;
    }
    if (!req.user) throw new SchoolgateError('SG_ERR_UNAUTHENTICATED');
    if (access !== 'any' && !access.includes(req.user.role)) {
      throw new SchoolgateError('SG_ERR_FORBIDDEN', `${req.method} ${req.routeOptions.url} is not allowed for ${req.user.role}`);
    }
    if (req.authVia === 'cookie' && !SAFE_METHODS.has(req.method)) checkOrigin(opts.config, req, true);
  });
}

/** The logged-in caller; routes behind `access` call it so TypeScript knows the user is there. */
export function caller(req: FastifyRequest): AuthUser {
  if (!req.user) throw new SchoolgateError('SG_ERR_UNAUTHENTICATED');
  return req.user;
}
