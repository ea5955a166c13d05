import type { FastifyPluginAsync } from 'fastify';
import { normalizeTypedUrl } from '../../blocklists/normalize';
import { SchoolgateError } from '../../core/errors';
import { LINKABLE_KINDS } from '../../incidents/queries';
import { getIncident, getIncidentByKey, type IncidentRow } from '../../repos/incidents';
import { caller } from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema, reportSeverity } from '../present';
import { parseDate } from './incident-query';

/** Staff report accidental access in their own name, with or without a block page. */
export const selfReportRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, config } = ctx;

  app.post<{ Body: { url?: string; occurredAt?: string; description: string; blockReference?: string; incidentId?: number } }>('/api/self-reports', {
    config: { access: ['safeguarding_lead', 'network_manager', 'staff'] },
    schema: {
      tags: ['incidents'],
      summary: 'Report accidental access (with or without a block) in your own name; name the block it is about (the block page\'s reference, or the incident\'s id in My reports) to link the two',
      body: {
        type: 'object',
        required: ['description'],
        properties: {
          url: { type: 'string', minLength: 1, maxLength: 4096, description: 'the address; may be left out when the block is named (its address is taken)' },
          occurredAt: { type: 'string', description: 'when it happened (ISO date-time); default now' },
          description: { type: 'string', minLength: 1, maxLength: 4000 },
          blockReference: { type: 'string', minLength: 1, maxLength: 200, description: 'the reference the block page showed' },
          incidentId: { type: 'integer', minimum: 1, description: 'the blocked incident, as My reports lists it' },
        },
      },
      response: {
        200: { type: 'object', properties: { id: { type: ['integer', 'null'] }, key: { type: 'string' }, blockId: { type: ['integer', 'null'] } } },
        400: errorSchema,
        404: errorSchema,
      },
    },
  }, async (req) => {
    const user = caller(req);
    const block = await blockNamed(req.body, user.email);
    const typed = req.body.url?.trim() || block?.url;
    if (!typed) throw new SchoolgateError('SG_ERR_VALIDATION', 'give the web address (url), or the block it is about (blockReference or incidentId)');
    const described = req.body.url?.trim() || !block ? describeUrl(ctx, typed) : { url: typed, host: block.host, category: block.category };
    const occurredAt = parseDate('occurredAt', req.body.occurredAt, false) ?? new Date();
    if (occurredAt.getTime() > Date.now() + 5 * 60_000) throw new SchoolgateError('SG_ERR_VALIDATION', 'occurredAt is in the future');
    const key = ctx.incidents.record({
      kind: 'self_report',
      occurredAt,
      user: user.email,
      clientIp: req.ip,
      url: described.url,
      host: described.host,
      category: described.category,
      note: req.body.description.trim(),
      // The incident's own key (not a repeat's): the link is then one index look-up either way.
      relatedKey: block?.idempotency_key ?? null,
      severity: reportSeverity('self_report', described.category, block?.policy_group ?? null, config.severity),
    });
    await ctx.incidents.flush();
    const row = await getIncidentByKey(db, key);
    return { id: row?.id ?? null, key, blockId: block?.id ?? null };
  });

  /**
   * The blocked incident a report names, if it names one. Only a block of the reporter's own, or
   * one nobody was signed in for (a shared or unidentified device: the report is what tells the
   * DSL whose it was), may be named; anyone else's answers exactly as a reference that does not
   * exist, so a reference seen on someone else's screen tells nothing.
   */
  async function blockNamed(body: { blockReference?: string; incidentId?: number }, email: string): Promise<IncidentRow | null> {
    const reference = body.blockReference?.trim();
    if (!reference && body.incidentId === undefined) return null;
    const row = reference ? await getIncidentByKey(db, reference) : await getIncident(db, body.incidentId!);
    const mine = row !== null && LINKABLE_KINDS.includes(row.kind) && (row.user_name === null || row.user_name.toLowerCase() === email.toLowerCase());
    if (!mine) throw new SchoolgateError('SG_ERR_NOT_FOUND', reference ? `no block of yours has the reference ${reference}` : `no block of yours is incident ${body.incidentId}`);
    return row;
  }
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
