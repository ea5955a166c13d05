import pino, { type Logger } from 'pino';

/**
 * Paths that must never reach a log line: the AUP promises staff their passwords and sessions
 * stay private, and a leaked CA key would let anyone impersonate every site in school.
 */
const redact = [
  'password', '*.password', 'passwordHash', '*.passwordHash',
  'cookie', '*.cookie', 'headers.cookie', 'req.headers.cookie', 'res.headers["set-cookie"]',
  'authorization', '*.authorization', 'headers.authorization', 'req.headers.authorization',
  'headers["proxy-authorization"]', 'req.headers["proxy-authorization"]',
  'token', '*.token', 'caKey', '*.caKey', 'privateKey', '*.privateKey', 'key', '*.key',
];

export type { Logger };

export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const level = opts.level ?? 'info';
  return pino(
    { name: opts.name ?? 'schoolgate', level, redact: { paths: redact, censor: '[redacted]' } },
    (opts.destination as pino.DestinationStream | undefined) ?? pino.destination({ dest: 2, sync: false }),
  );
}

/** A logger that drops everything: for tests and library callers that bring no logger. */
export const silentLogger: Logger = pino({ level: 'silent' });
