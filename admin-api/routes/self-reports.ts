import type { FastifyPluginAsync } from 'fastify';
import { normalizeTypedUrl } from '../../blocklists/normalize';
import { SchoolgateError } from '../../core/errors';
import { getIncidentByKey } from '../../repos/incidents';
import { caller } from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema, reportSeverity } from '../present';
import { parseDate } from './incident-query';

/** Staff report accidental access in their own name, with or without a block page. */
export const selfReportRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, config } = ctx;

  app.post<{ Body: { url: string; occurredAt?: string; description: string } }>('/api/self-reports', {
    config: { access: ['safeguarding_lead', 'network_manager', 'staff'] },
    schema: {
      tags: ['incidents'],
      summary: 'Report accidental access (with or without a block) in your own name',
      body: {
        type: 'object',
        required: ['url', 'description'],
        properties: {
          url: { type: 'string', minLength: 1, maxLength: 4096 },
          occurredAt: { type: 'string', description: 'when it happened (ISO date-time); default now' },
          description: { type: 'string', minLength: 1, maxLength: 4000 },
        },
      },
      response: { 200: { type: 'object', properties: { id: { type: ['integer', 'null'] }, key: { type: 'string' } } }, 400: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const { url, host, category } = describeUrl(ctx, req.body.url);
    const occurredAt = parseDate('occurredAt', req.body.occurredAt, false) ?? new Date();
    if (occurredAt.getTime() > Date.now() + 5 * 60_000) throw new SchoolgateError('SG_ERR_VALIDATION', 'occurredAt is in the future');
    const key = ctx.incidents.record({
      kind: 'self_report',
      occurredAt,
      user: user.email,
      clientIp: req.ip,
      url,
      host,
      category,
      note: req.body.description.trim(),
      severity: reportSeverity('self_report', category, null, config.severity),
    });
    await ctx.incidents.flush();
    const row = await getIncidentByKey(db, key);
    return { id: row?.id ?? null, key };
  });
};

/** Normalises what staff typed and finds the category the lists give it, so the DSL sees it at once. */
function describeUrl(ctx: AdminContext, raw: string): { url: string; host: string | null; category: string | null } {
  const text = raw.trim();
  try {
    const n = normalizeTypedUrl(text);
    const current = ctx.lists.current as { matches?: (u: typeof n) => Array<{ category: string }> };
    const black = new Set(ctx.lists.loaded ? ctx.lists.blackCategories() : []);
    const hit = current.matches?.(n).find((m) => black.has(m.category));
    return { url: text, host: n.host, category: hit?.category ?? null };
  } catch {
    // Staff may only remember part of an address: keep what they wrote rather than refuse the report.
    return { url: text, host: null, category: null };
  }
}
