import { Agent, request } from 'undici';
import { loadConfig, type CliValues, type Config } from '../core/config';
import { codes, isSchoolgateError, SchoolgateError, type ErrorCode } from '../core/errors';
import { createLogger } from '../core/log';
import { openDbFromConfig } from '../db/db';
import { migrate } from '../db/migrate';
import type { Db } from '../db/types';
import { generatePassword, ROLES, validateRole } from './auth';
import { cliAddUser, cliChangePassword, cliListUsers, readControlFile, type CliUserRow } from './routes/control';

const usage = `schoolgate users add EMAIL --role ROLE     password on stdin, or generated and printed once
schoolgate users passwd EMAIL              new password the same way; ends the user's sessions
schoolgate users list
Roles: ${ROLES.join(', ')}
While \`schoolgate start\` runs on the same data folder (embedded database), these go through it.
`;

/** The first line piped on stdin, or null when stdin is a terminal or empty. */
async function passwordFromStdin(stdin: NodeJS.ReadStream = process.stdin): Promise<string | null> {
  if (stdin.isTTY) return null;
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  const first = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0];
  return first.length ? first : null;
}

type Sub = 'add' | 'list' | 'passwd';

/** The three operations, wherever they run: on the database, or by the server holding it. */
interface UserOps {
  list(): Promise<CliUserRow[]>;
  add(u: { email: string; role: string; password: string }): Promise<{ email: string; role: string }>;
  passwd(u: { email: string; password: string }): Promise<{ email: string }>;
}

export async function usersCommand(args: string[], values: CliValues): Promise<number> {
  const [sub, email] = args;
  if (sub !== 'add' && sub !== 'list' && sub !== 'passwd') {
    process.stderr.write(usage);
    throw new SchoolgateError('SG_ERR_USAGE', sub ? `unknown users subcommand "${sub}"` : 'users needs a subcommand');
  }
  if ((sub === 'add' || sub === 'passwd') && !email) throw new SchoolgateError('SG_ERR_USAGE', `users ${sub} needs an EMAIL`);
  const role = sub === 'add' ? validateRoleForCli(values.role) : null;

  const config = loadConfig(values);
  const logger = createLogger({ level: config.logLevel === 'info' ? 'warn' : config.logLevel });
  let db: Db;
  try {
    db = await openDbFromConfig(config, logger);
  } catch (err) {
    const holder = lockHolder(err);
    if (holder === null || config.databaseUrl) throw err;
    // `schoolgate start` holds the embedded database: it does the work for us.
    return run(sub, email, role, serverOps(config, holder));
  }
  try {
    await migrate(db, { logger });
    return await run(sub, email, role, {
      list: () => cliListUsers(db),
      add: (u) => cliAddUser(db, u),
      passwd: (u) => cliChangePassword(db, u),
    });
  } finally {
    await db.close();
  }
}

async function run(sub: Sub, email: string | undefined, role: string | null, ops: UserOps): Promise<number> {
  if (sub === 'list') {
    for (const u of await ops.list()) process.stdout.write(`${u.id}\t${u.email}\t${u.role}${u.disabled ? '\tdisabled' : ''}\n`);
    return 0;
  }
  const piped = await passwordFromStdin();
  const password = piped ?? generatePassword();
  if (sub === 'passwd') {
    const u = await ops.passwd({ email: email!, password });
    process.stdout.write(`password changed for ${u.email}\n`);
  } else {
    const u = await ops.add({ email: email!, role: role!, password });
    process.stdout.write(`added ${u.email} (${u.role})\n`);
  }
  // Shown this once only: only its hash is stored.
  if (!piped) process.stdout.write(`password: ${password}\n`);
  return 0;
}

/** The pid holding the embedded database's lock, when that is why it did not open. */
export function lockHolder(err: unknown): number | null {
  if (!isSchoolgateError(err, 'SG_ERR_DB_UNAVAILABLE')) return null;
  const pid = err.details?.lockedBy;
  return typeof pid === 'number' ? pid : null;
}

/** Calls the running server's control routes (see routes/control.ts) on behalf of a CLI command. */
export function controlCaller(config: Config, holder: number): <T>(method: 'GET' | 'POST', route: string, body?: unknown) => Promise<T> {
  const inUse = (why: string) =>
    new SchoolgateError(
      'SG_ERR_DB_LOCKED',
      `the embedded database in ${config.dataDir} is in use by process ${holder}, and ${why}. ` +
        'If that is `schoolgate start`, check it is running and try again; otherwise stop that process, or set DATABASE_URL to use a PostgreSQL server',
    );
  const control = readControlFile(config.dataDir);
  // A control file left by a server that died must not send a password to whatever listens there now.
  if (!control || control.pid !== holder) throw inUse('it has published no control endpoint (control.json)');

  // The control routes answer on the data folder's Unix socket only (see routes/control.ts).
  const agent = new Agent({ connect: { socketPath: control.socket } });
  const call = async <T>(method: 'GET' | 'POST', route: string, body?: unknown): Promise<T> => {
    let status: number;
    let json: { error?: { code?: string; message?: string } } | null;
    try {
      const res = await request(new URL(route, 'http://localhost'), {
        method,
        dispatcher: agent,
        headers: { authorization: `Bearer ${control.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      status = res.statusCode;
      json = (await res.body.json().catch(() => null)) as typeof json;
    } catch (err) {
      throw inUse(`its control socket ${control.socket} cannot be reached (${(err as Error).message})`);
    } finally {
      void agent.close().catch(() => {});
    }
    if (status >= 200 && status < 300 && json) return json as T;
    const code = json?.error?.code;
    if (code && code in codes) throw remoteError(code as ErrorCode, json?.error?.message ?? '');
    throw inUse(`its control socket answered HTTP ${status}`);
  };
  return call;
}

function serverOps(config: Config, holder: number): UserOps {
  const call = controlCaller(config, holder);
  return {
    list: async () => (await call<{ items: CliUserRow[] }>('GET', '/api/control/users')).items,
    add: async (u) => (await call<{ user: { email: string; role: string } }>('POST', '/api/control/users', u)).user,
    passwd: async (u) => (await call<{ user: { email: string } }>('POST', '/api/control/users/passwd', u)).user,
  };
}

/** The server's error as the direct path would have thrown it (its message already carries the code's text). */
function remoteError(code: ErrorCode, message: string): SchoolgateError {
  const prefix = `${codes[code]}: `;
  const rest = message === codes[code] ? undefined : message.startsWith(prefix) ? message.slice(prefix.length) : message;
  return new SchoolgateError(code, rest);
}

function validateRoleForCli(role: string | undefined): (typeof ROLES)[number] {
  if (!role) throw new SchoolgateError('SG_ERR_USAGE', `--role is required (${ROLES.join(', ')})`);
  try {
    return validateRole(role);
  } catch (err) {
    throw new SchoolgateError('SG_ERR_USAGE', (err as Error).message);
  }
}
