import type { FastifyPluginAsync } from 'fastify';
import { listAudit } from '../../repos/audit';
import type { AdminContext } from '../deps';
import { pagedResponse } from './paging';

/** The audit log, read by the auditor and the safeguarding lead: who looked at or changed what. */
export const auditRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db } = ctx;

  app.get<{ Querystring: { cursor?: string; limit?: number; action?: string; target?: string; actor?: string } }>('/api/audit', {
    config: { access: ['auditor', 'safeguarding_lead'] },
    schema: {
      tags: ['accounts'],
      summary: 'The audit log, newest first: logins, incident views and exports, triage, list and account changes',
      querystring: {
        type: 'object',
        properties: {
          cursor: { type: 'string', maxLength: 100 },
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 },
          action: { type: 'string', maxLength: 64 },
          target: { type: 'string', maxLength: 100, description: 'e.g. incident:42 — who viewed or changed it' },
          actor: { type: 'string', maxLength: 254 },
        },
      },
      response: {
        200: pagedResponse({
          type: 'object',
          properties: {
            id: { type: 'integer' }, at: { type: 'string' }, actor: { type: 'string' }, action: { type: 'string' },
            target: { type: ['string', 'null'] }, details: { type: ['object', 'null'], additionalProperties: true },
          },
        }),
      },
    },
  }, async (req) => {
    const { cursor, limit, action, target, actor } = req.query;
    const page = await listAudit(db, { cursor, limit: limit ?? 100, action, target, actor });
    return {
      items: page.rows.map((a) => ({ id: a.id, at: new Date(a.at).toISOString(), actor: a.actor, action: a.action, target: a.target, details: a.details })),
      nextCursor: page.nextCursor,
    };
  });
};
