/**
 * The one catalogue of error codes. Codes are stable: logs, API responses, the CLI and tests
 * match on them, so a code is never renamed or reused — add a new one instead.
 */
export const codes = {
  // configuration and CLI
  SG_ERR_CONFIG: 'invalid configuration',
  SG_ERR_USAGE: 'invalid command line',
  SG_ERR_PORT_IN_USE: 'a port schoolgate must listen on is already in use',
  SG_ERR_CONSOLE_UNREACHABLE: 'listening on every address without --public-url: the console links printed are loopback, which other devices cannot reach',
  // blocklists
  SG_ERR_LIST_SOURCE: 'blocklist source cannot be read',
  SG_ERR_LIST_LINE: 'blocklist line skipped',
  SG_ERR_LIST_EMPTY: 'no blocklists loaded',
  SG_ERR_LIST_REJECTED: 'blocklist rejected; the previous lists keep serving',
  SG_ERR_URL_INVALID: 'URL cannot be parsed',
  // certificates
  SG_ERR_CA_MISSING: 'school CA not initialised',
  SG_ERR_CA_EXISTS: 'school CA already exists',
  SG_ERR_CA_INVALID: 'school CA files cannot be used (unreadable, mismatched key and certificate, or unsupported key)',
  SG_ERR_CERT_HOST: 'host name not valid for a certificate',
  // database and incidents
  SG_ERR_DB_UNAVAILABLE: 'database unreachable',
  SG_ERR_DB_LOCKED: 'embedded database in use by another process',
  SG_ERR_DB_TOO_NEW: 'database schema is newer than this version of schoolgate',
  SG_ERR_MIGRATION: 'migration failed',
  SG_ERR_SPOOL: 'incident spool cannot be written',
  SG_ERR_INCIDENT_REJECTED: 'incident refused by the database; kept in spool/rejected.ndjson',
  SG_ERR_INCIDENT_DROPPED: 'incident dropped: database and spool unavailable and the in-memory queue is full',
  // proxy
  SG_ERR_CLIENT_DENIED: 'client not authorised to use the gateway',
  SG_ERR_PROXY_AUTH: 'proxy authentication required',
  SG_ERR_BAD_REQUEST: 'malformed request',
  SG_ERR_UPSTREAM: 'upstream unreachable',
  SG_ERR_HOST_MISMATCH: 'Host header does not match the CONNECT target',
  SG_ERR_BAD_REFERENCE: 'block reference invalid or forged',
  // admin API
  SG_ERR_UNAUTHENTICATED: 'login required',
  SG_ERR_FORBIDDEN: 'not allowed for this role',
  SG_ERR_NOT_FOUND: 'not found',
  SG_ERR_VALIDATION: 'invalid input',
  SG_ERR_BAD_ORIGIN: 'cross-origin request refused',
  SG_ERR_TRANSITION: 'status change not allowed',
  SG_ERR_LOGIN: 'email or password incorrect',
  SG_ERR_USER_EXISTS: 'user already exists',
  SG_ERR_EXISTS: 'already exists',
  SG_ERR_RATE_LIMITED: 'too many requests; try again later',
  // block references and reports (issue 11, points 7-8)
  SG_ERR_REFERENCE_CLIENT: 'block report refused: sent from a different client address than the one that was blocked',
  // proxy authentication (issue #11, slice auth)
  SG_ERR_PROXY_AUTH_LOCKED: 'too many failed proxy sign-ins from this address or for this account; refused for a while',
  SG_ERR_PROXY_AUTH_BUSY: 'too many password checks waiting; proxy sign-in refused for now',
  // proxy: what the gateway may reach, and connection limits (issue #11, network slice)
  SG_ERR_DESTINATION_DENIED: 'destination not reachable through the gateway (loopback, link-local, the gateway itself, a closed range, or a CONNECT port not allowed)',
  SG_ERR_TOO_MANY_CONNECTIONS: 'too many connections from this client address',
  SG_ERR_TIMEOUT: 'client too slow: request headers or TLS handshake not received in time',
  // issue #11, lists slice: list source locations, archives, size caps
  SG_ERR_LIST_LOCATION: 'list source location refused: outside the lists folders, or through a symbolic link',
  SG_ERR_LIST_ARCHIVE: 'list archive refused: a link, device, absolute or ".." member',
  SG_ERR_LIST_TOO_LARGE: 'list download or archive exceeds its size limit',
  // durability (#11 points 9-11)
  SG_ERR_JOURNAL: 'incident journal cannot be written; incidents held in memory until stored',
  // data folder permissions (issue #11 point 2)
  SG_ERR_DATA_DIR: 'data folder permissions cannot be made owner-only',
  // browsing log (issue 13, point 3)
  SG_ERR_BROWSING_LOG: 'browsing log not written: the database is unavailable; rows kept in memory up to browsingLogMaxPending, dropped and counted beyond',
  // console sign-in with the school's identity provider (issue 15 point 3)
  SG_ERR_OIDC: 'sign-in with the identity provider failed',
  // identity (issue 15, point 2)
  SG_ERR_RADIUS: 'RADIUS accounting packets not used: wrong shared secret, or too many addresses held',
  // identity from the school's directory and MIS imports (issue 15, points 1 and 4)
  SG_ERR_DIRECTORY: 'school directory (LDAP) unreachable, too slow, or refused the service account; directory sign-ins not verified',
  SG_ERR_IMPORT: 'import file refused: lines that cannot be used (each named with its line number)',
  SG_ERR_INTERNAL: 'internal error',
} as const;

export type ErrorCode = keyof typeof codes;

export class SchoolgateError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message?: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message ? `${codes[code]}: ${message}` : codes[code], options);
    this.name = 'SchoolgateError';
    this.code = code;
    this.details = details;
  }
}

export function isSchoolgateError(err: unknown, code?: ErrorCode): err is SchoolgateError {
  return err instanceof SchoolgateError && (code === undefined || err.code === code);
}
