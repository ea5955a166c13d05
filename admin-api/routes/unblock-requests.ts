import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { applyIncidentChange, CLOSING } from '../../incidents/queries';
import { writeAudit } from '../../repos/audit';
import { getIncident } from '../../repos/incidents';
import { insertOverride } from '../../repos/lists';
import { caller } from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema, incidentSchema, toIncidentJson } from '../present';
import { NM } from './lists';
import { normaliseEntry, overrideSchema, toOverride } from './overrides';

/** Unblock requests: the network manager's decision. */
export const unblockRequestRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, config, lists, listSync } = ctx;

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
    const { user: _u, clientIp: _c, device: _d, ...incident } = toIncidentJson(updated, lists, config);
    return { incident, override };
  });
};
