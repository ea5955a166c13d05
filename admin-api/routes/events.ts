import type { FastifyPluginAsync } from 'fastify';
import type { AdminContext } from '../deps';

/** The console's live feed: new incidents and alerts as server-sent events, for the DSL alone. */
export const eventRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  app.get('/api/events', {
    config: { access: ['safeguarding_lead'] },
    schema: { tags: ['incidents'], summary: 'Server-sent events: `incident` for every new incident, `alert` for high-severity ones', produces: ['text/event-stream'] },
  }, async (req, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-content-type-options': 'nosniff',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 3000\n: connected\n\n');
    const send = (event: string) => (data: unknown) => {
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const onIncident = send('incident');
    const onAlert = send('alert');
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 20_000);
    heartbeat.unref();
    const stop = () => {
      clearInterval(heartbeat);
      ctx.hub.off('incident', onIncident);
      ctx.hub.off('alert', onAlert);
      ctx.hub.off('close', end);
    };
    const end = () => {
      stop();
      res.end();
    };
    ctx.hub.on('incident', onIncident);
    ctx.hub.on('alert', onAlert);
    ctx.hub.on('close', end);
    req.raw.on('close', stop);
  });
};
