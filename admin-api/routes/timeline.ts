import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { writeAudit } from '../../repos/audit';
import { browsingRowsFor, type BrowsingRow } from '../../repos/browsing';
import { getIncident, incidentsForPerson } from '../../repos/incidents';
import { caller, type AuthUser } from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema, incidentSchema, toIncidentJson } from '../present';
import { parseDate } from './incident-query';

/**
 * The pupil timeline (issue 13, point 6): a person's incidents and, around each, their browsing
 * log. The most revealing view the console has of one person, so it is the safeguarding lead's
 * alone (the network manager manages lists and never sees who did what), and every opening is in
 * the audit log, naming whose timeline was opened.
 */

const DSL = ['safeguarding_lead'] as const;
const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
/** A person's timeline spans at most this; a longer question is an export, not a view. */
const MAX_SPAN_DAYS = 31;
const MAX_INCIDENTS = 500;
const MAX_ROWS = 5000;

interface TimelineQuery {
  from?: string;
  to?: string;
  window?: number;
}

const queryProps = {
  from: { type: 'string', description: 'ISO date or date-time, inclusive: incidents from then' },
  to: { type: 'string', description: 'ISO date (that whole day included) or date-time (exclusive)' },
  window: { type: 'integer', minimum: 1, maximum: 24 * 60, default: 60, description: 'minutes of browsing log shown before and after each incident' },
} as const;

const browsingSchema = {
  type: 'object',
  properties: {
    minute: { type: 'string' },
    host: { type: 'string' },
    verdict: { type: 'string', enum: ['allowed', 'blocked'] },
    category: { type: ['string', 'null'] },
    requests: { type: 'integer' },
    bytes: { type: 'integer' },
    searchTerms: { type: ['array', 'null'], items: { type: 'string' } },
    device: { type: ['string', 'null'] },
    clientIp: { type: 'string' },
  },
} as const;

const timelineResponse = {
  type: 'object',
  properties: {
    person: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    windowMinutes: { type: 'integer' },
    incidents: { type: 'array', items: incidentSchema },
    browsing: { type: 'array', items: browsingSchema },
    truncated: { type: 'boolean', description: 'more incidents or log rows than one view shows: narrow from/to' },
  },
} as const;

const browsingJson = (r: BrowsingRow) => ({
  minute: r.minute.toISOString(), host: r.host, verdict: r.verdict, category: r.category, requests: r.requests, bytes: r.bytes,
  searchTerms: r.search_terms, device: r.device || null, clientIp: r.client_ip,
});

export const timelineRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, lists, config } = ctx;

  async function timeline(user: AuthUser, person: string, from: Date, to: Date, windowMinutes: number, target: string) {
    if (!(from < to)) throw new SchoolgateError('SG_ERR_VALIDATION', 'from must be before to');
    if (to.getTime() - from.getTime() > MAX_SPAN_DAYS * DAY_MS) throw new SchoolgateError('SG_ERR_VALIDATION', `from and to may be at most ${MAX_SPAN_DAYS} days apart`);
    const incidents = await incidentsForPerson(db, person, from, to, MAX_INCIDENTS + 1);
    const more = incidents.length > MAX_INCIDENTS;
    if (more) incidents.length = MAX_INCIDENTS;
    const pad = windowMinutes * MINUTE_MS;
    // Overlapping windows merged, so a burst of incidents reads the same log rows once.
    const windows: Array<{ from: Date; to: Date }> = [];
    for (const i of incidents) {
      const a = new Date(i.occurred_at).getTime() - pad;
      const b = new Date(i.last_seen ?? i.occurred_at).getTime() + pad;
      const last = windows[windows.length - 1];
      if (last && a <= last.to.getTime()) last.to = new Date(Math.max(last.to.getTime(), b));
      else windows.push({ from: new Date(a), to: new Date(b) });
    }
    const rows = await browsingRowsFor(db, person, windows, MAX_ROWS + 1);
    const truncated = more || rows.length > MAX_ROWS;
    if (rows.length > MAX_ROWS) rows.length = MAX_ROWS;
    await writeAudit(db, {
      actor: user,
      action: 'timeline_view',
      target,
      details: { person, from: from.toISOString(), to: to.toISOString(), windowMinutes, incidents: incidents.length, rows: rows.length },
    });
    return {
      person, from: from.toISOString(), to: to.toISOString(), windowMinutes,
      incidents: incidents.map((r) => toIncidentJson(r, lists, config)), browsing: rows.map(browsingJson), truncated,
    };
  }

  app.get<{ Params: { person: string }; Querystring: TimelineQuery }>('/api/people/:person/timeline', {
    config: { access: DSL },
    schema: {
      tags: ['incidents'],
      summary: "A person's incidents (user, else client address; any case) and their browsing log around each (default: the last 7 days, ±60 minutes); recorded in the audit log",
      params: { type: 'object', required: ['person'], properties: { person: { type: 'string', minLength: 1, maxLength: 254 } } },
      querystring: { type: 'object', properties: queryProps },
      response: { 200: timelineResponse, 400: errorSchema },
    },
  }, async (req) => {
    const to = parseDate('to', req.query.to, true) ?? new Date();
    const from = parseDate('from', req.query.from, false) ?? new Date(to.getTime() - 7 * DAY_MS);
    const person = req.params.person.trim();
    return timeline(caller(req), person, from, to, req.query.window ?? 60, `person:${person.toLowerCase()}`);
  });

  app.get<{ Params: { id: number }; Querystring: TimelineQuery }>('/api/incidents/:id/timeline', {
    config: { access: DSL },
    schema: {
      tags: ['incidents'],
      summary: "The timeline of the person an incident names (default: 7 days either side of it, ±60 minutes of browsing log around each incident); recorded in the audit log",
      params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      querystring: { type: 'object', properties: queryProps },
      response: { 200: timelineResponse, 400: errorSchema, 404: errorSchema },
    },
  }, async (req) => {
    const row = await getIncident(db, req.params.id);
    if (!row) throw new SchoolgateError('SG_ERR_NOT_FOUND', `incident ${req.params.id}`);
    const person = row.user_name ?? row.client_ip;
    if (!person) throw new SchoolgateError('SG_ERR_NOT_FOUND', `incident ${row.id} names no person`);
    const at = new Date(row.occurred_at).getTime();
    const to = parseDate('to', req.query.to, true) ?? new Date(at + 7 * DAY_MS);
    const from = parseDate('from', req.query.from, false) ?? new Date(at - 7 * DAY_MS);
    return timeline(caller(req), person, from, to, req.query.window ?? 60, `incident:${row.id}`);
  });
};
