#!/usr/bin/env -S node --import=tsx
import { flagsUsage, parseCli, loadConfig, type CliValues } from '../core/config';
import { SchoolgateError, isSchoolgateError } from '../core/errors';
import { secureDataDir } from '../core/files';

/**
 * Every command and subcommand with what it does, printed by `schoolgate --help`. Typed over
 * `commands`, so a command added there without its help does not compile; the CLI test runs each
 * line's command to check the help names only what exists.
 */
const commandHelp: Record<keyof typeof commands, Array<[usage: string, help: string]>> = {
  start: [['start [--lists DIR ...] [--categories a,b] [--listen ADDR] [--proxy-port 3128] [--admin-port 8081]', 'gateway + console in the foreground (SIGHUP reloads lists)']],
  check: [['check --lists DIR [--categories a,b]', 'URLs on stdin -> "block<TAB>category" or "pass"']],
  lists: [
    ['lists update [--from DIR|FILE.tar.gz|URL] [--accept-shrink]', 'load category lists into the data folder'],
    ['lists show', 'print the data folder lists\' load report'],
  ],
  ca: [
    ['ca init [--force] [--key-type ec|rsa]', 'create the school CA devices must trust'],
    ['ca export [--der]', 'print the school CA certificate'],
  ],
  users: [
    ['users add EMAIL --role ROLE', 'console account; password on stdin (or generated and printed once)'],
    ['users passwd EMAIL', 'set a console account\'s password (stdin, or generated)'],
    ['users list', 'console accounts with their roles'],
  ],
  migrate: [['migrate', 'apply database migrations (start does it too)']],
  people: [['people import FILE.csv', 'people from the school MIS (email, name, year group, form, group)']],
  devices: [['devices import FILE.csv', 'devices (mac and/or ip -> the person\'s email)']],
};

function usage(): string {
  const rows = Object.values(commandHelp).flat();
  const width = Math.min(46, Math.max(...rows.map(([u]) => u.length)) + 2);
  const lines = rows.map(([u, h]) => (u.length + 2 > width ? `  schoolgate ${u}\n  ${''.padEnd(width + 11)}${h}` : `  schoolgate ${u.padEnd(width)}${h}`));
  return `schoolgate — a web filter for school networks

Usage (from the project folder, run each as \`npx schoolgate ...\`):
${lines.join('\n')}

Options:
${flagsUsage()}
DATABASE_URL selects PostgreSQL (otherwise an embedded PostgreSQL lives in <data-dir>/pglite);
most settings also have a config file key and a SCHOOLGATE_* variable (README, Configuration).
`;
}

export type Command = (args: string[], values: CliValues) => Promise<number | void>;

/** Each subcommand lives beside the code it drives; loaded on demand so `check` starts fast. */
const commands: Record<string, () => Promise<Command>> = {
  start: async () => (await import('../server/start')).startCommand,
  check: async () => (await import('../blocklists/cli')).checkCommand,
  lists: async () => (await import('../blocklists/cli')).listsCommand,
  ca: async () => (await import('../certs/cli')).caCommand,
  users: async () => (await import('../admin-api/cli')).usersCommand,
  migrate: async () => (await import('../db/cli')).migrateCommand,
  people: async () => (await import('../admin-api/import-cli')).peopleCommand,
  devices: async () => (await import('../admin-api/import-cli')).devicesCommand,
};

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv);
  const [name, ...rest] = positionals;
  if (!name || values.help) {
    process.stdout.write(usage());
    return name || values.help ? 0 : 2;
  }
  const load = commands[name];
  if (!load) throw new SchoolgateError('SG_ERR_USAGE', `unknown command "${name}"\n\n${usage()}`);
  const config = loadConfig(values); // fail early on a bad flag or config file, before any command starts work
  // Every command may write into the data folder (cache, lists, accounts, the CA): owner-only,
  // and what an older release left readable is tightened whichever command runs first.
  secureDataDir(config.dataDir, { create: false });
  const code = await (await load())(rest, values);
  return typeof code === 'number' ? code : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    if (isSchoolgateError(err)) {
      process.stderr.write(`schoolgate: ${err.code}: ${err.message}\n`);
      process.exitCode = err.code === 'SG_ERR_USAGE' ? 2 : 1;
    } else {
      process.stderr.write(`schoolgate: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
