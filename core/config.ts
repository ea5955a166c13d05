import { readFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { configFileKeys, validateConfigFile } from './config-schema';
import { SchoolgateError } from './errors';
import { bracketHost } from './host';
import { ILLEGAL_CATEGORIES, validateSeverityConfig, type SeverityConfig } from './severity';
import { checkDestinationRules, DEFAULT_CONNECTION_LIMITS, DEFAULT_DESTINATION_RULES } from './network-rules';
import { checkTimeZone, DEFAULT_TIME_ZONE } from './local-time';
import { validateOidcConfig, type OidcConfig } from './oidc-config';

export type { OidcConfig } from './oidc-config';

/**
 * The one place where flags, environment variables and the config file are read.
 * Precedence: flag > environment > config file (`--config`, or `<data-dir>/schoolgate.json`) > default.
 * Everything else in schoolgate receives a `Config` and never looks at process.env or argv.
 */
export interface PolicyGroup {
  /** Categories blocked for this group, in the order they are checked. */
  categories: string[];
}

export interface Config {
  dataDir: string;
  listen: string;
  proxyPort: number;
  adminPort: number;
  /** UT1 folders, hosts files, AdGuard lists, plain domain lists. */
  lists: string[];
  /**
   * Categories blocked for every group the console and `policyGroups` do not set, in this order
   * (squidGuard's way); null: the shipped UK school profile (blocklists/profiles/uk-schools.json).
   */
  categories: string[] | null;
  /** Allow-list categories (UT1 `liste_blanche` and the like) that win over every block. */
  allowCategories: string[];
  /** The shipped school-services allow list (blocklists/profiles/school-services.json), winning over list false positives. */
  schoolServices: boolean;
  databaseUrl: string | null;
  /** CIDRs whose clients may use the gateway; everyone else is refused. */
  allowedClients: string[];
  /** Hosts (and their subdomains) tunnelled without decryption: banking, health, pinned apps. */
  bypassHosts: string[];
  /** Require Proxy-Authorization: Basic against the users table. */
  proxyAuth: boolean;
  /** Policy groups (staff, pupils, guests...) and the map of client IPs to user, device and group. */
  policyGroups: Record<string, PolicyGroup>;
  defaultGroup: string;
  clients: Array<{ cidr: string; user?: string; device?: string; group?: string }>;
  safeSearch: boolean;
  retentionDays: number;
  /** Incidents held in memory when neither the database nor the spool folder takes them; beyond it they are dropped and counted. */
  incidentQueueMax: number;
  // durability (#11 points 9-11)
  /** Milliseconds between group fsyncs of the incident journal; 0 fsyncs every incident (slow, loses nothing to a power cut). */
  incidentJournalFsyncMs: number;
  /**
   * Repeated navigations by one person to one site within this many minutes fold into one
   * incident, its timeline listing each attempt (issue 13, point 1).
   */
  incidentFoldMinutes: number;
  /**
   * Deprecated: each category listed here is mapped into `severity.categories` as `alert` (unless
   * `severity` names it), and its keywords still flag searches. Empty unless the file sets it.
   */
  highSeverityCategories: string[];
  /** What a blocked category costs the DSL, per category and per policy group, over the shipped defaults. */
  severity: SeverityConfig;
  /** Categories illegal to view (IWF, CTIRU lists): never linked, never e-mailed, reported. Never adult content. */
  illegalCategories: string[];
  smtp: { url: string; from: string; to: string[] } | null;
  /** The console's address as staff reach it (banner, alert emails); defaults to http://<listen>:<adminPort>. */
  publicUrl: string | null;
  /**
   * The name only the gateway answers (as mitmproxy answers mitm.it): block page buttons, the CA
   * download and the PAC file, for every client that uses the proxy. Checked by checkPagesHost.
   */
  pagesHost: string;
  /** Where `schoolgate lists update` fetches from when the data folder has no lists. */
  listsUpdateUrl: string;
  logLevel: string;
  // What the gateway may reach, and client connection limits (issue #11, network slice).
  /** CIDRs refused beyond the built-in walls (loopback, link-local, unspecified, multicast, the gateway itself). */
  deniedDestinations: string[];
  /** CIDRs reachable although denied; the gateway's own ports never are. */
  allowedDestinations: string[];
  /** Ports CONNECT may open: numbers or `low-high` ranges. */
  connectPorts: Array<string | number>;
  /** Milliseconds a client has to send a request's headers once it starts (slowloris). */
  headersTimeoutMs: number;
  /** Milliseconds a new connection (or TLS tunnel) may stay silent before its first request. */
  idleTimeoutMs: number;
  /** Milliseconds from a CONNECT's 200 to a finished TLS handshake (or first plain byte). */
  handshakeTimeoutMs: number;
  /** Concurrent connections one client address may hold. */
  maxConnectionsPerClient: number;
  // issue #11, lists slice
  /** Extra folders console-added list sources may be read from, besides `<dataDir>/lists` and `lists`. */
  listRoots: string[];
  /** A reload that shrinks a category by more than this share (0..1) is refused unless accepted. */
  listMaxShrink: number;
  /** Size caps on a list tarball download and on what it unpacks to. */
  listDownloadMaxBytes: number;
  listExtractMaxBytes: number;
  // browsing log (issue 13, point 3)
  /** Log every request (person × host × minute) for the DfE "websites visited" record and the pupil timeline. */
  browsingLog: boolean;
  /** Milliseconds between the browsing log's batched writes: what a crash may lose of it. */
  browsingLogFlushMs: number;
  /** Days browsing-log rows are kept (allowed and blocked alike; incidents have their own retention). */
  browsingLogRetentionDays: number;
  /** Browsing-log rows held in memory while the database is away; requests beyond are dropped and counted. */
  browsingLogMaxPending: number;
  // local time (issue 14 point 3)
  /** IANA zone every shown time is in (block page, console, charts' days, CSV, alert emails). */
  timeZone: string;
  // issue 15 point 3
  /** Console sign-in with the school's identity provider (OpenID Connect); null: passwords only. */
  oidc: OidcConfig | null;
  // identity (issue 15, point 2)
  /**
   * RADIUS accounting from the school's Wi-Fi controller or NAC (filter/radius.ts): who holds each
   * address, named on every request from it without a proxy password. Null: not listened for.
   */
  radiusAccounting: RadiusAccountingConfig | null;
  // identity from the school's directory (issue 15, point 1)
  /** An LDAP or Active Directory server proxy sign-ins are checked against, and people synced from; null: console accounts sign in to the proxy. */
  directory: DirectoryConfig | null;
}

export interface DirectoryConfig {
  /** ldap://host:port or ldaps://host:port */
  url: string;
  baseDn: string;
  /** The service account that searches for people (never a person's own account). */
  bindDn: string;
  /** A file holding the service account's password (first line); it is never logged. */
  bindPasswordFile: string;
  /** Directory group common name → policy group; the first entry, in this order, that a person belongs to wins. */
  groupMap: Record<string, string>;
  /** Upgrade ldap:// with StartTLS before any password is sent. */
  startTls?: boolean;
  /** PEM file of the CA that signed the directory's certificate (LDAPS or StartTLS); default: the system's. */
  caFile?: string;
  /** An LDAP filter every person must also match; default (objectClass=person). */
  userFilter?: string;
  /** Attributes a person may sign in with; default uid and mail (Active Directory: sAMAccountName, userPrincipalName, mail). */
  loginAttributes?: string[];
  /** Where groups are searched (groupOfNames member, groupOfUniqueNames uniqueMember) when entries carry no memberOf; default baseDn. */
  groupBaseDn?: string;
  /** Attributes read for the console's "Sam Jones, 9B": the form (default departmentNumber) and the year group (default businessCategory). */
  formAttribute?: string;
  yearGroupAttribute?: string;
  /** Minutes between imports of people into the console; 0 turns the sync off. Default 60. */
  syncIntervalMinutes?: number;
  /** Seconds a verified sign-in is trusted without asking the directory again. Default 300. */
  cacheSeconds?: number;
  /** Milliseconds a directory check may take before the sign-in is refused (fail closed). Default 3000. */
  timeoutMs?: number;
}

export interface RadiusAccountingConfig {
  /** UDP port for Accounting-Request (1813 is the standard one). */
  port: number;
  /** File holding the shared secret (its first line); read at start, never logged. */
  secretFile: string;
  /** Address to listen on; default the gateway's `listen`. */
  listen?: string;
  /** A mapping with no Interim-Update or Stop for this long is forgotten (default 600: a school day). */
  expiryMinutes?: number;
}

/** Default of radiusAccounting.expiryMinutes: a school day, for controllers that send no interim updates. */
export const DEFAULT_RADIUS_EXPIRY_MINUTES = 600;

// A setting added to Config without a schema entry would be refused in the file, and a schema
// entry with no setting would be accepted and ignored: both fail to compile instead.
// The compiler's message then names the keys: [missing from the schema, not in Config].
type MissingFromSchema = Exclude<Exclude<keyof Config, 'dataDir'>, keyof typeof configFileKeys>;
type NotInConfig = Exclude<keyof typeof configFileKeys, keyof Config>;
const fileKeysMatchConfig: [MissingFromSchema, NotInConfig] extends [never, never] ? true : [MissingFromSchema, NotInConfig] = true;
void fileKeysMatchConfig;

export const DEFAULT_BYPASS_HOSTS = [
  // Banking and payments: decrypting them breaks pinning and is a privacy line schools should not cross.
  'hsbc.co.uk', 'barclays.co.uk', 'lloydsbank.co.uk', 'natwest.com', 'santander.co.uk', 'nationwide.co.uk',
  'paypal.com', 'monzo.com', 'starlingbank.com',
  // Health
  'nhs.uk', 'nhs.net',
  // Certificate-pinned or mutual-TLS services
  'apple.com', 'icloud.com', 'mzstatic.com', 'windowsupdate.com', 'update.microsoft.com',
  'login.microsoftonline.com', 'dropbox.com', 'zoom.us',
];

export const DEFAULT_ALLOWED_CLIENTS = ['127.0.0.0/8', '::1/128', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'];

/**
 * The keyword categories searches are checked against when `highSeverityCategories` is not set:
 * what that setting's default was before severity tiers replaced it for alerts.
 */
export const DEFAULT_FLAG_CATEGORIES = ['adult', 'agressif', 'dangerous_material', 'drogue', 'sect', 'hacking', 'mixed_adult'];

/**
 * Default of pagesHost. Under `.invalid`, which RFC 6761 §6.4 reserves so that it never resolves:
 * no DNS server anywhere answers it, so nobody on the internet (or the school's intranet) can own
 * it, and a device that bypasses the proxy reaches nothing rather than someone else's server.
 * mitm.it is a real, registered domain; a school filter must not lean on one it does not control.
 */
export const DEFAULT_PAGES_HOST = 'schoolgate.invalid';

/**
 * A pagesHost a browser will send to the proxy: a DNS name with a dot (a PAC's isPlainHostName
 * and Windows' "bypass for local addresses" send dotless names direct), not an IP literal (it
 * would be a real address) and not localhost (browsers resolve `*.localhost` themselves and never
 * proxy it). Returns it lower case without a trailing dot.
 */
export function checkPagesHost(raw: unknown, where = 'pagesHost'): string {
  const host = typeof raw === 'string' ? raw.trim().toLowerCase().replace(/\.$/, '') : '';
  const label = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
  const problem =
    typeof raw !== 'string' ? 'must be a host name'
      : net.isIP(host) || /^\[.*\]$/.test(host) ? 'must be a name, not an IP address'
        : host.length > 253 || !host.split('.').every((l) => label.test(l)) ? 'must be a DNS name (letters, digits, hyphens, dots)'
          : !host.includes('.') ? 'must contain a dot (browsers and PAC files send dotless names past the proxy)'
            : host === 'localhost' || host.endsWith('.localhost') ? 'must not be under localhost (browsers never proxy it)'
              : /^[0-9.]+$/.test(host) ? 'must be a name, not an IP address'
                : null;
  if (problem) throw new SchoolgateError('SG_ERR_CONFIG', `${where} ${problem}, got ${JSON.stringify(raw)}`);
  return host;
}

/** Default of incidentFoldMinutes. */
export const DEFAULT_FOLD_MINUTES = 30;

function defaults(cwd: string): Config {
  return {
    dataDir: path.resolve(cwd, 'data'),
    listen: '127.0.0.1',
    proxyPort: 3128,
    adminPort: 8081,
    lists: [],
    categories: null,
    allowCategories: ['liste_blanche'],
    schoolServices: true,
    databaseUrl: null,
    allowedClients: DEFAULT_ALLOWED_CLIENTS,
    bypassHosts: DEFAULT_BYPASS_HOSTS,
    proxyAuth: false,
    policyGroups: {},
    defaultGroup: 'pupils',
    clients: [],
    safeSearch: true,
    retentionDays: 365,
    incidentQueueMax: 100_000,
    incidentJournalFsyncMs: 50,
    incidentFoldMinutes: DEFAULT_FOLD_MINUTES,
    highSeverityCategories: [],
    severity: { categories: {}, groups: {} },
    illegalCategories: [...ILLEGAL_CATEGORIES],
    smtp: null,
    publicUrl: null,
    pagesHost: DEFAULT_PAGES_HOST,
    listsUpdateUrl: 'https://dsi.ut-capitole.fr/blacklists/download/blacklists.tar.gz',
    logLevel: 'info',
    ...DEFAULT_DESTINATION_RULES,
    ...DEFAULT_CONNECTION_LIMITS,
    listRoots: [],
    listMaxShrink: 0.5,
    listDownloadMaxBytes: 256 * 1024 * 1024,
    listExtractMaxBytes: 2 * 1024 * 1024 * 1024,
    browsingLog: true,
    browsingLogFlushMs: 5000,
    browsingLogRetentionDays: 30,
    browsingLogMaxPending: 200_000,
    timeZone: DEFAULT_TIME_ZONE,
    oidc: null,
    radiusAccounting: null,
    directory: null,
  };
}

/** Every flag any subcommand takes; subcommands ignore the ones that are not theirs. */
export const cliOptions = {
  'data-dir': { type: 'string' },
  config: { type: 'string' },
  listen: { type: 'string' },
  'proxy-port': { type: 'string' },
  'admin-port': { type: 'string' },
  lists: { type: 'string', multiple: true },
  categories: { type: 'string' },
  'allow-categories': { type: 'string' },
  'allowed-clients': { type: 'string' },
  'bypass-hosts': { type: 'string' },
  'proxy-auth': { type: 'boolean' },
  'no-safe-search': { type: 'boolean' },
  'retention-days': { type: 'string' },
  'public-url': { type: 'string' },
  'log-level': { type: 'string' },
  'list-root': { type: 'string', multiple: true },
  // subcommand-specific
  'accept-shrink': { type: 'boolean' },
  role: { type: 'string' },
  from: { type: 'string' },
  der: { type: 'boolean' },
  force: { type: 'boolean' },
  'key-type': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/**
 * One line of help for every flag, printed by `schoolgate --help`. Typed over `cliOptions`, so a
 * flag added there without its help does not compile.
 */
export const flagHelp: Record<keyof typeof cliOptions, [arg: string, help: string]> = {
  'data-dir': ['DIR', 'data folder: CA, database, lists, journal (default ./data)'],
  config: ['FILE', 'JSON config file (default <data-dir>/schoolgate.json)'],
  listen: ['ADDR', 'address the proxy and console listen on (default 127.0.0.1)'],
  'proxy-port': ['PORT', 'proxy port (default 3128)'],
  'admin-port': ['PORT', 'console and API port (default 8081)'],
  lists: ['DIR', 'a UT1-style lists folder; repeat for more (default <data-dir>/lists)'],
  categories: ['a,b', 'categories to block for everyone, in check order (default: the UK school profile per group)'],
  'allow-categories': ['a,b', 'categories that always pass (e.g. liste_blanche)'],
  'allowed-clients': ['CIDRS', 'client addresses that may use the proxy (default private ranges)'],
  'bypass-hosts': ['HOSTS', 'hosts tunnelled without decryption (banks, pinned apps)'],
  'proxy-auth': ['', 'ask browsers to sign in with a console account'],
  'no-safe-search': ['', 'do not force safe search on search engines'],
  'retention-days': ['N', 'days closed incidents are kept (default 365)'],
  'public-url': ['URL', 'the console address staff use (banner, alert emails)'],
  'log-level': ['LEVEL', 'fatal, error, warn, info (default), debug, trace or silent'],
  'list-root': ['DIR', 'a folder the console may add list sources from; repeat for more'],
  'accept-shrink': ['', 'lists update: take a download that shrinks a category by more than listMaxShrink'],
  role: ['ROLE', 'users add: safeguarding_lead, network_manager, staff or auditor'],
  from: ['DIR|URL', 'lists update: where to load lists from'],
  der: ['', 'ca export: DER instead of PEM'],
  force: ['', 'ca init: replace an existing CA'],
  'key-type': ['ec|rsa', 'ca init: key type of a new CA (default ec)'],
  help: ['', 'this help'],
};

/** The options part of `--help`: every flag, its argument and what it does. */
export function flagsUsage(): string {
  const rows = Object.entries(flagHelp).map(([name, [arg, help]]) => [`--${name}${arg ? ` ${arg}` : ''}`, help]);
  const width = Math.max(...rows.map(([f]) => f.length)) + 2;
  return rows.map(([f, h]) => `  ${f.padEnd(width)}${h}`).join('\n') + '\n';
}

export type CliValues = ReturnType<typeof parseCli>['values'];

export function parseCli(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: cliOptions, allowPositionals: true, strict: true });
  } catch (err) {
    const message = (err as Error).message;
    // A mistyped flag is the commonest first error: name the flag that was probably meant.
    const unknown = /Unknown option '(-{1,2}[^']+)'/.exec(message)?.[1];
    const meant = unknown ? nearestFlag(unknown.replace(/^-+/, '')) : null;
    throw new SchoolgateError('SG_ERR_USAGE', meant ? `${message.split('\n')[0]} Did you mean --${meant}?` : message);
  }
}

/** The known flag closest to `typed` by edit distance, if it is close enough to be a typo (at most a third of it wrong). */
export function nearestFlag(typed: string): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const name of Object.keys(cliOptions)) {
    const d = editDistance(typed, name);
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best !== null && bestDistance <= Math.max(1, Math.floor(best.length / 3)) ? best : null;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

const list = (s: string | undefined) => (s === undefined ? undefined : s.split(',').map((x) => x.trim()).filter(Boolean));

function wholeNumber(name: string, v: string | number, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new SchoolgateError('SG_ERR_CONFIG', `${name} must be a whole number of at least ${min}, got ${JSON.stringify(v)}`);
  return n;
}

function port(name: string, v: string | number | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new SchoolgateError('SG_ERR_CONFIG', `${name} must be a port number, got ${JSON.stringify(v)}`);
  return n;
}

/**
 * The one CIDR parser: the config checks every CIDR with it at load time, and the gateway builds
 * its allow-list and client map with it. A bare address is its own /32 or /128. The prefix must be
 * plain digits: `Number('')` is 0, and a typo like `10.0.0.0/` must not open the gateway to everyone.
 */
export function parseCidr(cidr: string): { addr: string; prefix: number; type: 'ipv4' | 'ipv6' } {
  const m = typeof cidr === 'string' ? /^([^/]*)(?:\/(\d{1,3}))?$/.exec(cidr.trim()) : null;
  const addr = m?.[1] ?? '';
  const type = net.isIPv4(addr) ? 'ipv4' : net.isIPv6(addr) ? 'ipv6' : null;
  const max = type === 'ipv4' ? 32 : 128;
  const prefix = m?.[2] === undefined ? max : Number(m[2]);
  if (!type || prefix > max) throw new SchoolgateError('SG_ERR_CONFIG', `not an address or CIDR: ${JSON.stringify(cidr)}`);
  return { addr, prefix, type };
}

/** Fails the load (not the first gateway request) on a bad CIDR, naming the setting it sits in. */
function checkCidrs(c: Config): void {
  const check = (where: string, v: unknown) => {
    try {
      parseCidr(v as string);
    } catch (err) {
      throw new SchoolgateError('SG_ERR_CONFIG', `${where}: ${(err as Error).message}`);
    }
  };
  if (!Array.isArray(c.allowedClients)) throw new SchoolgateError('SG_ERR_CONFIG', 'allowedClients must be a list of addresses or CIDRs');
  c.allowedClients.forEach((v, i) => check(`allowedClients[${i}]`, v));
  if (!Array.isArray(c.clients)) throw new SchoolgateError('SG_ERR_CONFIG', 'clients must be a list of { cidr, user, device, group }');
  c.clients.forEach((v, i) => check(`clients[${i}].cidr`, (v as { cidr?: unknown } | null)?.cidr));
}

/** The file's shape is checked already (config-schema.ts); here the values, each error naming its key. */
function checkRadius(r: RadiusAccountingConfig, listen: string, cwd: string): RadiusAccountingConfig {
  const at = (k: string) => `radiusAccounting.${k}`;
  const p = port(at('port'), r.port);
  if (p === undefined) throw new SchoolgateError('SG_ERR_CONFIG', `${at('port')} must be a port number, got ${JSON.stringify(r.port)}`);
  if (typeof r.secretFile !== 'string' || r.secretFile.trim() === '') throw new SchoolgateError('SG_ERR_CONFIG', `${at('secretFile')} must name the file holding the shared secret`);
  const addr = r.listen ?? listen;
  if (net.isIP(addr) === 0) throw new SchoolgateError('SG_ERR_CONFIG', `${at('listen')} must be an IP address, got ${JSON.stringify(addr)}`);
  const expiryMinutes = wholeNumber(at('expiryMinutes'), r.expiryMinutes ?? DEFAULT_RADIUS_EXPIRY_MINUTES, 1);
  return { port: p, secretFile: path.resolve(cwd, r.secretFile), listen: addr, expiryMinutes };
}

/**
 * `highSeverityCategories` named the categories that alert, before severity tiers. A school's list
 * keeps alerting: each category becomes `alert` unless `severity.categories` already decides it
 * (the newer setting wins). server/start.ts logs the mapping so the school can move it.
 */
export function withDeprecatedHighSeverity(severity: SeverityConfig, high: readonly string[]): SeverityConfig {
  if (high.length === 0) return severity;
  const categories = { ...severity.categories };
  for (const c of high) if (!Object.hasOwn(categories, c)) categories[c] = 'alert';
  return { categories, groups: severity.groups };
}

export function loadConfig(values: Partial<CliValues> = {}, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Config {
  const base = defaults(cwd);
  const dataDir = path.resolve(cwd, values['data-dir'] ?? env.SCHOOLGATE_DATA_DIR ?? base.dataDir);
  const file = values.config ?? env.SCHOOLGATE_CONFIG ?? path.join(dataDir, 'schoolgate.json');
  let fromFile: Partial<Config> = {};
  if (existsSync(file)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new SchoolgateError('SG_ERR_CONFIG', `${file}: ${(err as Error).message}`);
    }
    validateConfigFile(file, parsed);
    fromFile = parsed as Partial<Config>;
    // The alert code reads smtp.to and smtp.from as always present; the environment path fills them too.
    if (fromFile.smtp) fromFile.smtp = { ...fromFile.smtp, from: fromFile.smtp.from ?? 'schoolgate@localhost', to: fromFile.smtp.to ?? [] };
  } else if (values.config ?? env.SCHOOLGATE_CONFIG) {
    throw new SchoolgateError('SG_ERR_CONFIG', `config file ${file} does not exist`);
  }
  const c: Config = { ...base, ...fromFile, dataDir };

  const envLists = env.SCHOOLGATE_LISTS ? env.SCHOOLGATE_LISTS.split(path.delimiter).filter(Boolean) : undefined;
  c.listen = values.listen ?? env.SCHOOLGATE_LISTEN ?? c.listen;
  c.proxyPort = port('--proxy-port', values['proxy-port'] ?? env.SCHOOLGATE_PROXY_PORT) ?? port('proxyPort', c.proxyPort)!;
  c.adminPort = port('--admin-port', values['admin-port'] ?? env.SCHOOLGATE_ADMIN_PORT) ?? port('adminPort', c.adminPort)!;
  c.lists = (values.lists ?? envLists ?? c.lists).map((p) => path.resolve(cwd, p));
  c.categories = list(values.categories ?? env.SCHOOLGATE_CATEGORIES) ?? c.categories;
  c.allowCategories = list(values['allow-categories'] ?? env.SCHOOLGATE_ALLOW_CATEGORIES) ?? c.allowCategories;
  c.databaseUrl = env.DATABASE_URL || c.databaseUrl || null;
  c.allowedClients = list(values['allowed-clients'] ?? env.SCHOOLGATE_ALLOWED_CLIENTS) ?? c.allowedClients;
  c.bypassHosts = list(values['bypass-hosts'] ?? env.SCHOOLGATE_BYPASS_HOSTS) ?? c.bypassHosts;
  c.proxyAuth = values['proxy-auth'] ?? (env.SCHOOLGATE_PROXY_AUTH ? env.SCHOOLGATE_PROXY_AUTH === '1' : c.proxyAuth);
  if (values['no-safe-search'] || env.SCHOOLGATE_SAFE_SEARCH === '0') c.safeSearch = false;
  const retention = values['retention-days'] ?? env.SCHOOLGATE_RETENTION_DAYS;
  c.retentionDays = retention !== undefined ? wholeNumber('--retention-days', retention, 1) : wholeNumber('retentionDays', c.retentionDays, 1);
  c.incidentQueueMax = wholeNumber('incidentQueueMax', env.SCHOOLGATE_INCIDENT_QUEUE_MAX ?? c.incidentQueueMax, 1000);
  c.incidentJournalFsyncMs = wholeNumber('incidentJournalFsyncMs', env.SCHOOLGATE_INCIDENT_JOURNAL_FSYNC_MS ?? c.incidentJournalFsyncMs, 0);
  c.incidentFoldMinutes = wholeNumber('incidentFoldMinutes', env.SCHOOLGATE_INCIDENT_FOLD_MINUTES ?? c.incidentFoldMinutes, 1);
  c.severity = validateSeverityConfig(c.severity);
  c.severity = withDeprecatedHighSeverity(c.severity, c.highSeverityCategories);
  c.publicUrl = values['public-url'] ?? env.SCHOOLGATE_PUBLIC_URL ?? c.publicUrl;
  c.pagesHost = checkPagesHost(env.SCHOOLGATE_PAGES_HOST ?? c.pagesHost, env.SCHOOLGATE_PAGES_HOST !== undefined ? 'SCHOOLGATE_PAGES_HOST' : 'pagesHost');
  // The console's own name sent to the gateway would be answered with the gateway's pages (and the PAC file sends it direct).
  if (c.publicUrl && urlHost(c.publicUrl) === c.pagesHost) {
    throw new SchoolgateError('SG_ERR_CONFIG', `pagesHost ${c.pagesHost} is also the console's address (--public-url ${c.publicUrl}): the gateway answers that name itself; choose another`);
  }
  c.logLevel = values['log-level'] ?? env.SCHOOLGATE_LOG_LEVEL ?? c.logLevel;
  if (env.SCHOOLGATE_SMTP_URL) {
    c.smtp = { url: env.SCHOOLGATE_SMTP_URL, from: env.SCHOOLGATE_SMTP_FROM ?? 'schoolgate@localhost', to: list(env.SCHOOLGATE_DSL_EMAIL) ?? [] };
  }
  if (env.SCHOOLGATE_LISTS_URL) c.listsUpdateUrl = env.SCHOOLGATE_LISTS_URL;
  const envRoots = env.SCHOOLGATE_LIST_ROOTS ? env.SCHOOLGATE_LIST_ROOTS.split(path.delimiter).filter(Boolean) : undefined;
  if (!Array.isArray(c.listRoots) || c.listRoots.some((r) => typeof r !== 'string')) throw new SchoolgateError('SG_ERR_CONFIG', 'listRoots must be a list of folders');
  c.listRoots = (values['list-root'] ?? envRoots ?? c.listRoots).map((p) => path.resolve(cwd, p));
  const shrink = Number(env.SCHOOLGATE_LIST_MAX_SHRINK ?? c.listMaxShrink);
  if (!(shrink >= 0 && shrink <= 1)) throw new SchoolgateError('SG_ERR_CONFIG', `listMaxShrink must be a share between 0 and 1, got ${JSON.stringify(env.SCHOOLGATE_LIST_MAX_SHRINK ?? c.listMaxShrink)}`);
  c.listMaxShrink = shrink;
  c.listDownloadMaxBytes = wholeNumber('listDownloadMaxBytes', env.SCHOOLGATE_LIST_DOWNLOAD_MAX_BYTES ?? c.listDownloadMaxBytes, 1024);
  c.listExtractMaxBytes = wholeNumber('listExtractMaxBytes', env.SCHOOLGATE_LIST_EXTRACT_MAX_BYTES ?? c.listExtractMaxBytes, 1024);
  checkCidrs(c);
  if (env.SCHOOLGATE_BROWSING_LOG !== undefined) c.browsingLog = env.SCHOOLGATE_BROWSING_LOG !== '0';
  if (typeof c.schoolServices !== 'boolean') throw new SchoolgateError('SG_ERR_CONFIG', `schoolServices must be true or false, got ${JSON.stringify(c.schoolServices)}`);
  if (typeof c.browsingLog !== 'boolean') throw new SchoolgateError('SG_ERR_CONFIG', `browsingLog must be true or false, got ${JSON.stringify(c.browsingLog)}`);
  c.browsingLogFlushMs = wholeNumber('browsingLogFlushMs', env.SCHOOLGATE_BROWSING_LOG_FLUSH_MS ?? c.browsingLogFlushMs, 100);
  c.browsingLogRetentionDays = wholeNumber('browsingLogRetentionDays', env.SCHOOLGATE_BROWSING_LOG_RETENTION_DAYS ?? c.browsingLogRetentionDays, 1);
  c.browsingLogMaxPending = wholeNumber('browsingLogMaxPending', env.SCHOOLGATE_BROWSING_LOG_MAX_PENDING ?? c.browsingLogMaxPending, 1000);
  // What the gateway may reach, and client connection limits (issue #11, network slice).
  c.deniedDestinations = list(env.SCHOOLGATE_DENIED_DESTINATIONS) ?? c.deniedDestinations;
  c.allowedDestinations = list(env.SCHOOLGATE_ALLOWED_DESTINATIONS) ?? c.allowedDestinations;
  c.connectPorts = list(env.SCHOOLGATE_CONNECT_PORTS) ?? c.connectPorts;
  checkDestinationRules(c);
  if (c.directory) c.directory = checkDirectory(c.directory, path.dirname(file), cwd);
  c.headersTimeoutMs = wholeNumber('headersTimeoutMs', env.SCHOOLGATE_HEADERS_TIMEOUT_MS ?? c.headersTimeoutMs, 100);
  c.idleTimeoutMs = wholeNumber('idleTimeoutMs', env.SCHOOLGATE_IDLE_TIMEOUT_MS ?? c.idleTimeoutMs, 100);
  c.handshakeTimeoutMs = wholeNumber('handshakeTimeoutMs', env.SCHOOLGATE_HANDSHAKE_TIMEOUT_MS ?? c.handshakeTimeoutMs, 100);
  c.maxConnectionsPerClient = wholeNumber('maxConnectionsPerClient', env.SCHOOLGATE_MAX_CONNECTIONS_PER_CLIENT ?? c.maxConnectionsPerClient, 1);
  c.timeZone = env.SCHOOLGATE_TIME_ZONE !== undefined ? checkTimeZone(env.SCHOOLGATE_TIME_ZONE, 'SCHOOLGATE_TIME_ZONE') : checkTimeZone(c.timeZone);
  c.oidc = validateOidcConfig(c.oidc ?? null);
  // Relative to where the command runs, as list folders are.
  if (c.oidc) c.oidc = { ...c.oidc, clientSecretFile: path.resolve(cwd, c.oidc.clientSecretFile) };
  if (c.radiusAccounting) c.radiusAccounting = checkRadius(c.radiusAccounting, c.listen, cwd);
  return c;
}

function urlHost(u: string): string | null {
  try {
    return new URL(u).hostname.toLowerCase().replace(/\.$/, '');
  } catch {
    return null;
  }
}

/**
 * The directory's settings with defaults filled in and paths resolved against the config file's
 * folder; a wrong one stops the load naming its key (the shape was checked by config-schema.ts).
 */
function checkDirectory(d: DirectoryConfig, fileDir: string, cwd: string): DirectoryConfig {
  const bad = (key: string, why: string) => new SchoolgateError('SG_ERR_CONFIG', `directory.${key} ${why}`);
  let url: URL;
  try {
    url = new URL(d.url);
  } catch {
    throw bad('url', `must be an ldap:// or ldaps:// URL, got ${JSON.stringify(d.url)}`);
  }
  if (url.protocol !== 'ldap:' && url.protocol !== 'ldaps:') throw bad('url', `must be an ldap:// or ldaps:// URL, got ${JSON.stringify(d.url)}`);
  if (url.username || url.password) throw bad('url', 'must not hold credentials: put the password in bindPasswordFile');
  if (d.startTls && url.protocol === 'ldaps:') throw bad('startTls', 'is for ldap:// URLs (ldaps:// is TLS from the first byte)');
  for (const k of ['baseDn', 'bindDn', 'bindPasswordFile'] as const) if (!d[k]?.trim()) throw bad(k, 'is required');
  for (const [group, policy] of Object.entries(d.groupMap)) if (!policy.trim()) throw bad(`groupMap.${group}`, 'must name a policy group');
  const attrs = d.loginAttributes ?? ['uid', 'mail'];
  if (attrs.length === 0 || attrs.some((a) => !/^[A-Za-z][A-Za-z0-9-]*$/.test(a))) throw bad('loginAttributes', `must be attribute names, got ${JSON.stringify(attrs)}`);
  const resolve = (p: string) => path.resolve(fileDir || cwd, p);
  return {
    ...d,
    bindPasswordFile: resolve(d.bindPasswordFile),
    caFile: d.caFile === undefined ? undefined : resolve(d.caFile),
    loginAttributes: attrs,
    syncIntervalMinutes: wholeNumber('directory.syncIntervalMinutes', d.syncIntervalMinutes ?? 60, 0),
    cacheSeconds: wholeNumber('directory.cacheSeconds', d.cacheSeconds ?? 300, 1),
    timeoutMs: wholeNumber('directory.timeoutMs', d.timeoutMs ?? 3000, 100),
  };
}

/** The admin console's base URL, as the startup banner, alerts and the "not ready" page show it. */
export function adminBaseUrl(c: Config): string {
  if (c.publicUrl) return c.publicUrl.replace(/\/$/, '');
  const host = c.listen === '0.0.0.0' || c.listen === '::' ? '127.0.0.1' : c.listen;
  return `http://${bracketHost(host)}:${c.adminPort}`;
}
