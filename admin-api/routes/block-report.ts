import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import rateLimit from '@fastify/rate-limit';
import { SchoolgateError } from '../../core/errors';
import { silentLogger, type Logger } from '../../core/log';
import { openReference } from '../../incidents/reference';
import { REPORT_KINDS, type IncidentSink, type ReportKind } from '../../incidents/types';
import { renderErrorPage, renderThanksPage } from '../../filter/blockpage';
import type { SeverityConfig } from '../../core/severity';
import { reportSeverity } from '../present';
import { clientAddress } from '../gateway-pages';

export interface BlockReportOptions {
  secret: Buffer;
  incidents: IncidentSink;
  logger?: Logger;
  /** How long a block page's buttons keep working (default 7 days). */
  maxAgeMs?: number;
  /** The school's severity choices: a self-report about an alerting category alerts. */
  severity?: SeverityConfig;
  /** Reports (and refused attempts) one client address may send per window (default 20 per 10 minutes). */
  limit?: { max: number; windowMs: number };
}

const TYPES = new Set<ReportType>(REPORT_KINDS);
type ReportType = ReportKind;
const MAX_NOTE = 2000;
const FORM = 'application/x-www-form-urlencoded';
/** Reports remembered to merge a repeat without recording (or counting) it again. */
const RECENT_MAX = 50_000;

const wantsJson = (req: FastifyRequest) =>
  (req.headers['content-type'] ?? '').startsWith('application/json') || /application\/json/.test(req.headers.accept ?? '') && !/text\/html/.test(req.headers.accept ?? '');

/**
 * POST /block/report: the two buttons of the block page, served under the gateway's own name
 * (admin-api/gateway-pages.ts) and on the console's port. Accepts only references the gateway
 * sealed, from the client address that was blocked, so nobody can file a report in someone
 * else's name (a reference read off a page or a shared screen is no use elsewhere); everything
 * about the block (URL, user, client IP, category) comes from the reference, never from the form.
 */
export const blockReportRoutes: FastifyPluginAsync<BlockReportOptions> = async (app, opts) => {
  const logger = opts.logger ?? silentLogger;
  const maxAge = opts.maxAgeMs ?? 7 * 24 * 3600 * 1000;
  const limitOpts = opts.limit ?? { max: 20, windowMs: 10 * 60_000 };

  // Encapsulated: the block page's plain HTML forms post urlencoded bodies, the rest of the API does not.
  if (!app.hasContentTypeParser(FORM)) {
    app.addContentTypeParser(FORM, { parseAs: 'string', bodyLimit: 64 * 1024 }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
  }
  if (!app.hasDecorator('createRateLimit')) await app.register(rateLimit, { global: false });
  // Counted by hand rather than as route config so that a repeat press of the same button, merged
  // below, costs nothing, and the refusal is a page a person can read rather than JSON.
  const limit = app.createRateLimit({ max: limitOpts.max, timeWindow: limitOpts.windowMs, keyGenerator: (req) => `block-report|${clientAddress(req)}` });

  // Insertion-ordered: the oldest entries go first once full. The database's idempotency keys
  // keep a repeat from becoming a second report anyway; this only spares the write and the limit.
  const recent = new Map<string, number>();
  const remember = (key: string) => {
    recent.delete(key);
    recent.set(key, Date.now() + maxAge);
    if (recent.size > RECENT_MAX) recent.delete(recent.keys().next().value!);
  };
  const isRecent = (key: string) => {
    const until = recent.get(key);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    recent.delete(key);
    return false;
  };

  const fail = (req: FastifyRequest, reply: FastifyReply, status: number, code: string, message: string) => {
    if (wantsJson(req)) return reply.code(status).send({ error: { code, message } });
    return reply
      .code(status)
      .type('text/html; charset=utf-8')
      .send(renderErrorPage({ status, code, title: 'This report could not be sent', message }));
  };
  const sent = (req: FastifyRequest, reply: FastifyReply, type: ReportType, key: string, relatedKey: string) => {
    if (wantsJson(req)) return reply.code(201).send({ ok: true, kind: type, key, relatedKey });
    return reply.code(200).type('text/html; charset=utf-8').send(renderThanksPage({ type, reference: relatedKey }));
  };

  app.post('/block/report', { config: { access: 'public' } }, async (req, reply) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const { ref, type, note } = body;
    const block = typeof ref === 'string' ? openReference(opts.secret, ref) : null;
    // As the gateway saw it when the request came through it (its own pages' name), else the socket's peer.
    const client = clientAddress(req);
    const bound = block !== null && typeof block.clientIp === 'string' && block.clientIp !== '' && block.clientIp === client;
    const reportKey = block && typeof type === 'string' ? `${type}:${block.k}` : null;
    const repeat = bound && reportKey !== null && TYPES.has(type as ReportType) && isRecent(reportKey);

    if (!repeat) {
      const r = await limit(req);
      if (!r.isAllowed && r.isExceeded) {
        reply.header('retry-after', r.ttlInSeconds);
        return fail(req, reply, 429, 'SG_ERR_RATE_LIMITED', `Too many reports from this device. Please try again in ${Math.ceil(r.ttlInSeconds / 60)} minute(s), or tell the safeguarding lead in person.`);
      }
    }
    if (typeof type !== 'string' || !TYPES.has(type as ReportType)) {
      return fail(req, reply, 400, 'SG_ERR_VALIDATION', `type must be ${REPORT_KINDS.join(' or ')}`);
    }
    if (note !== undefined && note !== null && (typeof note !== 'string' || note.length > MAX_NOTE)) {
      return fail(req, reply, 400, 'SG_ERR_VALIDATION', `the note must be text of at most ${MAX_NOTE} characters`);
    }
    if (!block) {
      // The address is who tried; it stays out of the log the network manager reads.
      logger.warn({ code: 'SG_ERR_BAD_REFERENCE' }, `${new SchoolgateError('SG_ERR_BAD_REFERENCE').message}: block report refused`);
      logger.debug({ clientIp: client }, 'block report refused: from');
      return fail(req, reply, 400, 'SG_ERR_BAD_REFERENCE', 'This link was not issued by the school web filter. Please report the problem to the safeguarding lead in person.');
    }
    if (!bound) {
      logger.warn({ code: 'SG_ERR_REFERENCE_CLIENT' }, 'block report refused: sent from another client address than the one blocked');
      logger.debug({ clientIp: client, blockedClientIp: block.clientIp, key: block.k }, 'block report refused: from');
      return fail(req, reply, 403, 'SG_ERR_REFERENCE_CLIENT', 'This block page was shown on a different device. Please report from the device that was blocked, or tell the safeguarding lead in person, quoting the reference.');
    }
    const age = Date.now() - block.t;
    if (!Number.isFinite(block.t) || age > maxAge || age < -5 * 60_000) {
      return fail(req, reply, 400, 'SG_ERR_BAD_REFERENCE', 'This block page is too old to report from. Please tell the safeguarding lead in person, quoting the reference.');
    }
    // One report per block and type: pressing the button twice must not file two.
    if (repeat) return sent(req, reply, type as ReportType, reportKey!, block.k);
    const trimmed = typeof note === 'string' && note.trim() !== '' ? note.trim() : null;
    const key = opts.incidents.record({
      idempotencyKey: reportKey!,
      kind: type as ReportType,
      relatedKey: block.k,
      url: block.url,
      host: block.host,
      category: block.category,
      user: block.user,
      clientIp: block.clientIp,
      policyGroup: block.group,
      // The report is about the block: the person is whoever the block's source named.
      identitySource: block.src ?? null,
      note: trimmed,
      severity: reportSeverity(type as ReportType, block.category, block.group, opts.severity),
    });
    remember(reportKey!);
    logger.info({ kind: type, category: block.category }, 'block report recorded');
    return sent(req, reply, type as ReportType, key, block.k);
  });
};
