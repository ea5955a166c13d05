import { EventEmitter } from 'node:events';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyPluginAsync, type FastifyServerOptions } from 'fastify';
import fp from 'fastify-plugin';
import cookie from '@fastify/cookie';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { isSchoolgateError, SchoolgateError, type ErrorCode } from '../core/errors';
import { isDbUnreachable } from '../db/errors';
import { installAuth, type Access } from './auth';
import { openMailer, startAlerts } from './alerts';
import type { AdminContext, AdminDeps } from './deps';
import { sessionRoutes } from './routes/session';
import { oidcRoutes } from './routes/oidc';
import { tokenRoutes } from './routes/tokens';
import { incidentRoutes } from './routes/incidents';
import { statsRoutes } from './routes/stats';
import { selfReportRoutes } from './routes/self-reports';
import { eventRoutes } from './routes/events';
import { timelineRoutes } from './routes/timeline';
import { listRoutes } from './routes/lists';
import { overrideRoutes } from './routes/overrides';
import { policyGroupRoutes } from './routes/policy-groups';
import { unblockRequestRoutes } from './routes/unblock-requests';
import { ListSync } from './list-sync';
import { PhraseSync } from './phrase-sync';
import { PhraseBook } from '../filter/phrase-book';
import { phraseRoutes } from './routes/phrases';
import { PolicyGroups } from '../blocklists/policy-groups';
import { accountRoutes } from './routes/accounts';
import { auditRoutes } from './routes/audit';
import { publicRoutes } from './routes/public';
import { healthRoutes } from './routes/health';
import { installControl } from './routes/control';
import { blockReportRoutes } from './routes/block-report';

export type { AdminContext, AdminDeps, IncidentWriterLike, ListStoreLike, Mailer, OverrideEntry } from './deps';

export { consoleDir } from './console-dir';

/** What the admin API is built from: the stores it reads and writes, the logger, the secrets. */
export type AdminApiOptions = AdminDeps;

const STATUS: Partial<Record<ErrorCode, number>> = {
  SG_ERR_UNAUTHENTICATED: 401,
  SG_ERR_LOGIN: 401,
  SG_ERR_FORBIDDEN: 403,
  SG_ERR_BAD_ORIGIN: 403,
  SG_ERR_NOT_FOUND: 404,
  SG_ERR_CA_MISSING: 404,
  SG_ERR_VALIDATION: 400,
  SG_ERR_URL_INVALID: 400,
  SG_ERR_BAD_REQUEST: 400,
  SG_ERR_BAD_REFERENCE: 400,
  SG_ERR_LIST_SOURCE: 400,
  SG_ERR_LIST_LOCATION: 400,
  SG_ERR_LIST_ARCHIVE: 400,
  SG_ERR_LIST_TOO_LARGE: 400,
  SG_ERR_TRANSITION: 409,
  SG_ERR_USER_EXISTS: 409,
  SG_ERR_EXISTS: 409,
  SG_ERR_LIST_REJECTED: 422,
  SG_ERR_RATE_LIMITED: 429,
  SG_ERR_OIDC: 400,
  SG_ERR_DB_UNAVAILABLE: 503,
};

export interface RouteEntry {
  method: string;
  url: string;
  /** As declared; undefined only outside /api (the console's files, /docs). */
  access: Access | undefined;
}

const routeTables = new WeakMap<FastifyInstance, readonly RouteEntry[]>();

/** Every route registered on an instance carrying the admin API, HEAD twins of GET routes included. */
export function registeredRoutes(app: FastifyInstance): readonly RouteEntry[] {
  const t = routeTables.get(app);
  if (!t) throw new SchoolgateError('SG_ERR_INTERNAL', 'no admin API registered on this fastify instance');
  return t;
}

/**
 * The server options the admin API's schemas and logging assume. The instance is made by whoever
 * hosts the plugin (buildAdminApp here), and fastify takes these only at construction, so they
 * are named once for both.
 */
export function adminServerOptions(logger: AdminApiOptions['logger']): FastifyServerOptions {
  return {
    loggerInstance: logger as unknown as FastifyBaseLogger,
    // Uploaded lists travel as JSON; a UT1 category file can be several megabytes.
    bodyLimit: 50 * 1024 * 1024,
    // Request lines would put search text and URLs from query strings in the log; errors are logged by the plugin.
    logController: new LogController({ disableRequestLogging: true }),
    // The routes' schemas are written for these: one ?status=x arrives as an array, defaults fill what a caller left out.
    ajv: { customOptions: { removeAdditional: true, coerceTypes: 'array', useDefaults: true } },
  };
}

/**
 * The admin API as a fastify plugin: console, /api, /docs, /healthz, /metrics, /block/report and
 * the control socket. Every error leaves as `{ error: { code, message } }` with a stable SG_ERR_ code.
 *
 * Wrapped with fastify-plugin, so it runs in the scope of the instance it is registered on rather
 * than in a child of it. Encapsulation is broken on purpose: what it installs is the policy of
 * the whole server, and in a child scope it would hold only for the routes registered inside it.
 * A route added beside it (by another plugin, or by access.test.ts) would then escape the
 * declared-access refusal, the login check, the no-store and DENY headers and the SG_ERR_ error
 * shape: fail-open. The control socket also starts from the listening instance's onListen hook.
 * The route files below stay encapsulated plugins of their own (their content-type parsers,
 * rate limits and hooks are theirs alone).
 */
export const adminApi: FastifyPluginAsync<AdminApiOptions> = fp(adminApiScope, {
  // Named so a plugin that needs the login check can declare it in `dependencies`; fastify checks the major.
  name: 'schoolgate-admin-api',
  fastify: '5.x',
});

async function adminApiScope(app: FastifyInstance, deps: AdminApiOptions): Promise<void> {
  const listSync = deps.listSync ?? new ListSync({ db: deps.db, store: deps.lists, policies: new PolicyGroups(deps.config, deps.lists), config: deps.config, logger: deps.logger });
  const phraseSync = deps.phraseSync ?? new PhraseSync({ db: deps.db, book: new PhraseBook(), logger: deps.logger });
  // One transport for alerts and decision emails, made here so both use it and it is closed once.
  const mail = openMailer(deps);
  const ctx: AdminContext = { ...deps, mailer: mail.mailer ?? undefined, listSync, phraseSync, hub: new EventEmitter() };
  // Every route says who may call it: an API route without `access` is refused at registration
  // (not left to a default), and the table lets the access test walk what is really registered.
  const table: RouteEntry[] = [];
  routeTables.set(app, table);
  app.addHook('onRoute', (r) => {
    const access = r.config?.access;
    for (const method of [r.method].flat()) {
      if (r.url.startsWith('/api/') && access === undefined) {
        throw new SchoolgateError('SG_ERR_INTERNAL', `${method} ${r.url} declares no config.access; every /api route must say who may call it`);
      }
      table.push({ method, url: r.url, access });
    }
  });
  ctx.hub.setMaxListeners(0);

  app.setErrorHandler((err: FastifyError | SchoolgateError, req, reply) => {
    let status: number;
    let code: ErrorCode;
    let message = err.message;
    let details: Record<string, unknown> | undefined;
    if (isSchoolgateError(err)) {
      code = err.code;
      status = STATUS[code] ?? 500;
      details = err.details;
    } else if (isDbUnreachable(err)) {
      // Connection-level (db/errors.ts): a 503 to retry, not a 500 bug.
      code = 'SG_ERR_DB_UNAVAILABLE';
      status = 503;
      message = 'the incident database cannot be reached; try again shortly';
      req.log.error({ err: err.message, route: req.routeOptions.url }, 'database unreachable');
    } else if ((err as FastifyError).validation) {
      code = 'SG_ERR_VALIDATION';
      status = 400;
    } else if ((err as FastifyError).statusCode === 429) {
      code = 'SG_ERR_RATE_LIMITED';
      status = 429;
    } else if ((err as FastifyError).statusCode && (err as FastifyError).statusCode! >= 400 && (err as FastifyError).statusCode! < 500) {
      // fastify's own: malformed JSON, body too large, unsupported media type...
      status = (err as FastifyError).statusCode!;
      code = status === 404 ? 'SG_ERR_NOT_FOUND' : 'SG_ERR_BAD_REQUEST';
    } else {
      status = 500;
      code = 'SG_ERR_INTERNAL';
      message = 'internal error; see the server log';
      // The route, not the URL: query strings carry the safeguarding lead's searches (names of pupils).
      req.log.error({ err, route: req.routeOptions.url, method: req.method }, 'admin API request failed');
    }
    reply.code(status).send({ error: { code, message, ...(details ? { details } : {}) } });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ error: { code: 'SG_ERR_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` } });
  });
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    if (!req.url.startsWith('/docs')) reply.header('x-frame-options', 'DENY');
    // Incident data must not linger in shared browser caches on staff-room machines.
    if (req.url.startsWith('/api/')) reply.header('cache-control', 'no-store');
  });

  await app.register(cookie);
  await app.register(rateLimit, { global: false });
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'schoolgate admin API',
        description: 'Safeguarding incidents, self-reports, lists and accounts. Log in with POST /api/login (session cookie) or send Authorization: Bearer <token>.',
        version: '0.1.0',
      },
      components: {
        securitySchemes: {
          session: { type: 'apiKey', in: 'cookie', name: 'sg_session' },
          bearer: { type: 'http', scheme: 'bearer' },
        },
      },
      security: [{ session: [] }, { bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  installAuth(app, { db: deps.db, config: deps.config });

  await app.register(sessionRoutes, ctx);
  await app.register(oidcRoutes, ctx);
  await app.register(tokenRoutes, ctx);
  await app.register(incidentRoutes, ctx);
  await app.register(statsRoutes, ctx);
  await app.register(selfReportRoutes, ctx);
  await app.register(eventRoutes, ctx);
  await app.register(timelineRoutes, ctx);
  await app.register(listRoutes, ctx);
  await app.register(overrideRoutes, ctx);
  await app.register(policyGroupRoutes, ctx);
  await app.register(phraseRoutes, ctx);
  await app.register(unblockRequestRoutes, ctx);
  await app.register(accountRoutes, ctx);
  await app.register(auditRoutes, ctx);
  await app.register(publicRoutes, ctx);
  await app.register(healthRoutes, ctx);
  // `schoolgate users` in another process reaches the embedded database through this server,
  // over a 0600 Unix socket in the data folder: never over this app's TCP port.
  installControl(app, ctx);
  await registerBlockReport(app, deps);

  const stopAlerts = startAlerts(ctx);
  app.addHook('preClose', async () => {
    // Open event streams would keep close() waiting for ever.
    ctx.hub.emit('close');
  });
  app.addHook('onClose', async () => {
    await stopAlerts();
    mail.close();
    // Its own list sync's expiry timer (a shared one is stopped by its owner, server/start.ts).
    if (!deps.listSync) listSync.stopExpiry();
  });
}

/**
 * A fastify instance carrying the admin API, not listening: tests use inject(), server/start.ts
 * calls listen.
 */
export async function buildAdminApp(opts: AdminApiOptions): Promise<FastifyInstance> {
  const app = Fastify(adminServerOptions(opts.logger));
  await app.register(adminApi, opts);
  return app;
}

/** The gateway engineer's POST /block/report plugin: the block page's "report it" buttons. */
async function registerBlockReport(app: FastifyInstance, deps: AdminDeps): Promise<void> {
  await app.register(blockReportRoutes, { secret: deps.referenceSecret, incidents: deps.incidents, logger: deps.logger, severity: deps.config.severity });
}
