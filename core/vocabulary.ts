/**
 * The one spelling of each set the whole app shares: incident kinds and statuses, and console
 * roles. Here in core because every layer names them — the incident writer and its repository,
 * the routes' JSON schemas, the console (served as /console/vocab.js) — and the migrations' CHECK
 * constraints must agree (test/incidents/vocabulary.test.ts fails when they do not), so a new kind,
 * status or role is added here and in a migration, and nowhere else.
 */

export const INCIDENT_KINDS = ['blocked', 'self_report', 'flagged_search', 'unblock_request'] as const;
export type IncidentKind = (typeof INCIDENT_KINDS)[number];
export const INCIDENT_STATUSES = ['new', 'in_review', 'escalated', 'closed', 'false_positive'] as const;
export type IncidentStatus = (typeof INCIDENT_STATUSES)[number];
/** The kinds a person files from the block page (a person's own words: never folded). */
export const REPORT_KINDS = ['self_report', 'unblock_request'] as const satisfies readonly IncidentKind[];
export type ReportKind = (typeof REPORT_KINDS)[number];

/**
 * What a blocked category or a flagged search costs the DSL (issue 13): `log` is blocked and kept
 * in the browsing log only; `incident` goes to the DSL's queue; `alert` to the queue with an
 * immediate alert. In this order, least urgent first.
 */
export const TIERS = ['log', 'incident', 'alert'] as const;
export type Tier = (typeof TIERS)[number];
/** Higher is more urgent; for picking the most severe of several matches, and the queue's sort. */
export const TIER_RANK: Readonly<Record<Tier, number>> = { log: 0, incident: 1, alert: 2 };

export const ROLES = ['safeguarding_lead', 'network_manager', 'staff', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

/** What the network manager decided on an unblock request; kept for the person who asked. */
export const UNBLOCK_OUTCOMES = ['approved', 'declined'] as const;
export type UnblockOutcome = (typeof UNBLOCK_OUTCOMES)[number];
/**
 * Which source named the person behind a request (issue 15, point 5), in the order the gateway
 * asks them (filter/identify.ts, README "Identity"): the school's RADIUS accounting (Wi-Fi
 * controller or NAC), proxy sign-in (console accounts: `proxy_auth`; the school's directory:
 * `directory`), the config's `clients` map, or nobody (`unknown`). Stored with each incident
 * (`incidents.identity_source`, migration 019) so the DSL can weigh how sure the name is.
 */
export const IDENTITY_SOURCES = ['radius', 'proxy_auth', 'directory', 'clients', 'unknown'] as const;
export type IdentitySource = (typeof IDENTITY_SOURCES)[number];
