import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { timeZoneProblem } from '../../core/local-time';
import { databaseKnowsZone, incidentStats } from '../../repos/incidents';
import type { AdminContext } from '../deps';
import { categoryName } from '../present';
import { filterProps, parseDate } from './incident-query';

/** The charts: counts only, so the network manager may read them too. */
export const statsRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, lists, config } = ctx;
  // Said once at start: a zone Intl knows but the database does not would fail every chart.
  await databaseKnowsZone(db, config.timeZone).then(
    (known) => {
      if (!known) ctx.logger.warn({ timeZone: config.timeZone }, 'timeZone is not in the database\'s zone files: charts will be refused until PostgreSQL\'s tzdata is updated or another zone is set');
    },
    (err) => ctx.logger.debug({ err: (err as Error).message }, 'timeZone not checked against the database'),
  );

  app.get<{ Querystring: { from?: string; to?: string; tz?: string } }>('/api/stats', {
    config: { access: ['safeguarding_lead', 'network_manager'] },
    schema: {
      tags: ['incidents'],
      summary: 'Incidents (count: as the queue lists them) and attempts (repeats folded in) per day × category, per status and per category (default: the last 30 days)',
      querystring: {
        type: 'object',
        properties: { from: filterProps.from, to: filterProps.to, tz: { type: 'string', maxLength: 64, description: "IANA time zone for the days (default: the school's, config timeZone), e.g. Europe/London" } },
      },
      response: {
        200: {
          type: 'object',
          properties: {
            from: { type: 'string' },
            to: { type: 'string' },
            timeZone: { type: 'string' },
            perDay: {
              type: 'array',
              items: { type: 'object', properties: { day: { type: 'string' }, category: { type: ['string', 'null'] }, count: { type: 'integer' }, attempts: { type: 'integer' } } },
            },
            perStatus: { type: 'array', items: { type: 'object', properties: { status: { type: 'string' }, count: { type: 'integer' } } } },
            perCategory: {
              type: 'array',
              items: {
                type: 'object',
                properties: { category: { type: ['string', 'null'] }, categoryName: { type: ['string', 'null'] }, count: { type: 'integer' }, attempts: { type: 'integer' } },
              },
            },
          },
        },
      },
    },
  }, async (req) => {
    const timeZone = req.query.tz || config.timeZone;
    const problem = timeZoneProblem(timeZone, 'tz');
    if (problem) throw new SchoolgateError('SG_ERR_VALIDATION', problem);
    const to = parseDate('to', req.query.to, true, timeZone) ?? new Date();
    const from = parseDate('from', req.query.from, false, timeZone) ?? new Date(to.getTime() - 30 * 86_400_000);
    // Aggregates only, for both roles: no user, device or address ever appears in them.
    const s = await incidentStats(db, { from, to, timeZone });
    return {
      from: from.toISOString(),
      to: to.toISOString(),
      timeZone,
      perDay: s.perDay,
      perStatus: s.perStatus,
      perCategory: s.perCategory.map((c) => ({ ...c, categoryName: categoryName(lists, c.category) })),
    };
  });
};
