import { escapeHtml } from '../../proxy/error-page';

/**
 * Where a young person in the UK can get help now, shown when a search suggests self-harm,
 * suicide or an eating disorder (issue 13, point 4): on the block page, or as a banner injected
 * into search results. Free, confidential, open at any hour.
 */
export interface SupportService {
  name: string;
  /** One line, in words a 12-year-old reads at a glance. */
  what: string;
  /** Shown as written; `tel` is what the link dials. */
  phone?: { display: string; tel: string };
  /** Text line: send `keyword` to `number`. */
  sms?: { number: string; keyword: string };
  web?: string;
  hours: string;
}

export const SUPPORT_SERVICES: readonly SupportService[] = Object.freeze([
  {
    name: 'Childline',
    what: 'For anyone under 19. Talk about anything, by phone or online chat.',
    phone: { display: '0800 1111', tel: '08001111' },
    web: 'https://www.childline.org.uk/',
    hours: 'Free, any time, day or night',
  },
  {
    name: 'Samaritans',
    what: 'Someone to listen, whatever you are going through.',
    phone: { display: '116 123', tel: '116123' },
    web: 'https://www.samaritans.org/',
    hours: 'Free, any time, day or night',
  },
  {
    name: 'Shout',
    what: 'If you would rather text than talk.',
    sms: { number: '85258', keyword: 'SHOUT' },
    web: 'https://giveusashout.org/',
    hours: 'Free, any time, day or night',
  },
]);

/**
 * Only these schemes become links: the services are data a school may edit, and a `javascript:`
 * address in a banner injected into a search page would run there.
 */
function safeHref(href: string): string | null {
  return /^(https:\/\/|tel:\+?[0-9]+$|sms:\+?[0-9]+$)/i.test(href) ? href : null;
}

function link(href: string, text: string): string {
  const h = safeHref(href);
  return h ? `<a href="${escapeHtml(h)}" style="color:#0b4f8a;font-weight:600">${escapeHtml(text)}</a>` : escapeHtml(text);
}

function serviceHtml(s: SupportService): string {
  const ways: string[] = [];
  if (s.phone) ways.push(`call ${link(`tel:${s.phone.tel}`, s.phone.display)}`);
  if (s.sms) ways.push(`text ${escapeHtml(s.sms.keyword)} to ${link(`sms:${s.sms.number}`, s.sms.number)}`);
  if (s.web) ways.push(link(s.web, s.web.replace(/^https:\/\/(www\.)?/, '').replace(/\/$/, '')));
  return `<li style="margin:.35rem 0"><strong>${escapeHtml(s.name)}</strong>: ${ways.join(' · ')}<br><span style="font-size:.9em">${escapeHtml(s.what)} ${escapeHtml(s.hours)}.</span></li>`;
}

export interface SupportBannerOptions {
  services?: readonly SupportService[];
  heading?: string;
  /** The school's own words, e.g. who to talk to in school. */
  schoolNote?: string;
}

/**
 * A self-contained HTML snippet (inline styles, no script, no external resource) that reads the
 * same on a block page or injected at the top of a search results page. Every string is escaped.
 */
export function renderSupportBanner(opts: SupportBannerOptions = {}): string {
  const services = opts.services ?? SUPPORT_SERVICES;
  const heading = opts.heading ?? 'You are not alone. If you are struggling, talk to someone now.';
  const note = opts.schoolNote ? `<p style="margin:.5rem 0 0">${escapeHtml(opts.schoolNote)}</p>` : '';
  return `<aside role="complementary" aria-label="Support" data-schoolgate-support style="all:initial;display:block;box-sizing:border-box;font:16px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;color:#1b1f24;background:#eef6ff;border:2px solid #0b4f8a;border-radius:8px;padding:1rem 1.25rem;margin:1rem auto;max-width:44rem">
<p style="margin:0;font-weight:700;font-size:1.1em">${escapeHtml(heading)}</p>
<ul style="margin:.5rem 0 0;padding-left:1.2rem">${services.map(serviceHtml).join('')}</ul>${note}
</aside>`;
}

/** The same for plain text (alert e-mails, logs the DSL reads). */
export function renderSupportText(services: readonly SupportService[] = SUPPORT_SERVICES): string {
  return services
    .map((s) => {
      const ways = [s.phone && `call ${s.phone.display}`, s.sms && `text ${s.sms.keyword} to ${s.sms.number}`, s.web].filter(Boolean).join(', ');
      return `${s.name}: ${ways} (${s.hours.toLowerCase()})`;
    })
    .join('\n');
}
