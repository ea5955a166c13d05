/**
 * The local control channel. The embedded database (PGlite) can be opened by one process only, so
 * while `schoolgate start` runs, `schoolgate users add|list|passwd` cannot open it: they find
 * `<dataDir>/control.json` (written when the admin API starts listening, mode 0600) and ask the
 * running server, over the Unix socket `<dataDir>/control.sock` (mode 0600) that file names, to do
 * the work. The routes live on that socket only, never on the admin API's TCP port: "from
 * loopback" proved nothing, since the gateway relays requests from loopback and every local user
 * can connect there. They also require the token in control.json, and are not in /docs.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import { isSchoolgateError, SchoolgateError, type ErrorCode } from '../../core/errors';
import { writeFileAtomicSync } from '../../core/files';
import { writeAudit } from '../../repos/audit';
import { listUsers, setPasswordHashByEmail } from '../../repos/accounts';
import type { Db, Queryable } from '../../db/types';
import { createUser, hashPassword, revokeCredentials, validateRole, type AuthUser } from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema } from '../present';
import { importCsv, type ImportKind } from '../../directory/import';

export const CONTROL_FILE = 'control.json';
export const CONTROL_SOCKET = 'control.sock';

/** What `<dataDir>/control.json` holds. */
export interface ControlFile {
  /** The Unix socket the control routes answer on. */
  socket: string;
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
  return (await listUsers(db)).map((u) => ({ id: Number(u.id), email: u.email, role: u.role, disabled: u.disabled }));
}

export async function cliAddUser(db: Queryable, u: { email: string; role: string; password: string }): Promise<AuthUser> {
  const user = await createUser(db, { email: u.email, role: validateRole(u.role), password: u.password });
  await writeAudit(db, { actor: CLI_ACTOR, action: 'user_add', target: `user:${user.id}`, details: { email: user.email, role: user.role } });
  return user;
}

/** The way back in when the only DSL has forgotten their password; ends the user's sessions and API tokens. */
export async function cliChangePassword(db: Db, u: { email: string; password: string }): Promise<{ id: number; email: string }> {
  if (u.password.length < 8) throw new SchoolgateError('SG_ERR_VALIDATION', 'password must be at least 8 characters');
  const row = await setPasswordHashByEmail(db, u.email, await hashPassword(u.password));
  if (!row) throw new SchoolgateError('SG_ERR_NOT_FOUND', `no user ${u.email}`);
  await revokeCredentials(db, { id: Number(row.id), email: row.email }); // sessions, tokens, gateways' caches (slice auth, #11)
  await writeAudit(db, { actor: CLI_ACTOR, action: 'user_password', target: `user:${row.id}`, details: { email: row.email } });
  return { id: Number(row.id), email: row.email };
}

// ---------------------------------------------------------------------------------------------
// Who may call: whoever can open a 0600 socket in the data folder and read the 0600 token file,
// i.e. the account the server runs as (and root). Not "anything from loopback": a request relayed
// by the gateway, or any local user, comes from loopback too.

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time: both sides hashed to the same length first. */
function tokenMatches(given: string, expected: string | null): boolean {
  if (!expected) return false;
  return timingSafeEqual(digest(given), digest(expected));
}

/** Written whole or not at all: a reader never sees half a token. */
function writeControlFile(file: string, content: ControlFile): void {
  writeFileAtomicSync(file, JSON.stringify(content) + '\n', 0o600);
}

export function readControlFile(dataDir: string): ControlFile | null {
  try {
    const c = JSON.parse(readFileSync(path.join(dataDir, CONTROL_FILE), 'utf8')) as Partial<ControlFile>;
    if (typeof c.socket !== 'string' || typeof c.token !== 'string' || typeof c.pid !== 'number') return null;
    return { socket: c.socket, token: c.token, pid: c.pid };
  } catch {
    return null;
  }
}

/** True when something answers on the socket: another live server owns it, so it is not ours to remove. */
function socketAnswers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(file);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Maps the catalogue's codes onto statuses for the CLI; it matches on the code, the status is for people. */
const CONTROL_STATUS: Partial<Record<ErrorCode, number>> = {
  SG_ERR_UNAUTHENTICATED: 401,
  SG_ERR_VALIDATION: 400,
  SG_ERR_USAGE: 400,
  SG_ERR_NOT_FOUND: 404,
  SG_ERR_USER_EXISTS: 409,
  SG_ERR_EXISTS: 409,
  SG_ERR_DB_UNAVAILABLE: 503,
  SG_ERR_IMPORT: 400,
};

/** The control server on its own: tests and `installControl` listen it on the socket. */
export async function buildControlApp(ctx: AdminContext, state: { token: string | null }): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: ctx.logger as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    ajv: { customOptions: { removeAdditional: true, coerceTypes: 'array', useDefaults: true } },
  });
  app.setErrorHandler((err: FastifyError | SchoolgateError, req, reply) => {
    if (isSchoolgateError(err)) {
      reply.code(CONTROL_STATUS[err.code] ?? 500).send({ error: { code: err.code, message: err.message } });
    } else if ((err as FastifyError).validation) {
      reply.code(400).send({ error: { code: 'SG_ERR_VALIDATION', message: err.message } });
    } else {
      req.log.error({ err, url: req.url, method: req.method }, 'control request failed');
      reply.code(500).send({ error: { code: 'SG_ERR_INTERNAL', message: 'internal error; see the server log' } });
    }
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ error: { code: 'SG_ERR_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` } });
  });
  await app.register(controlRoutes, { ...ctx, control: state });
  return app;
}

/**
 * Runs the control server on `<dataDir>/control.sock` (0600) once the admin API listens, publishes
 * `control.json`, and withdraws both on close. The admin API's TCP port carries no control route.
 * Called on the root instance (onListen hooks of encapsulated plugins do not see the root's listen
 * reliably).
 */
export function installControl(app: FastifyInstance, ctx: AdminContext): void {
  const dataDir = ctx.config.dataDir;
  const file = path.join(dataDir, CONTROL_FILE);
  const socket = path.join(dataDir, CONTROL_SOCKET);
  const state = { token: null as string | null };
  let server: FastifyInstance | null = null;

  app.addHook('onListen', async function () {
    try {
      if (existsSync(socket)) {
        if (await socketAnswers(socket)) throw new Error(`another process answers on ${socket}`);
        // Left by a server that was killed: a stale socket file makes listen fail with EADDRINUSE.
        unlinkSync(socket);
      }
      server = await buildControlApp(ctx, state);
      await server.listen({ path: socket });
      // The token is published only after this, so a caller racing the chmod has no token to send.
      chmodSync(socket, 0o600);
      state.token = randomBytes(32).toString('base64url');
      writeControlFile(file, { socket, token: state.token, pid: process.pid });
    } catch (err) {
      // The server still runs; only `schoolgate users` while it runs is affected.
      state.token = null;
      app.log.warn({ err: (err as Error).message, file }, 'control socket not available: the CLI cannot reach this server');
      await server?.close().catch(() => {});
      server = null;
    }
  });
  app.addHook('onClose', async () => {
    const token = state.token;
    state.token = null;
    if (server) {
      await server.close();
      server = null;
    }
    // Another server may have taken the folder over since: only remove the file if it is ours.
    if (token && readControlFile(dataDir)?.token === token) rmSync(file, { force: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Routes

export const controlRoutes: FastifyPluginAsync<AdminContext & { control: { token: string | null } }> = async (app, ctx) => {
  const { db } = ctx;

  app.addHook('onRequest', async (req) => {
    const auth = req.headers.authorization ?? '';
    const given = /^bearer /i.test(auth) ? auth.slice(7).trim() : '';
    if (!given || !tokenMatches(given, ctx.control.token)) throw new SchoolgateError('SG_ERR_UNAUTHENTICATED', 'control token missing or wrong');
  });

  const hidden = { hide: true, tags: ['internal'] };
  const userRow = { type: 'object', properties: { id: { type: 'integer' }, email: { type: 'string' }, role: { type: 'string' }, disabled: { type: 'boolean' } } } as const;
  const refusals = { 400: errorSchema, 401: errorSchema, 403: errorSchema };

  app.get('/api/control/users', {
    schema: { ...hidden, summary: 'Internal: `schoolgate users list`', response: { 200: { type: 'object', properties: { items: { type: 'array', items: userRow } } }, ...refusals } },
  }, async () => ({ items: await cliListUsers(db) }));

  app.post<{ Body: { email: string; role: string; password: string } }>('/api/control/users', {
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

  // The CLI has already reported the file's bad lines; the text is checked again here all the same.
  app.post<{ Body: { kind: ImportKind; csv: string; file: string } }>('/api/control/import', {
    bodyLimit: 32 * 1024 * 1024,
    schema: {
      ...hidden,
      summary: 'Internal: `schoolgate people import` / `devices import`',
      body: {
        type: 'object',
        required: ['kind', 'csv', 'file'],
        properties: { kind: { type: 'string', enum: ['people', 'devices'] }, csv: { type: 'string' }, file: { type: 'string', maxLength: 4096 } },
      },
      response: { 200: { type: 'object', properties: { imported: { type: 'integer' }, removed: { type: 'integer' } } }, ...refusals },
    },
  }, async (req) => importCsv(db, req.body.kind, req.body.csv, req.body.file));

  app.post<{ Body: { email: string; password: string } }>('/api/control/users/passwd', {
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
