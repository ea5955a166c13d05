import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { applyIncidentChange, CLOSING } from '../../incidents/queries';
import { writeAudit } from '../../repos/audit';
import { getIncident, listIncidents } from '../../repos/incidents';
import { INCIDENT_STATUSES as STATUSES } from '../../incidents/types';
import { insertOverride } from '../../repos/lists';
import { insertUnblockDecision } from '../../repos/unblock';
import type { UnblockOutcome } from '../../core/vocabulary';
import { emailDecision } from '../alerts';
import { caller } from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema, incidentSchema, toDecisionJson, toIncidentJson, unblockDecisionSchema, withDecisions } from '../present';
import { filterProps, oneOf } from './incident-query';
import { NM } from './lists';
import { pagedResponse } from './paging';
import { checkScope, normaliseEntry, overrideSchema, scopeProps, toOverride } from './overrides';

/** Unblock requests: the network manager's decision. */
export const unblockRequestRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, config, lists, listSync } = ctx;
  const json = (row: Parameters<typeof toIncidentJson>[0]) => toIncidentJson(row, lists, config);

  app.get<{ Querystring: { status?: string[]; cursor?: string; limit?: number } }>('/api/unblock-requests', {
    config: { access: ['network_manager', 'safeguarding_lead'] },
    schema: {
      tags: ['lists'],
      summary: 'Unblock requests, without who asked (need to know)',
      querystring: { type: 'object', properties: { status: filterProps.status, cursor: { type: 'string', maxLength: 100 }, limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 } } },
      response: {
        200: pagedResponse({
          type: 'object',
          properties: {
            id: { type: 'integer' },
            status: { type: 'string' },
            category: { type: ['string', 'null'] },
            categoryName: { type: ['string', 'null'] },
            url: { type: ['string', 'null'] },
            host: { type: ['string', 'null'] },
            note: { type: ['string', 'null'] },
            count: { type: 'integer' },
            occurredAt: { type: 'string' },
            illegal: { type: 'boolean' },
            decision: { anyOf: [unblockDecisionSchema, { type: 'null' }] },
          },
        }),
      },
    },
  }, async (req) => {
    const page = await listIncidents(
      db,
      { kind: ['unblock_request'], status: oneOf('status', req.query.status, STATUSES) },
      { cursor: req.query.cursor, limit: req.query.limit ?? 100 },
    );
    // The response schema drops user, clientIp and device even if a field is added to the JSON later.
    return { items: await withDecisions(db, page.rows.map(json).map(({ user: _u, personName: _p, clientIp: _c, device: _d, ...rest }) => rest)), nextCursor: page.nextCursor };
  });

  app.post<{ Params: { id: number }; Body: { decision: 'allow' | 'deny'; reason: string; group?: string; expiresAt?: string } }>('/api/unblock-requests/:id/decision', {
    config: { access: NM },
    schema: {
      tags: ['lists'],
      summary: "Decide an unblock request: 'allow' (approved) adds an allow override for its host, for everyone or one policy group, until deleted or an expiry; 'deny' (declined) keeps it blocked. Both close the request, keep the outcome and reason for the person who asked (My reports), email them when email is set up, and are audited",
      params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      body: {
        type: 'object',
        required: ['decision', 'reason'],
        properties: {
          decision: { type: 'string', enum: ['allow', 'deny'] },
          reason: { type: 'string', minLength: 1, maxLength: 2000, pattern: '\\S' },
          ...scopeProps,
        },
      },
      response: {
        200: { type: 'object', properties: { incident: incidentSchema, override: { anyOf: [overrideSchema, { type: 'null' }] } } },
        400: errorSchema, 404: errorSchema, 409: errorSchema,
      },
    },
  }, async (req) => {
    const user = caller(req);
    const row = await getIncident(db, req.params.id);
    if (!row || row.kind !== 'unblock_request') throw new SchoolgateError('SG_ERR_NOT_FOUND', `unblock request ${req.params.id}`);
    if (CLOSING.has(row.status)) throw new SchoolgateError('SG_ERR_TRANSITION', `unblock request ${row.id} was already decided`);
    const allow = req.body.decision === 'allow';
    const outcome: UnblockOutcome = allow ? 'approved' : 'declined';
    const reason = req.body.reason.trim();
    if (!allow && (req.body.group !== undefined || req.body.expiresAt !== undefined)) {
      throw new SchoolgateError('SG_ERR_VALIDATION', 'group and expiresAt scope an approval; a declined request adds no entry');
    }
    if (allow && !row.host) throw new SchoolgateError('SG_ERR_VALIDATION', 'the request names no host to allow');
    const entry = allow ? normaliseEntry('domain', row.host!) : null;
    const scope = allow ? await checkScope(db, config, req.body) : { group: null, expiresAt: null };
    // The override, the decision and the closed request stand or fall together: a request decided
    // meanwhile by someone else (SG_ERR_TRANSITION) leaves no override behind.
    const { override, updated, decision } = await db.transaction(async (tx) => {
      const o = entry === null
        ? null
        : await insertOverride(
          tx,
          { action: 'allow', kind: 'domain', entry, category: null, reason: `unblock request ${row.id}: ${reason}`, authorId: user.id, author: user.email, ...scope },
          'keep',
        );
      const updated = await applyIncidentChange(
        tx,
        row.id,
        { status: 'closed', note: `${allow ? 'Unblocked' : 'Kept blocked'}: ${reason}` },
        user,
      );
      let decision;
      try {
        decision = await insertUnblockDecision(tx, { incidentId: row.id, outcome, reason, overrideId: o?.id ?? null });
      } catch (err) {
        if ((err as { code?: string }).code === '23505') throw new SchoolgateError('SG_ERR_TRANSITION', `unblock request ${row.id} was already decided`);
        throw err;
      }
      return { override: o ? toOverride(o) : null, updated, decision };
    });
    if (override) {
      await listSync.applyOverrides();
      await listSync.notify('overrides');
    }
    await writeAudit(db, {
      actor: user, action: 'unblock_decision', target: `incident:${row.id}`,
      details: { decision: req.body.decision, outcome, reason, host: row.host, override: override?.id ?? null, group: scope.group, expiresAt: scope.expiresAt?.toISOString() ?? null },
    });
    const { user: requester, personName: _p, clientIp: _c, device: _d, ...incident } = toIncidentJson(updated, lists, config);
    // Not awaited: a slow mail server must not hold the decision; the outcome is in My reports meanwhile.
    void emailDecision(ctx, requester, { incidentId: row.id, host: row.host, illegal: incident.illegal, outcome, reason });
    return { incident: { ...incident, decision: toDecisionJson(decision) }, override };
  });
};
