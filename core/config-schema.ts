import { SchoolgateError } from './errors';
import { timeZoneProblem } from './local-time';
import { oidcProblems } from './oidc-config';
import { severityProblems } from './severity';

/**
 * The shape of the JSON config file, checked before any of it is used.
 *
 * Hand-written rather than a JSON Schema through ajv: ajv is only fastify's dependency, not ours,
 * so core/ would import a package package.json does not promise; and ajv's messages ("must NOT have
 * additional properties") name neither the key nor the nearest spelling. The vocabulary below is
 * small and uniform, and the range checks (ports, CIDRs, minimums) stay where they already are in
 * loadConfig, so flags, environment and file share them.
 *
 * Numeric settings take a number or a numeric string, as they always have (the file and the
 * environment go through the same `Number()` and range check); a boolean, list or object is refused.
 */
type Shape =
  | { t: 'string' }
  | { t: 'boolean' }
  | { t: 'numeric'; what?: string }
  | { t: 'list'; of: Shape; what: string }
  | { t: 'object'; keys: Record<string, Shape>; required: string[] }
  | { t: 'record'; of: Shape }
  | { t: 'nullable'; of: Shape }
  /** A setting with its own checker, which adds problems named from `at`. */
  | { t: 'custom'; check: (v: unknown, at: string, problems: string[]) => void };

const string: Shape = { t: 'string' };
const boolean: Shape = { t: 'boolean' };
const numeric: Shape = { t: 'numeric' };
const strings = (what: string): Shape => ({ t: 'list', of: string, what });
const object = (keys: Record<string, Shape>, required: string[] = []): Shape => ({ t: 'object', keys, required });
const nullable = (of: Shape): Shape => ({ t: 'nullable', of });

/** Every key the file may hold: the Config interface less `dataDir`, which locates the file. */
export const configFileKeys = {
  listen: string,
  proxyPort: numeric,
  adminPort: numeric,
  lists: strings('folders or files'),
  categories: nullable(strings('category names')),
  allowCategories: strings('category names'),
  schoolServices: boolean,
  databaseUrl: nullable(string),
  allowedClients: strings('addresses or CIDRs'),
  bypassHosts: strings('host names'),
  proxyAuth: boolean,
  policyGroups: { t: 'record', of: object({ categories: strings('category names') }, ['categories']) },
  defaultGroup: string,
  clients: { t: 'list', of: object({ cidr: string, user: string, device: string, group: string }, ['cidr']), what: '{ cidr, user, device, group }' },
  safeSearch: boolean,
  retentionDays: numeric,
  incidentQueueMax: numeric,
  incidentJournalFsyncMs: numeric,
  incidentFoldMinutes: numeric,
  highSeverityCategories: strings('category names'),
  severity: { t: 'custom', check: (v, at, problems) => void severityProblems(v, at, problems) },
  illegalCategories: strings('category names'),
  smtp: nullable(object({ url: string, from: string, to: strings('email addresses') }, ['url'])),
  publicUrl: nullable(string),
  pagesHost: string,
  listsUpdateUrl: string,
  logLevel: string,
  deniedDestinations: strings('addresses or CIDRs'),
  allowedDestinations: strings('addresses or CIDRs'),
  connectPorts: { t: 'list', of: { t: 'numeric', what: 'a port or a low-high range' }, what: 'ports or port ranges (low-high)' },
  headersTimeoutMs: numeric,
  idleTimeoutMs: numeric,
  handshakeTimeoutMs: numeric,
  maxConnectionsPerClient: numeric,
  listRoots: strings('folders'),
  listMaxShrink: numeric,
  listDownloadMaxBytes: numeric,
  listExtractMaxBytes: numeric,
  browsingLog: boolean,
  browsingLogFlushMs: numeric,
  browsingLogRetentionDays: numeric,
  browsingLogMaxPending: numeric,
  timeZone: { t: 'custom', check: (v, at, problems) => { const p = timeZoneProblem(v, at); if (p) problems.push(p); } },
  oidc: { t: 'custom', check: (v, at, problems) => oidcProblems(v, at, problems) },
  radiusAccounting: nullable(object({ port: numeric, secretFile: string, listen: string, expiryMinutes: numeric }, ['port', 'secretFile'])),
  directory: nullable(
    object(
      {
        url: string, baseDn: string, bindDn: string, bindPasswordFile: string,
        groupMap: { t: 'record', of: string },
        startTls: boolean, caFile: string, userFilter: string, loginAttributes: strings('attribute names'), groupBaseDn: string,
        formAttribute: string, yearGroupAttribute: string, syncIntervalMinutes: numeric, cacheSeconds: numeric, timeoutMs: numeric,
      },
      ['url', 'baseDn', 'bindDn', 'bindPasswordFile', 'groupMap'],
    ),
  ),
} satisfies Record<string, Shape>;

const configFileSchema = object(configFileKeys);

/** Keys a reader may expect in the file but that are settled elsewhere, with where. */
const notInFile: Record<string, string> = {
  dataDir: 'the data folder is where the file is looked for: set it with --data-dir or SCHOOLGATE_DATA_DIR',
};

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length];
}

/** The known key a misspelling most likely meant; case is ignored so `proxyport` finds `proxyPort`. */
export function nearestKey(key: string, known: string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) [best, bestD] = [k, d];
  }
  // Beyond about a third of the word the "suggestion" is a guess that misleads more than it helps.
  return bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : null;
}

const describe = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : JSON.stringify(v));

function check(shape: Shape, v: unknown, at: string, problems: string[]): void {
  switch (shape.t) {
    case 'string':
      if (typeof v !== 'string') problems.push(`${at} must be a string, got ${describe(v)}`);
      return;
    case 'boolean':
      if (typeof v !== 'boolean') problems.push(`${at} must be true or false, got ${describe(v)}`);
      return;
    case 'numeric':
      if (typeof v !== 'number' && typeof v !== 'string') problems.push(`${at} must be ${shape.what ?? 'a number'}, got ${describe(v)}`);
      return;
    case 'custom':
      shape.check(v, at, problems);
      return;
    case 'nullable':
      if (v !== null) check(shape.of, v, at, problems);
      return;
    case 'list':
      if (!Array.isArray(v)) problems.push(`${at} must be a list of ${shape.what}, got ${describe(v)}`);
      else v.forEach((item, i) => check(shape.of, item, `${at}[${i}]`, problems));
      return;
    case 'record':
      if (typeof v !== 'object' || v === null || Array.isArray(v)) problems.push(`${at} must be an object, got ${describe(v)}`);
      else for (const [k, item] of Object.entries(v)) check(shape.of, item, `${at}.${k}`, problems);
      return;
    case 'object': {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) {
        problems.push(`${at || 'the file'} must be an object, got ${describe(v)}`);
        return;
      }
      const known = Object.keys(shape.keys);
      const prefix = at ? `${at}.` : '';
      for (const [k, item] of Object.entries(v)) {
        if (Object.hasOwn(shape.keys, k)) check(shape.keys[k], item, `${prefix}${k}`, problems);
        else if (!at && notInFile[k]) problems.push(`${k} is not a config file key: ${notInFile[k]}`);
        else {
          const near = nearestKey(k, known);
          problems.push(`unknown key ${prefix}${k}${near ? ` (did you mean ${prefix}${near}?)` : ''}`);
        }
      }
      for (const k of shape.required) if (!Object.hasOwn(v, k)) problems.push(`${prefix}${k} is required`);
    }
  }
}

/**
 * Throws SG_ERR_CONFIG listing every problem in the file at once, each naming its key path
 * (`clients[1].cidr`), so a school fixes the file in one pass rather than one restart per typo.
 */
export function validateConfigFile(file: string, data: unknown): void {
  const problems: string[] = [];
  check(configFileSchema, data, '', problems);
  if (problems.length) throw new SchoolgateError('SG_ERR_CONFIG', `${file}: ${problems.join('; ')}`);
}
