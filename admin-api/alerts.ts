import nodemailer from 'nodemailer';
import { adminBaseUrl } from '../core/config';
import { DEFAULT_TIME_ZONE, localDateTimeLong } from '../core/local-time';
import { activeEmailsWithRole } from '../repos/accounts';
import { writeAudit } from '../repos/audit';
import type { IncidentRow } from '../repos/incidents';
import type { AdminContext } from './deps';
import type { Mailer } from './deps';
import { toIncidentJson, type IncidentJson } from './present';
import type { UnblockOutcome } from '../core/vocabulary';

/**
 * The app's SMTP transport: the one the caller gave (tests), else one made from config.smtp, else
 * none (no email; the console still shows everything). `close` releases one this made.
 */
export function openMailer(deps: { mailer?: Mailer; config: AdminContext['config'] }): { mailer: Mailer | null; close(): void } {
  if (deps.mailer) return { mailer: deps.mailer, close: () => {} };
  if (!deps.config.smtp) return { mailer: null, close: () => {} };
  const owned = nodemailer.createTransport(deps.config.smtp.url);
  return { mailer: owned as unknown as Mailer, close: () => owned.close() };
}

/** What the person who asked for a page to be unblocked is told by email (the console shows the same). */
export function decisionText(
  d: { incidentId: number; host: string | null; illegal: boolean; outcome: UnblockOutcome; reason: string },
  consoleUrl: string,
): { subject: string; text: string } {
  const site = d.illegal ? 'the page you asked about' : (d.host ?? 'the page you asked about');
  const subject = `[schoolgate] Unblock request ${d.outcome}: ${site}`;
  const text = [
    d.outcome === 'approved'
      ? `Your request to unblock ${site} was approved: it is no longer blocked.`
      : `Your request to unblock ${site} was declined: it stays blocked.`,
    '',
    `Reason: ${d.reason}`,
    '',
    `See it in My reports: ${consoleUrl}/console/#/incidents/${d.incidentId}`,
    '',
    'This message was sent by the school web filter.',
  ].join('\n');
  return { subject, text };
}

/**
 * Emails the outcome of an unblock request to the person who asked, when email is set up and the
 * request carries an address. Resolves once sent, or failed and logged (without the address: the
 * service log is read by the network manager, who does not learn who asked).
 */
export async function emailDecision(
  ctx: Pick<AdminContext, 'config' | 'db' | 'logger' | 'mailer'>,
  to: string | null,
  d: Parameters<typeof decisionText>[0],
): Promise<boolean> {
  if (!ctx.mailer || !to || !EMAIL.test(to)) return false;
  const { subject, text } = decisionText(d, adminBaseUrl(ctx.config));
  try {
    await ctx.mailer.sendMail({ from: ctx.config.smtp?.from ?? 'schoolgate@localhost', to: [to], subject, text });
  } catch (err) {
    ctx.logger.error({ err: (err as Error).message, incident: d.incidentId }, 'unblock decision email not sent');
    return false;
  }
  await writeAudit(ctx.db, { actor: { id: null, email: 'schoolgate' }, action: 'unblock_decision_email', target: `incident:${d.incidentId}`, details: { outcome: d.outcome } });
  return true;
}

/** Roughly an address: the user names people are known by may be logins without a domain. */
const EMAIL = /^[^\s@<>,;"]+@[^\s@<>,;"]+\.[^\s@<>,;"]+$/;

/** One email per person (or device) and category in this window: a pupil retrying a page is one alert, not fifty. */
export const ALERT_QUIET_MS = 10 * 60_000;

/** The email's text; its time is the school's wall-clock time (`timeZone`), as the DSL's classroom clock shows it. */
export function alertText(i: IncidentJson, consoleUrl: string, timeZone = DEFAULT_TIME_ZONE): { subject: string; text: string } {
  const who = i.user ?? (i.clientIp ? `device at ${i.clientIp}` : 'unknown user');
  const what = i.kind === 'self_report' ? 'Self-report' : i.kind === 'flagged_search' ? 'Flagged search' : 'Blocked access';
  const subject = `[schoolgate] ${what}: ${i.categoryName ?? i.category ?? 'uncategorised'} (${who})`;
  const lines = [
    `${what} at alert severity needs your attention.`,
    '',
    `Category: ${i.categoryName ?? i.category ?? '-'}${i.category && i.categoryName !== i.category ? ` (${i.category})` : ''}`,
    `User:     ${who}${i.device ? ` on ${i.device}` : ''}`,
    `Time:     ${localDateTimeLong(i.occurredAt, timeZone)}`,
    // Content illegal to view (IWF/CTIRU lists): the address itself is never put in an email that may be forwarded or cached.
    `Site:     ${i.illegal ? '(withheld: open the console)' : (i.host ?? '-')}`,
  ];
  if (i.searchTerms && !i.illegal) lines.push(`Search:   ${i.searchTerms}`);
  lines.push('', `Open the incident: ${consoleUrl}/console/#/incidents/${i.id}`, '', 'This message was sent by the school web filter. Do not forward it outside the safeguarding team.');
  return { subject, text: lines.join('\n') };
}

/**
 * Follows the incident writer: every new incident goes to the open consoles over SSE; those of
 * `alert` severity also raise an `alert` event and an email to the DSL(s). Only 'stored' is
 * followed: a repeat folded into an incident ('repeated') never alerts again, so one incident
 * raises at most one alert. Returns a function that detaches and waits for emails in flight.
 */
export function startAlerts(ctx: AdminContext): () => Promise<void> {
  const { config, logger, db, lists } = ctx;
  const owned = !ctx.mailer && config.smtp ? nodemailer.createTransport(config.smtp.url) : null;
  const mailer: Mailer | null = ctx.mailer ?? (owned as unknown as Mailer | null);
  const lastSent = new Map<string, number>();
  const inFlight = new Set<Promise<unknown>>();

  async function recipients(): Promise<string[]> {
    if (config.smtp?.to.length) return config.smtp.to;
    return activeEmailsWithRole(db, 'safeguarding_lead');
  }

  async function email(i: IncidentJson): Promise<void> {
    if (!mailer) return;
    const to = await recipients();
    if (to.length === 0) {
      logger.warn({ incident: i.id }, 'alert-severity incident but no safeguarding lead to email');
      return;
    }
    const { subject, text } = alertText(i, adminBaseUrl(config), config.timeZone);
    await mailer.sendMail({ from: config.smtp?.from ?? 'schoolgate@localhost', to, subject, text });
    await writeAudit(db, { actor: { id: null, email: 'schoolgate' }, action: 'alert_email', target: `incident:${i.id}`, details: { to } });
  }

  const onStored = (rows: IncidentRow[] | IncidentRow) => {
    for (const row of Array.isArray(rows) ? rows : [rows]) {
      let i: IncidentJson;
      try {
        i = toIncidentJson(row, lists, config);
      } catch (err) {
        logger.warn({ err }, 'stored incident could not be shown');
        continue;
      }
      ctx.hub.emit('incident', i);
      if (i.severity !== 'alert') continue;
      ctx.hub.emit('alert', i);
      const key = `${i.category}|${i.user ?? i.clientIp ?? ''}`;
      const now = Date.now();
      if ((lastSent.get(key) ?? 0) > now - ALERT_QUIET_MS) continue;
      lastSent.set(key, now);
      if (lastSent.size > 10_000) for (const [k, t] of lastSent) if (t < now - ALERT_QUIET_MS) lastSent.delete(k);
      const p = email(i)
        .catch((err) => logger.error({ err: (err as Error).message, incident: i.id }, 'alert email not sent'))
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
  };

  ctx.incidents.on('stored', onStored);
  return async () => {
    ctx.incidents.off('stored', onStored);
    await Promise.allSettled([...inFlight]);
    owned?.close();
  };
}
