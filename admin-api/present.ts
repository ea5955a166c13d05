import type { Config } from '../core/config';
import { friendlyCategoryName } from '../blocklists/profiles';
import type { SeverityConfig } from '../core/severity';
import { IDENTITY_SOURCES, TIERS, UNBLOCK_OUTCOMES, type IdentitySource, type ReportKind, type Tier } from '../core/vocabulary';
import type { Queryable } from '../db/types';
import { unblockDecisionsFor, type UnblockDecisionRow } from '../repos/unblock';
import { tierFor } from '../filter/safeguarding/tiers';
import type { IncidentEventRow, IncidentRow } from '../repos/incidents';
import { peopleByEmail } from '../repos/people';
import type { ListStoreLike } from './deps';
import { INCIDENT_KINDS, INCIDENT_STATUSES } from '../incidents/types';

/** The incident as the API shows it (camelCase; `illegal` tells the console never to link the URL). */
export interface IncidentJson {
  id: number;
  key: string;
  kind: string;
  status: string;
  severity: Tier;
  category: string | null;
  categoryName: string | null;
  url: string | null;
  host: string | null;
  clientIp: string | null;
  user: string | null;
  /** The person as the school's records name them ("Sam Jones, 9B": directory sync or MIS import); null when unknown. */
  personName: string | null;
  device: string | null;
  policyGroup: string | null;
  searchTerms: string | null;
  note: string | null;
  count: number;
  occurredAt: string;
  lastSeen: string;
  assigneeId: number | null;
  relatedKey: string | null;
  /** The safeguarding phrase that flagged a search; null for every other incident. */
  matchedPhrase: string | null;
  /** Which source named the person (README "Identity"); null on older incidents and console reports. */
  identitySource: IdentitySource | null;
  illegal: boolean;
}

/** A person as the console shows them beside an incident: "Sam Jones, 9B" (their form, else their year group). */
export function personLabel(p: { name: string; form: string | null; year_group: string | null }): string {
  const where = p.form ?? p.year_group;
  return where ? `${p.name}, ${where}` : p.name;
}

/** Labels for the people among `users` known to the directory sync or an MIS import, by lower-cased email. */
export async function peopleLabels(db: Queryable, users: Array<string | null>): Promise<Map<string, string>> {
  const rows = await peopleByEmail(db, users.filter((u): u is string => !!u));
  return new Map(rows.map((p) => [p.email, personLabel(p)]));
}

const iso = (d: Date | string | null | undefined) => (d === null || d === undefined ? null : new Date(d).toISOString());

export function categoryName(lists: ListStoreLike, category: string | null): string | null {
  if (!category) return null;
  return friendlyCategoryName(category, lists.current.categories);
}

/** `people`: label by lower-cased email, for the rows' people (peopleLabels); without it personName is null. */
export function toIncidentJson(row: IncidentRow, lists: ListStoreLike, config: Config, people?: Map<string, string>): IncidentJson {
  return {
    id: Number(row.id),
    key: row.idempotency_key,
    kind: row.kind,
    status: row.status,
    severity: row.severity ?? 'incident',
    category: row.category,
    categoryName: categoryName(lists, row.category),
    url: row.url,
    host: row.host,
    clientIp: row.client_ip,
    user: row.user_name,
    personName: (row.user_name && people?.get(row.user_name.toLowerCase())) ?? null,
    device: row.device,
    policyGroup: row.policy_group,
    searchTerms: row.search_terms,
    note: row.note,
    count: Number(row.count),
    occurredAt: iso(row.occurred_at)!,
    lastSeen: iso(row.last_seen ?? row.occurred_at)!,
    assigneeId: row.assignee_id === null || row.assignee_id === undefined ? null : Number(row.assignee_id),
    relatedKey: row.related_key ?? null,
    matchedPhrase: row.matched_phrase ?? null,
    identitySource: row.identity_source ?? null,
    illegal: row.category !== null && config.illegalCategories.includes(row.category),
  };
}

/**
 * A report filed in a person's own words is always the DSL's to read (never below `incident`); a
 * self-report about an alerting category alerts like the block would have. An unblock request is
 * a question for the network manager, not a concern: never an alert.
 */
export function reportSeverity(kind: ReportKind, category: string | null, group: string | null, severity?: SeverityConfig): Tier {
  if (kind !== 'self_report') return 'incident';
  return tierFor(category, group, severity) === 'alert' ? 'alert' : 'incident';
}

export function toEventJson(e: IncidentEventRow) {
  return { at: iso(e.at)!, actor: e.actor, action: e.action, fromStatus: e.from_status, toStatus: e.to_status, note: e.note };
}

// JSON schemas shared by the routes (OpenAPI documents them; fastify serialises with them).
const nullableString = { type: ['string', 'null'] } as const;

/** The network manager's decision on an unblock request: what, why and when; never who asked. */
export const unblockDecisionSchema = {
  type: 'object',
  properties: {
    outcome: { type: 'string', enum: [...UNBLOCK_OUTCOMES] },
    reason: { type: 'string' },
    decidedAt: { type: 'string', format: 'date-time' },
  },
} as const;

export const toDecisionJson = (d: UnblockDecisionRow) => ({ outcome: d.outcome, reason: d.reason, decidedAt: new Date(d.decided_at).toISOString() });

/** Adds each unblock request's decision (null while undecided) to incidents shown in a list. */
export async function withDecisions<T extends { id: number; kind: string }>(db: Queryable, items: T[]): Promise<Array<T & { decision?: ReturnType<typeof toDecisionJson> | null }>> {
  const ids = items.filter((i) => i.kind === 'unblock_request').map((i) => i.id);
  if (ids.length === 0) return items;
  const decisions = await unblockDecisionsFor(db, ids);
  return items.map((i) => (i.kind === 'unblock_request' ? { ...i, decision: decisions.has(i.id) ? toDecisionJson(decisions.get(i.id)!) : null } : i));
}

export const incidentSchema = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    key: { type: 'string' },
    kind: { type: 'string', enum: [...INCIDENT_KINDS] },
    status: { type: 'string', enum: [...INCIDENT_STATUSES] },
    severity: { type: 'string', enum: [...TIERS] },
    category: nullableString,
    categoryName: nullableString,
    url: nullableString,
    host: nullableString,
    clientIp: nullableString,
    user: nullableString,
    personName: nullableString,
    device: nullableString,
    policyGroup: nullableString,
    searchTerms: nullableString,
    note: nullableString,
    count: { type: 'integer' },
    occurredAt: { type: 'string', format: 'date-time' },
    lastSeen: { type: 'string', format: 'date-time' },
    assigneeId: { type: ['integer', 'null'] },
    relatedKey: nullableString,
    matchedPhrase: nullableString,
    identitySource: { type: ['string', 'null'], enum: [...IDENTITY_SOURCES, null] },
    illegal: { type: 'boolean' },
    // An unblock request's outcome, for the person who asked (absent on other kinds).
    decision: { anyOf: [unblockDecisionSchema, { type: 'null' }] },
  },
} as const;

export const eventSchema = {
  type: 'object',
  properties: {
    at: { type: 'string', format: 'date-time' },
    actor: { type: 'string' },
    action: { type: 'string' },
    fromStatus: nullableString,
    toStatus: nullableString,
    note: nullableString,
  },
} as const;

export const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: { type: 'object', additionalProperties: true } },
      required: ['code', 'message'],
    },
  },
} as const;

export const userSchema = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    email: { type: 'string' },
    role: { type: 'string' },
    displayName: nullableString,
  },
} as const;

export const okSchema = { type: 'object', properties: { ok: { type: 'boolean' } } } as const;
