import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { localDay } from '../../core/local-time';
import { INCIDENT_STATUSES as STATUSES, type IncidentStatus } from '../../incidents/types';
import { auditedIncidentChange, BULK_MAX, bulkIncidentChange, csvLines, TRANSITIONS, type IncidentChange } from '../../incidents/queries';
import { writeAudit } from '../../repos/audit';
import {
  getIncident, incidentAttempts, incidentEvents, listIncidents, relatedIncidents, searchIndexed,
  type IncidentSort,
} from '../../repos/incidents';
import { caller } from '../auth';
import type { AdminContext } from '../deps';
import { categoryName, errorSchema, eventSchema, incidentSchema, peopleLabels, toEventJson, toIncidentJson, withDecisions } from '../present';
import { filterFor, filterProps, type FilterQuery } from './incident-query';
import { pagedResponse } from './paging';

const DSL = ['safeguarding_lead'] as const;



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
  const json = (row: Parameters<typeof toIncidentJson>[0], people?: Map<string, string>) => toIncidentJson(row, lists, config, people);

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
    const page = await listIncidents(db, filterFor(user, req.query, config.timeZone), { cursor: req.query.cursor, limit: req.query.limit ?? 50, sort: req.query.sort });
    const people = await peopleLabels(db, page.rows.map((r) => r.user_name));
    return { items: await withDecisions(db, page.rows.map((r) => json(r, people))), nextCursor: page.nextCursor };
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
    const filter = filterFor(user, req.query, config.timeZone);
    const lines: string[] = [];
    for await (const line of csvLines(db, filter, { timeZone: config.timeZone, categoryName: (c) => categoryName(lists, c) })) lines.push(line);
    await writeAudit(db, {
      actor: user,
      action: 'incident_export',
      target: 'incidents',
      details: { filter: { ...filter, from: filter.from?.toISOString(), to: filter.to?.toISOString() }, rows: lines.length - 1 },
    });
    const stamp = localDay(new Date(), config.timeZone);
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
    const people = await peopleLabels(db, [row.user_name, ...related.map((r) => r.user_name)]);
    return {
      incident: (await withDecisions(db, [json(row, people)]))[0], events: events.map(toEventJson), related: related.map((r) => json(r, people)),
      attempts: attempts.map((a) => ({ at: a.at.toISOString(), url: a.url })),
    };
  });

  const triageBody = {
    status: { type: 'string', enum: [...STATUSES] },
    assigneeId: { type: ['integer', 'null'] },
    note: { type: 'string', maxLength: 10_000 },
  } as const;

  app.patch<{ Params: { id: number }; Body: IncidentChange }>('/api/incidents/:id', {
    config: { access: DSL },
    schema: {
      tags: ['incidents'],
      summary: `Triage: change status (${Object.entries(TRANSITIONS).map(([from, to]) => `${from} → ${to.join(' | ')}`).join('; ')}; closing and reopening need a note), assign, or add a note; recorded in the audit log (incident_update, or incident_reopen)`,
      params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      body: { type: 'object', properties: triageBody },
      response: { 200: { type: 'object', properties: { incident: incidentSchema } }, 404: errorSchema, 409: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const row = await db.transaction((tx) => auditedIncidentChange(tx, req.params.id, req.body, user));
    return { incident: json(row) };
  });

  app.post<{ Body: IncidentChange & { ids: number[] } }>('/api/incidents/bulk', {
    config: { access: DSL },
    schema: {
      tags: ['incidents'],
      summary: `The same triage change (status, assignee, note) to several incidents, all or nothing: if any cannot take it, nothing changes and the 409 lists each refusal in error.details.failures (id, code, message). Each incident changed is audited as a PATCH would be. At most ${BULK_MAX}.`,
      body: {
        type: 'object',
        required: ['ids'],
        properties: {
          ids: { type: 'array', minItems: 1, maxItems: BULK_MAX, uniqueItems: true, items: { type: 'integer', minimum: 1 } },
          ...triageBody,
        },
      },
      response: {
        200: { type: 'object', properties: { incidents: { type: 'array', items: incidentSchema } } },
        400: errorSchema,
        409: errorSchema,
      },
    },
  }, async (req) => {
    const user = caller(req);
    const { ids, ...change } = req.body;
    const rows = await bulkIncidentChange(db, ids, change, user);
    return { incidents: rows.map((r) => json(r)) };
  });
};

/** A person is the same person whatever case their name was typed in (proxy sign-in lower-cases it, the clients map does not). */
function samePerson(name: string | null, email: string): boolean {
  return name !== null && name.toLowerCase() === email.toLowerCase();
}
