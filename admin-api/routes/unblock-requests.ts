import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { applyIncidentChange, CLOSING } from '../../incidents/queries';
import { writeAudit } from '../../repos/audit';
import { getIncident, listIncidents } from '../../repos/incidents';
import { INCIDENT_STATUSES as STATUSES } from '../../incidents/types';
import { insertOverride } from '../../repos/lists';
import { caller } from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema, incidentSchema, toIncidentJson } from '../present';
import { filterProps, oneOf } from './incident-query';
import { NM } from './lists';
import { pagedResponse } from './paging';
import { normaliseEntry, overrideSchema, toOverride } from './overrides';

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
    return { items: page.rows.map(json).map(({ user: _u, personName: _p, clientIp: _c, device: _d, ...rest }) => rest), nextCursor: page.nextCursor };
  });

  app.post<{ Params: { id: number }; Body: { decision: 'allow' | 'deny'; reason: string } }>('/api/unblock-requests/:id/decision', {
    config: { access: NM },
    schema: {
      tags: ['lists'],
      summary: "Decide an unblock request: 'allow' adds an allow override for its host; both close the request with the reason",
      params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      body: {
        type: 'object',
        required: ['decision', 'reason'],
        properties: { decision: { type: 'string', enum: ['allow', 'deny'] }, reason: { type: 'string', minLength: 1, maxLength: 2000 } },
      },
      response: { 200: { type: 'object', properties: { incident: incidentSchema, override: { anyOf: [overrideSchema, { type: 'null' }] } } }, 404: errorSchema, 409: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const row = await getIncident(db, req.params.id);
    if (!row || row.kind !== 'unblock_request') throw new SchoolgateError('SG_ERR_NOT_FOUND', `unblock request ${req.params.id}`);
    if (CLOSING.has(row.status)) throw new SchoolgateError('SG_ERR_TRANSITION', `unblock request ${row.id} was already decided`);
    const allow = req.body.decision === 'allow';
    if (allow && !row.host) throw new SchoolgateError('SG_ERR_VALIDATION', 'the request names no host to allow');
    const entry = allow ? normaliseEntry('domain', row.host!) : null;
    // The override and the closed request stand or fall together: a request decided meanwhile by
    // someone else (SG_ERR_TRANSITION) leaves no override behind.
    const { override, updated } = await db.transaction(async (tx) => ({
      override: entry === null
        ? null
        : toOverride(await insertOverride(
          tx,
          { action: 'allow', kind: 'domain', entry, category: null, reason: `unblock request ${row.id}: ${req.body.reason.trim()}`, authorId: user.id, author: user.email },
          'keep',
        )),
      updated: await applyIncidentChange(
        tx,
        row.id,
        { status: 'closed', note: `${allow ? 'Unblocked' : 'Kept blocked'}: ${req.body.reason.trim()}` },
        user,
        { allowDirectClose: true },
      ),
    }));
    if (override) {
      await listSync.applyOverrides();
      await listSync.notify('overrides');
    }
    await writeAudit(db, { actor: user, action: 'unblock_decision', target: `incident:${row.id}`, details: { decision: req.body.decision, host: row.host } });
    const { user: _u, personName: _p, clientIp: _c, device: _d, ...incident } = toIncidentJson(updated, lists, config);
    return { incident, override };
  });
};
