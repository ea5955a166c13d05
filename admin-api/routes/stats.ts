import type { FastifyPluginAsync } from 'fastify';
import { incidentStats } from '../../repos/incidents';
import type { AdminContext } from '../deps';
import { categoryName } from '../present';
import { filterProps, parseDate } from './incident-query';

/** The charts: counts only, so the network manager may read them too. */
export const statsRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, lists } = ctx;

  app.get<{ Querystring: { from?: string; to?: string; tz?: string } }>('/api/stats', {
    config: { access: ['safeguarding_lead', 'network_manager'] },
    schema: {
      tags: ['incidents'],
      summary: 'Counts per day × category, per status and per category (default: the last 30 days)',
      querystring: {
        type: 'object',
        properties: { from: filterProps.from, to: filterProps.to, tz: { type: 'string', maxLength: 64, description: 'IANA time zone for the days (default UTC), e.g. Europe/London' } },
      },
      response: {
        200: {
          type: 'object',
          properties: {
            from: { type: 'string' },
            to: { type: 'string' },
            perDay: { type: 'array', items: { type: 'object', properties: { day: { type: 'string' }, category: { type: ['string', 'null'] }, count: { type: 'integer' } } } },
            perStatus: { type: 'array', items: { type: 'object', properties: { status: { type: 'string' }, count: { type: 'integer' } } } },
            perCategory: {
              type: 'array',
              items: { type: 'object', properties: { category: { type: ['string', 'null'] }, categoryName: { type: ['string', 'null'] }, count: { type: 'integer' } } },
            },
          },
        },
      },
    },
  }, async (req) => {
    const to = parseDate('to', req.query.to, true) ?? new Date();
    const from = parseDate('from', req.query.from, false) ?? new Date(to.getTime() - 30 * 86_400_000);
    // Aggregates only, for both roles: no user, device or address ever appears in them.
    const s = await incidentStats(db, { from, to, timeZone: req.query.tz || undefined });
    return {
      from: from.toISOString(),
      to: to.toISOString(),
      perDay: s.perDay,
      perStatus: s.perStatus,
      perCategory: s.perCategory.map((c) => ({ ...c, categoryName: categoryName(lists, c.category) })),
    };
  });
};
