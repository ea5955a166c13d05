import { existsSync, statSync } from 'node:fs';
import { secureDataDir } from '../core/files';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from '../admin-api/app';
import { policyFor, reloadStore, startListSync } from '../admin-api/list-sync';
import { ListStore } from '../blocklists/store';
import type { ListSet } from '../blocklists/types';
import { defaultListsDir, progressBar, updateLists } from '../blocklists/update';
import { caCertPath, ensureCa } from '../certs/ca';
import { LeafCertificates } from '../certs/leaf';
import { adminBaseUrl, loadConfig, type CliValues, type Config } from '../core/config';
import { createLogger, type Logger } from '../core/log';
import { openDb } from '../incidents/db';
import { migrate } from '../incidents/migrate';
import { loadReferenceSecret } from '../incidents/reference';
import { scheduleRetention } from '../incidents/retention';
import type { Db } from '../incidents/types';
import { IncidentWriter } from '../incidents/writer';
import { createGateway, type Gateway } from './gateway';
import { ClientIdentifier, usersTableLookup } from './identify';
import type { Policy } from './decide';
import { SearchKeywords } from './keywords';
import { bracketHost } from '../core/host';

export interface StartOptions {
  logger?: Logger;
  /** Where the startup banner goes (default stdout). */
  out?: NodeJS.WritableStream;
  /** Progress of the first-run list download (default: a bar on stderr when it is a terminal). */
  progress?: NodeJS.WritableStream | null;
  /** Extra CAs trusted for upstream TLS: tests' local HTTPS origins. */
  upstreamCa?: string[];
  /** DNS for upstream connections (tests send every name to loopback). */
  upstreamLookup?: import('node:net').LookupFunction;
}

export interface SchoolgateHandle {
  config: Config;
  proxyPort: number;
  adminPort: number;
  caCertPem: string;
  /** True while no lists are loaded and every request gets the "not ready" page. */
  readonly failClosed: boolean;
  /** Console accounts at start: none means nobody can sign in yet, and the banner says how to fix it. */
  accounts: number;
  db: Db;
  incidents: IncidentWriter;
  lists: ListStore;
  gateway: Gateway;
  admin: FastifyInstance;
  close(): Promise<void>;
}

/**
 * Everything `schoolgate start` runs, in one process: CA, database, incident writer, lists, admin
 * API and the gateway. Tests call it in-process; the CLI wraps it with signals and a banner.
 */
export async function startSchoolgate(input: Config, opts: StartOptions = {}): Promise<SchoolgateHandle> {
  const logger = opts.logger ?? createLogger({ level: input.logLevel });
  const out = opts.out ?? process.stdout;
  // Before anything is created in it: the database, spool and keys are for this user alone.
  const { tightened } = secureDataDir(input.dataDir);
  if (tightened.length) logger.warn({ files: tightened.length, first: tightened.slice(0, 5) }, 'data folder permissions tightened to owner-only');
  const { ca, created } = ensureCa(input.dataDir);
  if (created) logger.info({ file: caCertPath(input.dataDir) }, 'school CA created');
  const leaf = new LeafCertificates({ ca, dataDir: input.dataDir });
  const referenceSecret = loadReferenceSecret(input.dataDir);

  // Lists given on the command line, else the data folder's (fetched on first run).
  const usesDataLists = input.lists.length === 0;
  const dataLists = defaultListsDir(input.dataDir);
  const config: Config = usesDataLists ? { ...input, lists: [dataLists] } : input;
  if (usesDataLists && !existsSync(dataLists)) {
    out.write(`No lists configured: fetching the UT1 lists from ${input.listsUpdateUrl}\n`);
    const progress = opts.progress === undefined ? (process.stderr.isTTY ? process.stderr : null) : opts.progress;
    try {
      await updateLists({ from: input.listsUpdateUrl, dataDir: input.dataDir, onProgress: progress ? progressBar(progress, 'fetching UT1 lists') : undefined });
      progress?.write('\n');
    } catch (err) {
      progress?.write('\n');
      logger.warn({ err: (err as Error).message }, 'first-run list download failed: starting fail-closed');
    }
  }
  const sources = config.lists.filter((s) => !usesDataLists || existsSync(s));

  const db = await openDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, logger });
  const cleanups: Array<() => Promise<void> | void> = [async () => db.close()];
  const closeAll = async () => {
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'error while shutting down');
      }
    }
  };
  try {
    await migrate(db, { logger });
    const incidents = new IncidentWriter({ db, dataDir: config.dataDir, logger, gateway: os.hostname(), maxQueued: config.incidentQueueMax });
    incidents.start();
    cleanups.push(() => incidents.close());

    const lists = await ListStore.open({ sources, cacheDir: path.join(config.dataDir, 'cache'), logger });
    const stopSync = await startListSync({ db, store: lists, config, logger });
    cleanups.push(stopSync);
    if (usesDataLists) cleanups.push(watchDataLists(dataLists, () => reloadStore(db, lists, config), logger));
    cleanups.push(scheduleRetention(db, { days: config.retentionDays, logger }));

    // One view over the live store (its overrides included); null while nothing is loaded: fail closed.
    const live: ListSet = {
      get categories() {
        return lists.current.categories;
      },
      classify: (url, block, allow) => lists.classify(url, block, allow ?? []),
      matches: (url) => lists.current.matches(url),
    };
    const policy: Policy = {
      lists: () => (lists.loaded ? live : null),
      categoriesFor: (group) => policyFor(lists, group, config),
      allowCategories: config.allowCategories,
      bypassHosts: config.bypassHosts.map((h) => h.toLowerCase().replace(/^\*?\./, '')),
    };

    // Read from the configured folders as they are now: the data folder's lists may only appear
    // after a fail-closed first start, with `lists update`.
    const loadKeywords = () => SearchKeywords.load(config.lists.filter((s) => existsSync(s)), null, logger);
    const keywords = loadKeywords();
    lists.on('reload', () => keywords.replaceWith(loadKeywords()));

    // One config object shared with the admin API: ports chosen by the OS (0) are written back
    // into it once known, so /proxy.pac and the block page name the real ones.
    const effective: Config = { ...config };
    let gatewayRef: Gateway | null = null;
    const admin = await buildAdminApp({
      config: effective, db, incidents, lists, logger, referenceSecret, caCertPem: () => ca.certPem,
      writerStats: () => incidents.stats(), gatewayStats: () => gatewayRef?.stats ?? null,
    });
    cleanups.push(() => admin.close());
    await admin.listen({ port: config.adminPort, host: config.listen });
    const adminPort = (admin.server.address() as { port: number }).port;
    effective.adminPort = adminPort;

    const gateway = createGateway({
      leaf,
      policy,
      identifier: new ClientIdentifier(config, usersTableLookup(db)),
      incidents,
      referenceSecret,
      friendlyName: (c) => lists.current.categories.get(c)?.friendlyName ?? null,
      adminBaseUrl: adminBaseUrl(effective),
      safeSearch: config.safeSearch,
      flagCategories: config.highSeverityCategories,
      keywords,
      logger,
      gatewayName: os.hostname(),
      upstreamCa: opts.upstreamCa,
      upstreamLookup: opts.upstreamLookup,
    });
    gatewayRef = gateway;
    const addr = await gateway.listen(config.proxyPort, config.listen);
    cleanups.push(() => gateway.close());
    effective.proxyPort = addr.port;

    return {
      config: effective,
      proxyPort: addr.port,
      adminPort,
      caCertPem: ca.certPem,
      get failClosed() {
        return !lists.loaded;
      },
      db,
      incidents,
      lists,
      gateway,
      admin,
      accounts: Number((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM users WHERE NOT disabled')).rows[0].n),
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/**
 * `schoolgate lists update` runs in another process and swaps the data folder's lists in by
 * rename: notice the new folder and reload, which is also how a fail-closed gateway comes back.
 */
function watchDataLists(dir: string, reload: () => Promise<{ entries: number }>, logger: Logger): () => void {
  const stamp = () => {
    try {
      const s = statSync(dir);
      return `${s.ino}:${s.mtimeMs}`;
    } catch {
      return null;
    }
  };
  let seen = stamp();
  const timer = setInterval(() => {
    const now = stamp();
    if (now === null || now === seen) return;
    seen = now;
    // Reload every source (the console's too), not just this folder.
    reload().then(
      (r) => logger.info({ entries: r.entries }, 'data folder lists reloaded'),
      (err) => logger.error({ err: (err as Error).message }, 'data folder lists not reloaded'),
    );
  }, 3000);
  timer.unref();
  return () => clearInterval(timer);
}

export function banner(h: SchoolgateHandle): string {
  const c = h.config;
  const host = c.listen === '0.0.0.0' || c.listen === '::' ? os.hostname() : c.listen;
  const consoleUrl = adminBaseUrl(c);
  const lines = [
    'schoolgate is running',
    `  proxy:          http://${bracketHost(host)}:${h.proxyPort}   (browsers: ${consoleUrl}/proxy.pac)`,
    `  console:        ${consoleUrl}`,
    `  CA certificate: ${caCertPath(c.dataDir)}   (also ${consoleUrl}/ca.crt; deploy it to every device)`,
    `  data folder:    ${c.dataDir}   (${c.databaseUrl ? 'PostgreSQL from DATABASE_URL' : 'embedded database'})`,
  ];
  if (h.accounts === 0) {
    lines.push(
      '',
      '  No console accounts yet. Create the safeguarding lead\'s (password on stdin, or one is generated):',
      `    npx schoolgate users add dsl@your-school --role safeguarding_lead --data-dir ${c.dataDir}`,
    );
  }
  if (h.failClosed) {
    lines.push(
      '',
      '  !! NO LISTS LOADED: every request gets a "web filter not ready" page (fail-closed).',
      `  !! Load lists with: schoolgate lists update --from DIR|URL --data-dir ${c.dataDir}`,
      '  !! (or restart with --lists DIR); the gateway picks them up by itself.',
    );
  } else {
    lines.push(`  lists:          ${h.lists.report.entries} entries in ${h.lists.report.categories.length} categories`);
  }
  return `${lines.join('\n')}\n`;
}

/** `schoolgate start`: runs in the foreground until SIGINT/SIGTERM, then flushes incidents and stops. */
export async function startCommand(_args: string[], values: CliValues): Promise<number> {
  const config = loadConfig(values);
  const logger = createLogger({ level: config.logLevel });
  const handle = await startSchoolgate(config, { logger });
  process.stdout.write(banner(handle));
  // Every device in school goes through this process: a bug on one connection (ours or a
  // library's) is logged and that connection lost, rather than the whole school's web.
  process.on('uncaughtException', (err) => logger.fatal({ err }, 'uncaught exception; the gateway keeps running'));
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled promise rejection'));
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping');
      handle.close().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGHUP', () => {
      reloadStore(handle.db, handle.lists, handle.config).then(
        (r) => logger.info({ entries: r.entries }, 'lists reloaded (SIGHUP)'),
        (err) => logger.error({ err: (err as Error).message }, 'lists not reloaded'),
      );
    });
  });
}
