import { existsSync, statSync } from 'node:fs';
import { secureDataDir } from '../core/files';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildAdminApp } from '../admin-api/app';
import { gatewayPages } from '../admin-api/gateway-pages';
import { getDummyHash, hashLoad, verifyPassword } from '../admin-api/auth';
import { checkConfiguredCategories, ListSync } from '../admin-api/list-sync';
import { PhraseSync } from '../admin-api/phrase-sync';
import { PhraseBook } from '../filter/phrase-book';
import { PolicyGroups } from '../blocklists/policy-groups';
import { friendlyCategoryName, schoolServices } from '../blocklists/profiles';
import { ListStore } from '../blocklists/store';
import type { ListSet } from '../blocklists/types';
import { defaultListsDir, progressBar, updateLists } from '../blocklists/update';
import { caCertPath, ensureCa } from '../certs/ca';
import { LeafCertificates } from '../certs/leaf';
import { adminBaseUrl, DEFAULT_FLAG_CATEGORIES, DEFAULT_RADIUS_EXPIRY_MINUTES, loadConfig, type CliValues, type Config } from '../core/config';
import { SchoolgateError } from '../core/errors';
import { watchCredentialChanges } from '../core/credentials';
import { createLogger, type Logger } from '../core/log';
import { openDb } from '../db/db';
import { isDbUnreachable } from '../db/errors';
import { migrate } from '../db/migrate';
import { countActiveUsers } from '../repos/accounts';
import { writeAudit } from '../repos/audit';
import { loadReferenceSecret } from '../incidents/reference';
import { scheduleRetention } from '../incidents/retention';
import type { Db } from '../db/types';
import { IncidentWriter } from '../incidents/writer';
import { BrowsingLog } from '../incidents/browsing-log';
import { createGateway, type Gateway } from '../filter/gateway';
import { ClientIdentifier, usersTableLookup, type ProxyAuthDeps } from '../filter/identify';
import { RadiusListener, RadiusSessions, readRadiusSecret } from '../filter/radius';
import type { Policy } from '../filter/decide';
import { SearchKeywords } from '../filter/keywords';
import { bracketHost } from '../core/host';
import { Destinations } from '../proxy/destinations';
import { LdapDirectory } from '../directory/ldap';
import { scheduleDeviceRefresh, scheduleDirectorySync } from '../directory/sync';

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
  /** Tests only (never from configuration): origins on loopback and any CONNECT port; the gateway's own ports stay refused. */
  allowLoopbackDestinationsForTests?: boolean;
}

export interface DatabaseState {
  /** Migrations applied and list sync running: the database was reachable at least once since start. */
  ready: boolean;
  /** The last error while it was not, for the console and the log (no connection string in it). */
  lastError: string | null;
}

export interface SchoolgateHandle {
  config: Config;
  proxyPort: number;
  adminPort: number;
  caCertPem: string;
  /** True while no lists are loaded and every request gets the "not ready" page. */
  readonly failClosed: boolean;
  /** Console accounts at start: none means nobody can sign in yet, and the banner says how to fix it. null: database away. */
  accounts: number | null;
  /** Whether the database has been reached (and migrated) since start; false while it is away. */
  readonly database: DatabaseState;
  db: Db;
  incidents: IncidentWriter;
  /** Null when `browsingLog` is off. */
  browsingLog: BrowsingLog | null;
  lists: ListStore;
  /** The console's list changes and the reloads of this process's store (SIGHUP uses it). */
  listSync: ListSync;
  gateway: Gateway;
  admin: FastifyInstance;
  /** The RADIUS accounting listener and the UDP port it is bound to; null when `radiusAccounting` is not set. */
  radius: { listener: RadiusListener; port: number } | null;
  /** The school's directory when `directory` is configured: its people sync, run now (tests, and the console's "sync now"). */
  directorySync: { runNow: () => Promise<{ people: number; removed: number }> } | null;
  /** Re-reads imported devices into the gateway now (otherwise every minute). */
  refreshDevices: () => Promise<void>;
  close(): Promise<void>;
}

/**
 * Everything `schoolgate start` runs, in one process: CA, database, incident writer, lists, admin
 * API and the gateway. Tests call it in-process; the CLI wraps it with signals and a banner.
 */
export async function startSchoolgate(input: Config, opts: StartOptions = {}): Promise<SchoolgateHandle> {
  const logger = opts.logger ?? createLogger({ level: input.logLevel });
  const out = opts.out ?? process.stdout;
  // A mistyped --lists stops the start before anything is made: otherwise a new install is left
  // with a data folder, a CA to trust and a gateway that blocks every page, and no word why.
  const missing = input.lists.filter((s) => !/^[a-z][a-z0-9+.-]*:\/\//i.test(s) && !existsSync(s));
  if (missing.length) {
    throw new SchoolgateError(
      'SG_ERR_CONFIG',
      `lists: ${missing.map((m) => JSON.stringify(m)).join(', ')} not found, so nothing was created. Check the path given with --lists (or the config file's "lists"), or leave it out to use the data folder's lists (schoolgate lists update --from DIR|URL)`,
    );
  }
  // A secret file that is missing or empty stops the start here too, before anything is created.
  const radiusSecret = input.radiusAccounting ? readRadiusSecret(input.radiusAccounting.secretFile) : null;
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
      await updateLists({ from: input.listsUpdateUrl, dataDir: input.dataDir, onProgress: progress ? progressBar(progress, 'fetching UT1 lists') : undefined, maxDownloadBytes: input.listDownloadMaxBytes, maxExtractBytes: input.listExtractMaxBytes });
      progress?.write('\n');
    } catch (err) {
      progress?.write('\n');
      logger.warn({ err: (err as Error).message }, 'first-run list download failed: starting fail-closed');
    }
  }
  const sources = config.lists.filter((s) => !usesDataLists || existsSync(s));

  // An external PostgreSQL that is down must not keep the school off the web: start, filter, and
  // keep incidents in the journal and spool until it is back (see connectDatabase below).
  const db = await openDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, logger, allowUnreachable: true });
  const cleanups: Array<() => Promise<void> | void> = [async () => db.close()];
  let closing = false;
  const closeAll = async () => {
    closing = true;
    for (const fn of cleanups.splice(0).reverse()) {
      try {
        await fn();
      } catch (err) {
        logger.warn({ err: (err as Error).message }, 'error while shutting down');
      }
    }
  };
  const database: DatabaseState = { ready: false, lastError: null };
  try {
    try {
      await migrate(db, { logger });
      database.ready = true;
    } catch (err) {
      if (!config.databaseUrl || !isDbUnreachable(err)) throw err;
      database.lastError = (err as Error).message;
    }
    const incidents = new IncidentWriter({
      db, dataDir: config.dataDir, logger, gateway: os.hostname(), maxQueued: config.incidentQueueMax, journalFsyncMs: config.incidentJournalFsyncMs,
      repeatWindowMs: config.incidentFoldMinutes * 60_000,
    });
    incidents.start();
    cleanups.push(() => incidents.close());

    const lists = await ListStore.open({ sources, cacheDir: path.join(config.dataDir, 'cache'), logger });
    // Always on unless the school says otherwise: UT1 files Teams under chat and Sparx under games.
    lists.setSchoolServices(config.schoolServices ? schoolServices().map((s) => s.domain) : null);
    // One of each per process: the filter reads the policy groups, list sync writes them, and the
    // admin API's changes and the sync share what this process already applied.
    const policies = new PolicyGroups(config, lists, logger);
    const listSync = new ListSync({ db, store: lists, policies, config, logger });
    // The safeguarding phrases: one matcher for the gateway and the console's changes to it.
    const phraseSync = new PhraseSync({ db, book: new PhraseBook(), logger });
    if (database.ready) {
      cleanups.push(await listSync.start());
      cleanups.push(await phraseSync.start());
    } else {
      logger.error(
        { code: 'SG_ERR_DB_UNAVAILABLE', err: database.lastError },
        'database unreachable at start: filtering with the configured lists and keeping incidents in the journal and spool; migrations and console list changes follow once it is back',
      );
      cleanups.push(
        connectDatabase(async () => {
          await migrate(db, { logger });
          const stop = await listSync.start();
          if (closing) await stop();
          else cleanups.push(stop);
          const stopPhrases = await phraseSync.start();
          if (closing) await stopPhrases();
          else cleanups.push(stopPhrases);
          database.ready = true;
          database.lastError = null;
          logger.warn('database reachable again: migrations applied, list sync started');
        }, (err) => (database.lastError = (err as Error).message), logger),
      );
    }
    checkConfiguredCategories(config, lists);
    // Works the shipped profile out now, so categories it does not know are named at start.
    if (!config.categories) policies.profileFor(config.defaultGroup);
    if (config.highSeverityCategories.length) {
      // Kept working (loadConfig mapped it), said once at start so the school moves it.
      logger.warn(
        { code: 'SG_ERR_CONFIG', highSeverityCategories: config.highSeverityCategories, mappedTo: Object.fromEntries(config.highSeverityCategories.map((c) => [c, config.severity.categories[c]])) },
        'highSeverityCategories is deprecated: its categories now alert as severity.categories (the newer setting wins where both name one); move them to "severity": { "categories": { "<category>": "alert" } }',
      );
    }
    if (usesDataLists) cleanups.push(watchDataLists(dataLists, () => listSync.reload(), logger));
    cleanups.push(scheduleRetention(db, { days: config.retentionDays, browsingLogDays: config.browsingLogRetentionDays, logger }));
    // Closed after the gateway (cleanups run in reverse), so its last requests are written too.
    const browsingLog = config.browsingLog
      ? new BrowsingLog({ db, logger, flushMs: config.browsingLogFlushMs, maxPending: config.browsingLogMaxPending }).start()
      : null;
    if (browsingLog) cleanups.push(() => browsingLog.close());

    // One view over the live store (its overrides included); null while nothing is loaded: fail closed.
    const live: ListSet = {
      get categories() {
        return lists.current.categories;
      },
      classify: (url, block, allow, group) => lists.classify(url, block, allow ?? [], group),
      matches: (url) => lists.current.matches(url),
    };
    const policy: Policy = {
      lists: () => (lists.loaded ? live : null),
      categoriesFor: (group) => policies.categoriesFor(group),
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
    // The RADIUS listener starts after the admin API; /metrics reads it through this.
    let radiusRef: SchoolgateHandle['radius'] = null;
    const admin = await buildAdminApp({
      config: effective, db, incidents, lists, listSync, phraseSync, logger, referenceSecret, caCertPem: () => ca.certPem,
      writerStats: () => incidents.stats(), gatewayStats: () => gatewayRef?.stats ?? null,
      browsingLogStats: browsingLog ? () => browsingLog.stats() : undefined,
      radiusStats: config.radiusAccounting ? () => radiusRef?.listener.stats() ?? null : undefined,
    });
    cleanups.push(() => admin.close());
    await listenOn('console', config.adminPort, config.listen, '--admin-port', () => admin.listen({ port: config.adminPort, host: config.listen }));
    const adminPort = (admin.server.address() as { port: number }).port;
    effective.adminPort = adminPort;

    // Who holds each address by the school's RADIUS accounting: first in identify.ts's precedence.
    let radius: SchoolgateHandle['radius'] = null;
    const ra = config.radiusAccounting;
    const sessions = ra && radiusSecret !== null ? new RadiusSessions((ra.expiryMinutes ?? DEFAULT_RADIUS_EXPIRY_MINUTES) * 60_000) : null;
    if (ra && sessions && radiusSecret !== null) {
      const listener = new RadiusListener({ port: ra.port, listen: ra.listen ?? config.listen, secret: radiusSecret, sessions, logger });
      const port = await listenOn('RADIUS accounting', ra.port, ra.listen ?? config.listen, 'radiusAccounting.port', () => listener.listen());
      cleanups.push(() => listener.close());
      radius = { listener, port };
      radiusRef = radius;
      logger.info({ port, expiryMinutes: ra.expiryMinutes }, 'RADIUS accounting listener started');
    }
    // The directory's service password is read here, so a missing file stops the start.
    const directory = config.directory ? new LdapDirectory(config.directory, logger) : null;
    // A person RADIUS names takes the policy group their directory or MIS record gives (by email,
    // any case), else their address range's; refreshed with the imported devices.
    let peopleGroups: ReadonlyMap<string, string> = new Map();
    const groupOf = (user: string) => peopleGroups.get(user.toLowerCase()) ?? null;
    const identifier = new ClientIdentifier(config, proxyAuthDeps(db, logger, undefined, directory), { sessions, groupOf });
    const devices = scheduleDeviceRefresh(db, (d) => identifier.setDevices(d), logger, undefined, (g) => {
      peopleGroups = g;
      sessions?.forgetIdentities();
    });
    cleanups.push(devices.stop);
    const directorySync = directory
      ? scheduleDirectorySync({ directory, db, intervalMinutes: config.directory!.syncIntervalMinutes ?? 60, logger })
      : null;
    if (directorySync) cleanups.push(directorySync.stop);
    cleanups.push(await watchCredentialChanges(db, (email) => identifier.forget(email), logger));
    const destinations = new Destinations({ ...config, allowLoopbackForTests: opts.allowLoopbackDestinationsForTests });
    destinations.addOwnPort(adminPort);
    const gateway = createGateway({
      leaf,
      policy,
      identifier,
      incidents,
      referenceSecret,
      friendlyName: (c) => friendlyCategoryName(c, lists.current.categories),
      illegalCategories: config.illegalCategories,
      adminBaseUrl: adminBaseUrl(effective),
      pagesHost: config.pagesHost,
      // The block page's buttons, the CA and the PAC file under a name only this gateway answers:
      // the admin app's own routes, through its router, with the client address the gateway admitted.
      localPages: { host: config.pagesHost, handle: gatewayPages(admin) },
      safeSearch: config.safeSearch,
      // What highSeverityCategories did for search flagging, it still does; alerts follow `severity`.
      flagCategories: config.highSeverityCategories.length ? config.highSeverityCategories : DEFAULT_FLAG_CATEGORIES,
      severity: config.severity,
      timeZone: config.timeZone,
      keywords,
      phrases: phraseSync.book,
      logger,
      gatewayName: os.hostname(),
      browsingLog,
      upstreamCa: opts.upstreamCa,
      upstreamLookup: opts.upstreamLookup,
      destinations,
      limits: config,
    });
    gatewayRef = gateway;
    const addr = await listenOn('proxy', config.proxyPort, config.listen, '--proxy-port', () => gateway.listen(config.proxyPort, config.listen));
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
      browsingLog,
      lists,
      listSync,
      gateway,
      admin,
      radius,
      directorySync,
      refreshDevices: devices.refresh,
      accounts: database.ready ? await countAccounts(db) : null,
      get database() {
        return { ...database };
      },
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/**
 * Listens, turning "address in use" (a second schoolgate, squid, or an old process still running)
 * into an error a network manager can act on, instead of Node's stack trace.
 */
async function listenOn<T>(what: string, port: number, host: string, flag: string, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    throw new SchoolgateError(
      'SG_ERR_PORT_IN_USE',
      `the ${what} port ${port} on ${host} is already in use (another schoolgate, squid or proxy still running?): stop it, or choose another port with ${flag}`,
    );
  }
}

async function countAccounts(db: Db): Promise<number | null> {
  try {
    return await countActiveUsers(db);
  } catch (err) {
    if (isDbUnreachable(err)) return null;
    throw err;
  }
}

/**
 * Tries `connect` until it succeeds (backoff 1 s doubling to 30 s), for a database that was away
 * at start. Failures other than "unreachable" (a migration that is wrong) are logged as such and
 * retried too: the gateway keeps filtering either way. Logged once a minute, not per attempt.
 */
function connectDatabase(connect: () => Promise<void>, onFail: (err: unknown) => void, logger: Logger): () => void {
  let wait = 1000;
  let loggedAt = Date.now();
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;
  const attempt = () => {
    timer = null;
    connect().then(
      () => {},
      (err) => {
        if (stopped) return;
        onFail(err);
        const now = Date.now();
        if (!isDbUnreachable(err)) logger.error({ err: (err as Error).message, code: (err as { code?: string }).code }, 'database reachable but not usable; retrying');
        else if (now - loggedAt >= 60_000) {
          loggedAt = now;
          logger.error({ code: 'SG_ERR_DB_UNAVAILABLE', err: (err as Error).message }, 'database still unreachable; incidents are kept in the journal and spool');
        }
        wait = Math.min(wait * 2, 30_000);
        schedule();
      },
    );
  };
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(attempt, wait);
    timer.unref();
  };
  schedule();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}

/**
 * Proxy-Authorization checked against console accounts (or the school's directory when one is configured): the admin API's password check (its
 * hashing bounded to half the thread pool), failures written to the audit log.
 */
export function proxyAuthDeps(db: Db, logger: Logger, limits?: ProxyAuthDeps['limits'], directory?: LdapDirectory | null): ProxyAuthDeps {
  return {
    users: usersTableLookup(db),
    // With a directory, people sign in to the proxy with their directory password, not a console one.
    directory: directory
      ? { verify: (account, password) => directory.verify(account, password), cacheTtlMs: (directory.cacheSeconds) * 1000 }
      : undefined,
    verify: verifyPassword,
    dummyHash: getDummyHash,
    // Directory checks in flight count as hashes do: past the limit a new sign-in is refused, not queued.
    hashesWaiting: directory ? () => directory.inFlight : () => hashLoad().waiting,
    audit: (e) =>
      writeAudit(db, { actor: { id: null, email: e.account }, action: e.action, details: { ip: e.clientIp, ...(e.scope ? { scope: e.scope } : {}) } }),
    limits,
    logger,
  };
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

/** A word as a POSIX shell reads it back: the banner's commands are meant to be pasted. */
function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** This machine's addresses other devices may reach it on (not loopback, not link-local). */
function lanAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flat()
    .filter((a): a is os.NetworkInterfaceInfo => !!a && !a.internal && a.family === 'IPv4' && !a.address.startsWith('169.254.'))
    .map((a) => a.address);
}

/** Listening on every address with no --public-url: the console links printed are loopback, which no other device reaches. */
export function consoleUnreachableHint(c: Config, lan: string[] = lanAddresses()): string | null {
  if (c.publicUrl || (c.listen !== '0.0.0.0' && c.listen !== '::')) return null;
  const example = lan[0] ? `http://${lan[0]}:${c.adminPort}` : `http://<this machine's address>:${c.adminPort}`;
  return `SG_ERR_CONSOLE_UNREACHABLE: listening on every address, but the console's address is printed (and e-mailed in alerts) as 127.0.0.1, which the DSL's and staff's devices cannot reach; block pages are unaffected (they use ${c.pagesHost}). Restart with --public-url ${example} (or the machine's DNS name)`;
}

export function banner(h: SchoolgateHandle, lan: string[] = lanAddresses()): string {
  // The port bound, which differs from the configured one when that was 0.
  const c = { ...h.config, adminPort: h.adminPort ?? h.config.adminPort };
  const host = c.listen === '0.0.0.0' || c.listen === '::' ? os.hostname() : c.listen;
  const consoleUrl = adminBaseUrl(c);
  const dataDir = shellWord(c.dataDir);
  const lines = [
    'schoolgate is running',
    `  proxy:          http://${bracketHost(host)}:${h.proxyPort}   (browsers: ${consoleUrl}/proxy.pac)`,
    `  console:        ${consoleUrl}`,
    `  CA certificate: ${caCertPath(c.dataDir)}   (also ${consoleUrl}/ca.crt, and http://${c.pagesHost}/ca.crt through the proxy; deploy it to every device)`,
    `  own pages:      http://${c.pagesHost}/ through the proxy   (block page buttons, CA, PAC: answered by the gateway itself, never looked up)`,
    `  data folder:    ${c.dataDir}   (${c.databaseUrl ? 'PostgreSQL from DATABASE_URL' : 'embedded database'})`,
  ];
  const unreachable = consoleUnreachableHint(c, lan);
  if (unreachable) lines.push('', `  !! ${unreachable}`);
  if (h.accounts === null) {
    lines.push(
      '',
      '  !! DATABASE UNREACHABLE: the web is filtered and incidents are kept in the data folder\'s journal and spool;',
      '  !! they are stored, and the console works, once the database is back (checked every few seconds).',
    );
  } else if (h.accounts === 0) {
    lines.push(
      '',
      '  No console accounts yet. Create the safeguarding lead\'s (password on stdin, or one is generated):',
      `    npx schoolgate users add dsl@your-school.example --role safeguarding_lead --data-dir ${dataDir}`,
    );
  }
  if (h.failClosed) {
    lines.push(
      '',
      '  !! NO LISTS LOADED: every request gets a "web filter not ready" page (fail-closed).',
      '  !! Load lists (a UT1 folder, a .tar.gz or a URL) with:',
      `    npx schoolgate lists update --from ${shellWord(c.listsUpdateUrl)} --data-dir ${dataDir}`,
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
  const unreachable = consoleUnreachableHint({ ...config, adminPort: handle.adminPort });
  if (unreachable) logger.warn(unreachable);
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
      handle.listSync.reload().then(
        (r) => logger.info({ entries: r.entries }, 'lists reloaded (SIGHUP)'),
        (err) => logger.error({ err: (err as Error).message }, 'lists not reloaded'),
      );
    });
  });
}
