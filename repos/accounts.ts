/**
 * Every SQL statement on console accounts, their sessions and API tokens. Secrets never reach
 * this module: sessions and tokens are stored and found by their SHA-256 digest, passwords by
 * their scrypt hash, both made by the caller (admin-api/auth.ts).
 */
import type { Role } from '../core/vocabulary';
import type { Queryable } from '../db/types';

/** A user row without its secrets, as sign-in, sessions and tokens return it. */
export interface UserRow {
  id: number;
  email: string;
  role: Role;
  display_name: string | null;
}

/** A user row for the accounts page. */
export interface AccountRow extends UserRow {
  disabled: boolean;
  created_at: Date;
  /** Signed in by the school's identity provider (no password); listUsers only. */
  external?: boolean;
}

const toUserRow = <T extends UserRow>(r: T): T => ({ ...r, id: Number(r.id) });

/** The account for an email (case-insensitive) with what a password check needs; null when none. */
export async function findUserByEmail(db: Queryable, email: string): Promise<(UserRow & { password_hash: string; disabled: boolean }) | null> {
  const r = await db.query<UserRow & { password_hash: string; disabled: boolean }>(
    'SELECT id, email, role, display_name, password_hash, disabled FROM users WHERE lower(email) = lower($1)',
    [email],
  );
  return r.rows[0] ? toUserRow(r.rows[0]) : null;
}

export async function emailTaken(db: Queryable, email: string): Promise<boolean> {
  const r = await db.query('SELECT 1 FROM users WHERE lower(email) = lower($1)', [email]);
  return r.rowCount > 0;
}

/** Throws the database's unique violation (23505) when the email was taken meanwhile. */
export async function insertUser(db: Queryable, u: { email: string; role: Role; passwordHash: string; displayName: string | null }): Promise<UserRow> {
  const r = await db.query<UserRow>(
    'INSERT INTO users (email, role, password_hash, display_name) VALUES ($1, $2, $3, $4) RETURNING id, email, role, display_name',
    [u.email, u.role, u.passwordHash, u.displayName],
  );
  return toUserRow(r.rows[0]);
}

/** False when there is no such user. */
export async function setPasswordHash(db: Queryable, userId: number, passwordHash: string): Promise<boolean> {
  const r = await db.query('UPDATE users SET password_hash = $2 WHERE id = $1', [userId, passwordHash]);
  return r.rowCount > 0;
}

/** By email (case-insensitive), as the CLI names accounts; null when there is no such user. */
export async function setPasswordHashByEmail(db: Queryable, email: string, passwordHash: string): Promise<{ id: number; email: string } | null> {
  const r = await db.query<{ id: number; email: string }>('UPDATE users SET password_hash = $2 WHERE lower(email) = lower($1) RETURNING id, email', [
    email,
    passwordHash,
  ]);
  const row = r.rows[0];
  return row ? { id: Number(row.id), email: row.email } : null;
}

/** Every account, in email order. */
export async function listUsers(db: Queryable): Promise<AccountRow[]> {
  const r = await db.query<AccountRow>('SELECT id, email, role, display_name, disabled, created_at, oidc_subject IS NOT NULL AS external FROM users ORDER BY lower(email)');
  return r.rows.map(toUserRow);
}

export async function getUser(db: Queryable, id: number): Promise<{ id: number; email: string; role: Role } | null> {
  const r = await db.query<{ id: number; email: string; role: Role }>('SELECT id, email, role FROM users WHERE id = $1', [id]);
  return r.rows[0] ? { ...r.rows[0], id: Number(r.rows[0].id) } : null;
}

/** Sets the role; `disabled` and `displayName` only when given (null keeps them). */
export async function updateUser(db: Queryable, id: number, change: { role: Role; disabled: boolean | null; displayName: string | null }): Promise<AccountRow> {
  const r = await db.query<AccountRow>(
    `UPDATE users SET role = $2, disabled = coalesce($3, disabled), display_name = coalesce($4, display_name) WHERE id = $1
     RETURNING id, email, role, display_name, disabled, created_at`,
    [id, change.role, change.disabled, change.displayName],
  );
  return toUserRow(r.rows[0]);
}

/** The email of an enabled account, or null (an incident may only be assigned to one). */
export async function activeUserEmail(db: Queryable, id: number): Promise<string | null> {
  const r = await db.query<{ email: string }>('SELECT email FROM users WHERE id = $1 AND NOT disabled', [id]);
  return r.rows[0]?.email ?? null;
}

/** The emails of the enabled accounts holding `role`, oldest account first. */
export async function activeEmailsWithRole(db: Queryable, role: Role): Promise<string[]> {
  const r = await db.query<{ email: string }>('SELECT email FROM users WHERE role = $1 AND NOT disabled ORDER BY id', [role]);
  return r.rows.map((u) => u.email);
}

export async function countActiveUsers(db: Queryable): Promise<number> {
  return Number((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM users WHERE NOT disabled')).rows[0].n);
}

// ---------------------------------------------------------------------------------------------
// Accounts the school's identity provider signs in (OpenID Connect): found by issuer and subject.

/** An account the provider signed in before, with what the callback checks. */
export interface OidcUserRow extends UserRow {
  disabled: boolean;
}

export async function findUserByOidcSubject(db: Queryable, issuer: string, subject: string): Promise<OidcUserRow | null> {
  const r = await db.query<OidcUserRow>(
    'SELECT id, email, role, display_name, disabled FROM users WHERE oidc_issuer = $1 AND oidc_subject = $2',
    [issuer, subject],
  );
  return r.rows[0] ? toUserRow(r.rows[0]) : null;
}

/** Throws the database's unique violation (23505) when the email (or the subject) was taken meanwhile. */
export async function insertOidcUser(
  db: Queryable,
  u: { email: string; role: Role; displayName: string | null; issuer: string; subject: string; passwordHash: string },
): Promise<UserRow> {
  const r = await db.query<UserRow>(
    `INSERT INTO users (email, role, password_hash, display_name, oidc_issuer, oidc_subject) VALUES ($1, $2, $3, $4, $5, $6)
     RETURNING id, email, role, display_name`,
    [u.email, u.role, u.passwordHash, u.displayName, u.issuer, u.subject],
  );
  return toUserRow(r.rows[0]);
}

/** What the provider says now: email, role and name. Throws 23505 when the new email belongs to another account. */
export async function updateOidcUser(db: Queryable, id: number, u: { email: string; role: Role; displayName: string | null }): Promise<UserRow> {
  const r = await db.query<UserRow>(
    `UPDATE users SET email = $2, role = $3, display_name = coalesce($4, display_name) WHERE id = $1
     RETURNING id, email, role, display_name`,
    [id, u.email, u.role, u.displayName],
  );
  return toUserRow(r.rows[0]);
}

// ---------------------------------------------------------------------------------------------
// Sessions

export async function insertSession(db: Queryable, idHash: string, userId: number, hours: number): Promise<void> {
  await db.query(`INSERT INTO sessions (id_hash, user_id, expires_at) VALUES ($1, $2, now() + make_interval(hours => $3))`, [idHash, userId, hours]);
}

export async function deleteExpiredSessions(db: Queryable): Promise<void> {
  await db.query('DELETE FROM sessions WHERE expires_at < now()');
}

export async function deleteSession(db: Queryable, idHash: string): Promise<void> {
  await db.query('DELETE FROM sessions WHERE id_hash = $1', [idHash]);
}

/** The enabled account a live session belongs to. */
export async function userForSessionHash(db: Queryable, idHash: string): Promise<UserRow | null> {
  const r = await db.query<UserRow>(
    `SELECT u.id, u.email, u.role, u.display_name FROM sessions s JOIN users u ON u.id = s.user_id
      WHERE s.id_hash = $1 AND s.expires_at > now() AND NOT u.disabled`,
    [idHash],
  );
  return r.rows[0] ? toUserRow(r.rows[0]) : null;
}

// ---------------------------------------------------------------------------------------------
// API tokens

export interface TokenRow {
  id: number;
  name: string;
  created_at: Date;
  last_used_at: Date | null;
  revoked: boolean;
  expires_at: Date | null;
}

export async function insertToken(db: Queryable, t: { userId: number; name: string; tokenHash: string; expiresAt: Date | null }): Promise<number> {
  const r = await db.query<{ id: number }>('INSERT INTO api_tokens (user_id, name, token_hash, expires_at) VALUES ($1, $2, $3, $4) RETURNING id', [
    t.userId,
    t.name,
    t.tokenHash,
    t.expiresAt,
  ]);
  return Number(r.rows[0].id);
}

/** The enabled account a live, unrevoked token belongs to; marks the token used. */
export async function useToken(db: Queryable, tokenHash: string): Promise<UserRow | null> {
  const r = await db.query<UserRow>(
    `UPDATE api_tokens t SET last_used_at = now() FROM users u
      WHERE t.token_hash = $1 AND NOT t.revoked AND (t.expires_at IS NULL OR t.expires_at > now())
        AND u.id = t.user_id AND NOT u.disabled
      RETURNING u.id, u.email, u.role, u.display_name`,
    [tokenHash],
  );
  return r.rows[0] ? toUserRow(r.rows[0]) : null;
}

/** A user's tokens, newest first. */
export async function listTokens(db: Queryable, userId: number): Promise<TokenRow[]> {
  const r = await db.query<TokenRow>('SELECT id, name, created_at, last_used_at, revoked, expires_at FROM api_tokens WHERE user_id = $1 ORDER BY id DESC', [
    userId,
  ]);
  return r.rows.map((t) => ({ ...t, id: Number(t.id) }));
}

/** False when the user holds no such token. */
export async function revokeToken(db: Queryable, id: number, userId: number): Promise<boolean> {
  const r = await db.query('UPDATE api_tokens SET revoked = true WHERE id = $1 AND user_id = $2 RETURNING id', [id, userId]);
  return r.rowCount > 0;
}

/** Ends every session and revokes every token of the user (the caller announces the change). */
export async function endSessionsAndTokens(db: Queryable, userId: number): Promise<void> {
  await db.query('DELETE FROM sessions WHERE user_id = $1', [userId]);
  await db.query('UPDATE api_tokens SET revoked = true WHERE user_id = $1 AND NOT revoked', [userId]);
}
