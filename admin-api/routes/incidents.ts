import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { normalizeTypedUrl } from '../../blocklists/normalize';
import { INCIDENT_KINDS as KINDS, INCIDENT_STATUSES as STATUSES, TIERS, type IncidentStatus } from '../../incidents/types';
import { CSV_COLUMNS, csvLine, updateIncident } from '../../incidents/queries';
import { writeAudit } from '../../repos/audit';
import {
  exportRows, getIncident, getIncidentByKey, incidentAttempts, incidentEvents, incidentStats, listIncidents, relatedIncidents, searchIndexed,
  type IncidentFilter, type IncidentSort,
} from '../../repos/incidents';
import { caller, type AuthUser } from '../auth';
import type { AdminContext } from '../deps';
import { categoryName, errorSchema, eventSchema, incidentSchema, reportSeverity, toEventJson, toIncidentJson } from '../present';
import { pagedResponse } from './paging';

const DSL = ['safeguarding_lead'] as const;

export interface FilterQuery {
  status?: string[];
  kind?: string[];
  category?: string[];
  severity?: string[];
  user?: string;
  from?: string;
  to?: string;
  q?: string;
  cursor?: string;
  limit?: number;
}

const filterProps = {
  status: { type: 'array', items: { type: 'string' }, description: 'one or more (repeat or comma-separate)' },
  kind: { type: 'array', items: { type: 'string' } },
  category: { type: 'array', items: { type: 'string' } },
  severity: { type: 'array', items: { type: 'string' }, description: 'log, incident, alert (repeat or comma-separate)' },
  user: { type: 'string', maxLength: 254, description: 'the person, ignoring case' },
  from: { type: 'string', description: 'ISO date or date-time, inclusive' },
  to: { type: 'string', description: 'ISO date (that whole day included) or date-time (exclusive)' },
  q: { type: 'string', maxLength: 200, description: 'text in URL, host, user, device, search terms or note' },
} as const;

const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;

export function parseDate(name: string, s: string | undefined, end: boolean): Date | undefined {
  if (s === undefined || s === '') return undefined;
  const d = new Date(DATE_ONLY.test(s) ? `${s}T00:00:00Z` : s);
  if (Number.isNaN(d.getTime())) throw new SchoolgateError('SG_ERR_VALIDATION', `${name} is not a date: ${JSON.stringify(s.slice(0, 40))}`);
  // A bare day as the upper bound means "up to the end of that day".
  if (end && DATE_ONLY.test(s)) d.setUTCDate(d.getUTCDate() + 1);
  return d;
}

function oneOf<T extends string>(name: string, values: string[] | undefined, allowed: readonly T[]): T[] | undefined {
  const flat = values?.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
  if (!flat?.length) return undefined;
  for (const v of flat) {
    if (!allowed.includes(v as T)) throw new SchoolgateError('SG_ERR_VALIDATION', `${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return flat as T[];
}

/** The filter a caller may use: staff are pinned to their own incidents whatever they ask for. */
export function filterFor(user: AuthUser, q: FilterQuery): IncidentFilter {
  const f: IncidentFilter = {
    status: oneOf('status', q.status, STATUSES),
    kind: oneOf('kind', q.kind, KINDS),
    category: q.category?.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean),
    severity: oneOf('severity', q.severity, TIERS),
    user: q.user || undefined,
    from: parseDate('from', q.from, false),
    to: parseDate('to', q.to, true),
    q: q.q?.trim() || undefined,
  };
  if (!f.category?.length) delete f.category;
  if (user.role === 'staff') f.user = user.email;
  return f;
}

export const incidentRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, config, lists } = ctx;
  // Said once at start: where pg_trgm is missing, search works but scans, and slows as incidents grow.
  await searchIndexed(db).then(
    (indexed) =>
      indexed
        ? ctx.logger.info({ search: 'trigram' }, 'incident search: indexed (pg_trgm)')
        : ctx.logger.warn({ search: 'unindexed' }, 'incident search: unindexed (pg_trgm not available to the database); terms are found by scanning. Install pg_trgm (Debian: postgresql-contrib) or let this role create it, and the next start builds the index'),
    (err) => ctx.logger.debug({ err: (err as Error).message }, 'incident search mode not checked'),
  );
  const json = (row: Parameters<typeof toIncidentJson>[0]) => toIncidentJson(row, lists, config);

  app.get<{ Querystring: FilterQuery & { sort?: IncidentSort } }>('/api/incidents', {
    config: { access: ['safeguarding_lead', 'staff'] },
    schema: {
      tags: ['incidents'],
      summary: 'Incidents, newest first or alert first (staff: only their own)',
      querystring: {
        type: 'object',
        properties: {
          ...filterProps,
          sort: { type: 'string', enum: ['time', 'severity'], default: 'time', description: 'time: newest first; severity: alert, then incident, then log, newest first within each' },
          cursor: { type: 'string', maxLength: 100 },
          limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
        },
      },
      response: {
        200: pagedResponse(incidentSchema),
        400: errorSchema,
      },
    },
  }, async (req) => {
    const user = caller(req);
    const page = await listIncidents(db, filterFor(user, req.query), { cursor: req.query.cursor, limit: req.query.limit ?? 50, sort: req.query.sort });
    return { items: page.rows.map(json), nextCursor: page.nextCursor };
  });

  app.get<{ Querystring: FilterQuery }>('/api/incidents/export.csv', {
    config: { access: DSL },
    schema: {
      tags: ['incidents'],
      summary: 'CSV of the filtered incidents (at most 100,000 rows); recorded in the audit log',
      querystring: { type: 'object', properties: filterProps },
      produces: ['text/csv'],
    },
  }, async (req, reply) => {
    const user = caller(req);
    const filter = filterFor(user, req.query);
    const lines: string[] = [CSV_COLUMNS.join(',')];
    for await (const row of exportRows(db, filter)) lines.push(csvLine(row));
    await writeAudit(db, {
      actor: user,
      action: 'incident_export',
      target: 'incidents',
      details: { filter: { ...filter, from: filter.from?.toISOString(), to: filter.to?.toISOString() }, rows: lines.length - 1 },
    });
    const stamp = new Date().toISOString().slice(0, 10);
    reply
      .type('text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="schoolgate-incidents-${stamp}.csv"`);
    return lines.join('\r\n') + '\r\n';
  });

  app.get<{ Params: { id: number } }>('/api/incidents/:id', {
    config: { access: ['safeguarding_lead', 'staff'] },
    schema: {
      tags: ['incidents'],
      summary: 'One incident with its history, its attempts (each repeat folded into it: time and address) and related block/reports; recorded in the audit log',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      response: {
        200: {
          type: 'object',
          properties: {
            incident: incidentSchema,
            events: { type: 'array', items: eventSchema },
            attempts: {
              type: 'array',
              description: 'each attempt folded into this incident, oldest first (at most 500; count gives the total)',
              items: { type: 'object', properties: { at: { type: 'string', format: 'date-time' }, url: { type: ['string', 'null'] } } },
            },
            related: { type: 'array', items: incidentSchema, description: 'the block a report refers to, or the reports about this block' },
          },
        },
        404: errorSchema,
      },
    },
  }, async (req) => {
    const user = caller(req);
    const row = await getIncident(db, req.params.id);
    // Staff asking for someone else's incident learn nothing, not even that it exists.
    if (!row || (user.role === 'staff' && !samePerson(row.user_name, user.email))) throw new SchoolgateError('SG_ERR_NOT_FOUND', `incident ${req.params.id}`);
    const [events, attempts] = await Promise.all([incidentEvents(db, row.id), incidentAttempts(db, row)]);
    const related = (await relatedIncidents(db, row)).filter((r) => user.role !== 'staff' || samePerson(r.user_name, user.email));
    await writeAudit(db, { actor: user, action: 'incident_view', target: `incident:${row.id}` });
    return {
      incident: json(row), events: events.map(toEventJson), related: related.map(json),
      attempts: attempts.map((a) => ({ at: a.at.toISOString(), url: a.url })),
    };
  });

  app.patch<{ Params: { id: number }; Body: { status?: IncidentStatus; assigneeId?: number | null; note?: string } }>('/api/incidents/:id', {
    config: { access: DSL },
    schema: {
      tags: ['incidents'],
      summary: 'Triage: change status (new → in_review → escalated | closed | false_positive; closing needs a note), assign, or add a note',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      body: {
        type: 'object',
        properties: {
          status: { type: 'string', enum: [...STATUSES] },
          assigneeId: { type: ['integer', 'null'] },
          note: { type: 'string', maxLength: 10_000 },
        },
      },
      response: { 200: { type: 'object', properties: { incident: incidentSchema } }, 404: errorSchema, 409: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const row = await updateIncident(db, req.params.id, req.body, user);
    await writeAudit(db, {
      actor: user,
      action: 'incident_update',
      target: `incident:${row.id}`,
      details: { status: req.body.status, assigneeId: req.body.assigneeId, note: req.body.note !== undefined },
    });
    return { incident: json(row) };
  });

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
    return { items: page.rows.map(json).map(({ user: _u, clientIp: _c, device: _d, ...rest }) => rest), nextCursor: page.nextCursor };
  });

  app.get('/api/events', {
    config: { access: DSL },
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

/** A person is the same person whatever case their name was typed in (proxy sign-in lower-cases it, the clients map does not). */
function samePerson(name: string | null, email: string): boolean {
  return name !== null && name.toLowerCase() === email.toLowerCase();
}

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
