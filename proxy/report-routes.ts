import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { SchoolgateError } from '../core/errors';
import { silentLogger, type Logger } from '../core/log';
import { verifyReference } from '../incidents/reference';
import type { IncidentSink } from '../incidents/types';
import { renderErrorPage, renderThanksPage } from './blockpage';

export interface BlockReportOptions {
  secret: Buffer;
  incidents: IncidentSink;
  logger?: Logger;
  /** How long a block page's buttons keep working (default 7 days). */
  maxAgeMs?: number;
}

const TYPES = new Set(['self_report', 'unblock_request'] as const);
type ReportType = 'self_report' | 'unblock_request';
const MAX_NOTE = 2000;
const FORM = 'application/x-www-form-urlencoded';

const wantsJson = (req: FastifyRequest) =>
  (req.headers['content-type'] ?? '').startsWith('application/json') || /application\/json/.test(req.headers.accept ?? '') && !/text\/html/.test(req.headers.accept ?? '');

/**
 * POST /block/report: the two buttons of the block page. Accepts only references the gateway
 * signed, so nobody can file a report in someone else's name; everything about the block (URL,
 * user, client IP, category) comes from the signed reference, never from the form.
 */
export const blockReportRoutes: FastifyPluginAsync<BlockReportOptions> = async (app, opts) => {
  const logger = opts.logger ?? silentLogger;
  const maxAge = opts.maxAgeMs ?? 7 * 24 * 3600 * 1000;

  // Encapsulated: the block page's plain HTML forms post urlencoded bodies, the rest of the API does not.
  if (!app.hasContentTypeParser(FORM)) {
    app.addContentTypeParser(FORM, { parseAs: 'string', bodyLimit: 64 * 1024 }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
  }

  const fail = (req: FastifyRequest, reply: FastifyReply, status: number, code: string, message: string) => {
    if (wantsJson(req)) return reply.code(status).send({ error: { code, message } });
    return reply
      .code(status)
      .type('text/html; charset=utf-8')
      .send(renderErrorPage({ status, code, title: 'This report could not be sent', message }));
  };

  app.post('/block/report', { config: { access: 'public' } }, async (req, reply) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const { ref, type, note } = body;
    if (typeof type !== 'string' || !TYPES.has(type as ReportType)) {
      return fail(req, reply, 400, 'SG_ERR_VALIDATION', 'type must be self_report or unblock_request');
    }
    if (note !== undefined && note !== null && (typeof note !== 'string' || note.length > MAX_NOTE)) {
      return fail(req, reply, 400, 'SG_ERR_VALIDATION', `the note must be text of at most ${MAX_NOTE} characters`);
    }
    const block = typeof ref === 'string' ? verifyReference(opts.secret, ref) : null;
    if (!block) {
      logger.warn({ clientIp: req.ip }, `${new SchoolgateError('SG_ERR_BAD_REFERENCE').message}: block report refused`);
      return fail(req, reply, 400, 'SG_ERR_BAD_REFERENCE', 'This link was not issued by the school web filter. Please report the problem to the safeguarding lead in person.');
    }
    const age = Date.now() - block.t;
    if (!Number.isFinite(block.t) || age > maxAge || age < -5 * 60_000) {
      return fail(req, reply, 400, 'SG_ERR_BAD_REFERENCE', 'This block page is too old to report from. Please tell the safeguarding lead in person, quoting the reference.');
    }
    const trimmed = typeof note === 'string' && note.trim() !== '' ? note.trim() : null;
    // One report per block and type: pressing the button twice must not file two.
    const key = opts.incidents.record({
      idempotencyKey: `${type}:${block.k}`,
      kind: type as ReportType,
      relatedKey: block.k,
      url: block.url,
      host: block.host,
      category: block.category,
      user: block.user,
      clientIp: block.clientIp,
      policyGroup: block.group,
      note: trimmed,
    });
    logger.info({ kind: type, relatedKey: block.k, category: block.category }, 'block report recorded');
    if (wantsJson(req)) return reply.code(201).send({ ok: true, kind: type, key, relatedKey: block.k });
    return reply.code(200).type('text/html; charset=utf-8').send(renderThanksPage({ type: type as ReportType, reference: block.k }));
  });
};
