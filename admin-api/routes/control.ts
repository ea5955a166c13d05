/**
 * The local control channel. The embedded database (PGlite) can be opened by one process only, so
 * while `schoolgate start` runs, `schoolgate users add|list|passwd` cannot open it: they find
 * `<dataDir>/control.json` (written here when the admin API starts listening, mode 0600) and ask
 * the running server to do the work. The routes accept only the token in that file, only from a
 * caller on this host, and are left out of /docs: they are for the CLI, not for integrations.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { writeFileAtomicSync } from '../../core/files';
import { writeAudit } from '../../incidents/queries';
import type { Queryable } from '../../incidents/types';
import { createUser, hashPassword, revokeCredentials, validateRole, type AuthUser } from '../auth';
import type { AdminContext } from '../app';
import { errorSchema } from '../present';
import { bracketHost } from '../../core/host';

export const CONTROL_FILE = 'control.json';

/** What `<dataDir>/control.json` holds. */
export interface ControlFile {
  /** Base URL of the admin API as bound, reachable from this host (loopback when bound to all addresses). */
  url: string;
  token: string;
  /** The server's pid: the CLI only trusts the file when this process holds the database lock. */
  pid: number;
}

const CLI_ACTOR = { id: null, email: 'cli' } as const;

// ---------------------------------------------------------------------------------------------
// What the CLI does, in one place: run directly on the database by `schoolgate users`, or by the
// running server on its behalf. Same validation, same hashing, same audit rows either way.

export interface CliUserRow {
  id: number;
  email: string;
  role: string;
  disabled: boolean;
}

export async function cliListUsers(db: Queryable): Promise<CliUserRow[]> {
  const r = await db.query<CliUserRow>('SELECT id, email, role, disabled FROM users ORDER BY lower(email)');
  return r.rows.map((u) => ({ id: Number(u.id), email: u.email, role: u.role, disabled: u.disabled }));
}

export async function cliAddUser(db: Queryable, u: { email: string; role: string; password: string }): Promise<AuthUser> {
  const user = await createUser(db, { email: u.email, role: validateRole(u.role), password: u.password });
  await writeAudit(db, { actor: CLI_ACTOR, action: 'user_add', target: `user:${user.id}`, details: { email: user.email, role: user.role } });
  return user;
}

/** The way back in when the only DSL has forgotten their password; ends the user's sessions and API tokens. */
export async function cliChangePassword(db: Queryable, u: { email: string; password: string }): Promise<{ id: number; email: string }> {
  if (u.password.length < 8) throw new SchoolgateError('SG_ERR_VALIDATION', 'password must be at least 8 characters');
  const r = await db.query<{ id: number; email: string }>('UPDATE users SET password_hash = $2 WHERE lower(email) = lower($1) RETURNING id, email', [
    u.email,
    await hashPassword(u.password),
  ]);
  const row = r.rows[0];
  if (!row) throw new SchoolgateError('SG_ERR_NOT_FOUND', `no user ${u.email}`);
  await revokeCredentials(db, { id: Number(row.id), email: row.email }); // sessions, tokens, gateways' caches (slice auth, #11)
  await writeAudit(db, { actor: CLI_ACTOR, action: 'user_password', target: `user:${row.id}`, details: { email: row.email } });
  return { id: Number(row.id), email: row.email };
}

// ---------------------------------------------------------------------------------------------
// Who may call

function isLoopback(addr: string | undefined): boolean {
  if (!addr) return false;
  const a = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

/**
 * A caller on this host: loopback, or a connection whose two ends are the same address (the
 * server bound to one LAN address is reached from itself that way). A remote peer cannot
 * complete a TCP handshake with our own address as its source.
 */
export function isLocalCaller(req: FastifyRequest): boolean {
  const remote = req.socket?.remoteAddress;
  if (isLoopback(remote)) return true;
  const local = req.socket?.localAddress;
  return !!remote && !!local && remote === local;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time: both sides hashed to the same length first. */
function tokenMatches(given: string, expected: string | null): boolean {
  if (!expected) return false;
  return timingSafeEqual(digest(given), digest(expected));
}

function controlUrl(addr: AddressInfo | string | null): string | null {
  if (!addr || typeof addr === 'string') return null; // a Unix socket: nothing the CLI's fetch can reach
  let host = addr.address;
  if (host === '0.0.0.0') host = '127.0.0.1';
  else if (host === '::') host = '::1';
  return `http://${bracketHost(host)}:${addr.port}`;
}

/** Written whole or not at all: a reader never sees half a token. */
function writeControlFile(file: string, content: ControlFile): void {
  writeFileAtomicSync(file, JSON.stringify(content) + '\n', 0o600);
}

export function readControlFile(dataDir: string): ControlFile | null {
  try {
    const c = JSON.parse(readFileSync(path.join(dataDir, CONTROL_FILE), 'utf8')) as Partial<ControlFile>;
    if (typeof c.url !== 'string' || typeof c.token !== 'string' || typeof c.pid !== 'number') return null;
    return { url: c.url, token: c.token, pid: c.pid };
  } catch {
    return null;
  }
}

/**
 * Publishes the control endpoint once the app listens and withdraws it on close. Called on the
 * root instance (onListen hooks of encapsulated plugins do not see the root's listen reliably).
 */
export function installControlFile(app: FastifyInstance, dataDir: string, state: { token: string | null }): void {
  const file = path.join(dataDir, CONTROL_FILE);
  app.addHook('onListen', async function () {
    const url = controlUrl(app.server.address());
    if (!url) return;
    state.token = randomBytes(32).toString('base64url');
    try {
      writeControlFile(file, { url, token: state.token, pid: process.pid });
    } catch (err) {
      // The server still runs; only `schoolgate users` while it runs is affected.
      app.log.warn({ err: (err as Error).message, file }, 'control file not written: the CLI cannot reach this server');
    }
  });
  app.addHook('onClose', async () => {
    const token = state.token;
    state.token = null;
    // Another server may have taken the folder over since: only remove the file if it is ours.
    if (token && readControlFile(dataDir)?.token === token) rmSync(file, { force: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Routes

export const controlRoutes: FastifyPluginAsync<AdminContext & { control: { token: string | null } }> = async (app, ctx) => {
  const { db } = ctx;

  // 'public' for installAuth (no user session applies here); the control token is checked below.
  app.addHook('onRequest', async (req) => {
    if (!isLocalCaller(req)) throw new SchoolgateError('SG_ERR_FORBIDDEN', 'the control endpoint answers callers on this host only');
    const auth = req.headers.authorization ?? '';
    const given = /^bearer /i.test(auth) ? auth.slice(7).trim() : '';
    if (!given || !tokenMatches(given, ctx.control.token)) throw new SchoolgateError('SG_ERR_UNAUTHENTICATED', 'control token missing or wrong');
  });

  const common = { config: { access: 'public' as const } };
  const hidden = { hide: true, tags: ['internal'] };
  const userRow = { type: 'object', properties: { id: { type: 'integer' }, email: { type: 'string' }, role: { type: 'string' }, disabled: { type: 'boolean' } } } as const;
  const refusals = { 400: errorSchema, 401: errorSchema, 403: errorSchema };

  app.get('/api/control/users', {
    ...common,
    schema: { ...hidden, summary: 'Internal: `schoolgate users list`', response: { 200: { type: 'object', properties: { items: { type: 'array', items: userRow } } }, ...refusals } },
  }, async () => ({ items: await cliListUsers(db) }));

  app.post<{ Body: { email: string; role: string; password: string } }>('/api/control/users', {
    ...common,
    schema: {
      ...hidden,
      summary: 'Internal: `schoolgate users add`',
      body: {
        type: 'object',
        required: ['email', 'role', 'password'],
        properties: { email: { type: 'string', maxLength: 254 }, role: { type: 'string', maxLength: 64 }, password: { type: 'string', maxLength: 1024 } },
      },
      response: { 200: { type: 'object', properties: { user: userRow } }, ...refusals, 409: errorSchema },
    },
  }, async (req) => {
    const user = await cliAddUser(db, req.body);
    return { user: { id: user.id, email: user.email, role: user.role, disabled: false } };
  });

  app.post<{ Body: { email: string; password: string } }>('/api/control/users/passwd', {
    ...common,
    schema: {
      ...hidden,
      summary: 'Internal: `schoolgate users passwd`',
      body: {
        type: 'object',
        required: ['email', 'password'],
        properties: { email: { type: 'string', maxLength: 254 }, password: { type: 'string', maxLength: 1024 } },
      },
      response: { 200: { type: 'object', properties: { user: { type: 'object', properties: { id: { type: 'integer' }, email: { type: 'string' } } } } }, ...refusals, 404: errorSchema },
    },
  }, async (req) => ({ user: await cliChangePassword(db, req.body) }));
};
