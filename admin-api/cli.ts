import { loadConfig, type CliValues } from '../core/config';
import { SchoolgateError } from '../core/errors';
import { createLogger } from '../core/log';
import { openDbFromConfig } from '../incidents/db';
import { migrate } from '../incidents/migrate';
import { writeAudit } from '../incidents/queries';
import { createUser, generatePassword, hashPassword, ROLES, validateRole } from './auth';

const usage = `schoolgate users add EMAIL --role ROLE     password on stdin, or generated and printed once
schoolgate users passwd EMAIL              new password the same way; ends the user's sessions
schoolgate users list
Roles: ${ROLES.join(', ')}
`;

/** The first line piped on stdin, or null when stdin is a terminal or empty. */
async function passwordFromStdin(stdin: NodeJS.ReadStream = process.stdin): Promise<string | null> {
  if (stdin.isTTY) return null;
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  const first = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0];
  return first.length ? first : null;
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
  const db = await openDbFromConfig(config, logger);
  try {
    await migrate(db, { logger });
    if (sub === 'list') {
      const r = await db.query<{ id: number; email: string; role: string; disabled: boolean }>(
        'SELECT id, email, role, disabled FROM users ORDER BY lower(email)',
      );
      for (const u of r.rows) process.stdout.write(`${u.id}\t${u.email}\t${u.role}${u.disabled ? '\tdisabled' : ''}\n`);
      return 0;
    }
    const piped = await passwordFromStdin();
    const password = piped ?? generatePassword();
    if (sub === 'passwd') {
      // The way back in when the only DSL has forgotten their password: needs the server, not the console.
      if (password.length < 8) throw new SchoolgateError('SG_ERR_VALIDATION', 'password must be at least 8 characters');
      const r = await db.query<{ id: number; email: string }>('UPDATE users SET password_hash = $2 WHERE lower(email) = lower($1) RETURNING id, email', [
        email,
        await hashPassword(password),
      ]);
      const u = r.rows[0];
      if (!u) throw new SchoolgateError('SG_ERR_NOT_FOUND', `no user ${email}`);
      await db.query('DELETE FROM sessions WHERE user_id = $1', [u.id]);
      await writeAudit(db, { actor: { id: null, email: 'cli' }, action: 'user_password', target: `user:${u.id}`, details: { email: u.email } });
      process.stdout.write(`password changed for ${u.email}\n`);
      if (!piped) process.stdout.write(`password: ${password}\n`);
      return 0;
    }
    const user = await createUser(db, { email, role: role!, password });
    await writeAudit(db, { actor: { id: null, email: 'cli' }, action: 'user_add', target: `user:${user.id}`, details: { email: user.email, role: user.role } });
    process.stdout.write(`added ${user.email} (${user.role})\n`);
    // Shown this once only: only its hash is stored.
    if (!piped) process.stdout.write(`password: ${password}\n`);
    return 0;
  } finally {
    await db.close();
  }
}

function validateRoleForCli(role: string | undefined): (typeof ROLES)[number] {
  if (!role) throw new SchoolgateError('SG_ERR_USAGE', `--role is required (${ROLES.join(', ')})`);
  try {
    return validateRole(role);
  } catch (err) {
    throw new SchoolgateError('SG_ERR_USAGE', (err as Error).message);
  }
}
