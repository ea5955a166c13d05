import { SchoolgateError } from '../../core/errors';
import { DEFAULT_TIME_ZONE, startOfLocalDay } from '../../core/local-time';
import { INCIDENT_KINDS as KINDS, INCIDENT_STATUSES as STATUSES, TIERS } from '../../incidents/types';
import type { IncidentFilter } from '../../repos/incidents';
import type { AuthUser } from '../auth';

// The incident filter as the query string spells it, shared by the queue, the CSV export, the
// statistics and the unblock-request list.

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

export const filterProps = {
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

/** A bare day is the school's day (`timeZone`), 00:00 to 00:00 on its clock; a date-time is taken as given. */
export function parseDate(name: string, s: string | undefined, end: boolean, timeZone = DEFAULT_TIME_ZONE): Date | undefined {
  if (s === undefined || s === '') return undefined;
  if (DATE_ONLY.test(s)) {
    const noon = new Date(`${s}T12:00:00Z`);
    if (Number.isNaN(noon.getTime())) throw new SchoolgateError('SG_ERR_VALIDATION', `${name} is not a date: ${JSON.stringify(s)}`);
    // A bare day as the upper bound means "up to the end of that day": the start of the next.
    if (end) noon.setUTCDate(noon.getUTCDate() + 1);
    return startOfLocalDay(noon.toISOString().slice(0, 10), timeZone);
  }
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) throw new SchoolgateError('SG_ERR_VALIDATION', `${name} is not a date: ${JSON.stringify(s.slice(0, 40))}`);
  return d;
}

export function oneOf<T extends string>(name: string, values: string[] | undefined, allowed: readonly T[]): T[] | undefined {
  const flat = values?.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
  if (!flat?.length) return undefined;
  for (const v of flat) {
    if (!allowed.includes(v as T)) throw new SchoolgateError('SG_ERR_VALIDATION', `${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return flat as T[];
}

/** The filter a caller may use: staff are pinned to their own incidents whatever they ask for. */
export function filterFor(user: AuthUser, q: FilterQuery, timeZone = DEFAULT_TIME_ZONE): IncidentFilter {
  const f: IncidentFilter = {
    status: oneOf('status', q.status, STATUSES),
    kind: oneOf('kind', q.kind, KINDS),
    category: q.category?.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean),
    severity: oneOf('severity', q.severity, TIERS),
    user: q.user || undefined,
    from: parseDate('from', q.from, false, timeZone),
    to: parseDate('to', q.to, true, timeZone),
    q: q.q?.trim() || undefined,
  };
  if (!f.category?.length) delete f.category;
  if (user.role === 'staff') f.user = user.email;
  return f;
}
