import type { FastifyPluginAsync } from 'fastify';
import type { AdminContext } from '../deps';
import { createMetrics, databaseReachable } from '../metrics';

/**
 * GET /healthz for load balancers and uptime checks, GET /metrics for Prometheus.
 *
 * /healthz is public: it says whether this gateway can filter and record (lists loaded, database
 * reachable, incidents waiting) and carries no identities, URLs or list text.
 *
 * /metrics asks for a network manager's (or the DSL's) login, in practice an API token
 * (Prometheus: `authorization: { credentials_file: ... }`). Counts alone name nobody, but they say
 * how much is blocked and when, which the school may not want every device on its network to
 * read; an address allow-list would be weaker on a school LAN, where any pupil's device can sit in
 * the range a scraper uses. While the database is away the token cannot be checked and /metrics
 * answers 503: monitoring then alerts on the failed scrape, and /healthz still says why.
 */
const count = { type: 'integer', nullable: true } as const;
const HEALTH = {
  type: 'object',
  properties: {
    status: { type: 'string', enum: ['ok', 'unhealthy'] },
    lists: { type: 'object', properties: { loaded: { type: 'boolean' }, entries: { type: 'integer' }, categories: { type: 'integer' } } },
    database: { type: 'object', properties: { reachable: { type: 'boolean' } } },
    incidents: { type: 'object', properties: { queued: count, spooled: count, dropped: count } },
  },
} as const;

export const healthRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const registry = createMetrics({
    db: ctx.db,
    lists: ctx.lists,
    writerStats: ctx.writerStats,
    gatewayStats: ctx.gatewayStats,
    browsingLogStats: ctx.browsingLogStats,
    radiusStats: ctx.radiusStats,
  });

  app.get('/healthz', {
    config: { access: 'public' },
    schema: {
      tags: ['monitoring'],
      summary: 'Whether the gateway can filter (lists loaded) and record (database reachable); 503 when not',
      response: { 200: HEALTH, 503: HEALTH },
    },
  }, async (_req, reply) => {
    const database = await databaseReachable(ctx.db);
    const stats = ctx.writerStats?.();
    const loaded = ctx.lists.loaded;
    const healthy = loaded && database;
    reply.code(healthy ? 200 : 503).header('cache-control', 'no-store');
    return {
      status: healthy ? 'ok' : 'unhealthy',
      lists: { loaded, entries: ctx.lists.report.entries, categories: ctx.lists.report.categories.length },
      database: { reachable: database },
      incidents: { queued: stats?.queued ?? null, spooled: stats?.spooled ?? null, dropped: stats?.dropped ?? null },
    };
  });

  app.get('/metrics', {
    config: { access: ['network_manager', 'safeguarding_lead'] },
    schema: { tags: ['monitoring'], summary: 'Prometheus metrics: requests, blocks, incidents queued/spooled/dropped/stored, database state, list version', produces: ['text/plain'] },
  }, async (_req, reply) => {
    reply.type(registry.contentType).header('cache-control', 'no-store');
    return registry.metrics();
  });
};
