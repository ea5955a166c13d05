import nodemailer from 'nodemailer';
import { adminBaseUrl } from '../core/config';
import { DEFAULT_TIME_ZONE, localDateTimeLong } from '../core/local-time';
import { activeEmailsWithRole } from '../repos/accounts';
import { writeAudit } from '../repos/audit';
import type { IncidentRow } from '../repos/incidents';
import type { AdminContext } from './deps';
import type { Mailer } from './deps';
import { toIncidentJson, type IncidentJson } from './present';

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
