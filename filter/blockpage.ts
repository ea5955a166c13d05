/**
 * Pages the gateway shows instead of a website. Written for someone who is not technical: plain
 * words, what happened, what they can do next. Everything from the request is escaped.
 *
 * The block page is served on the blocked site's own origin, so that site's scripts on any page of
 * it that is not blocked can read it: it shows nothing about who was blocked (no user name, no
 * address), only what the person at the screen already knows and an opaque reference. Its forms
 * post to the gateway's own name (config pagesHost), another origin, so those scripts cannot read
 * what the report answers either.
 */

import { DEFAULT_TIME_ZONE, localDateTimeLong } from '../core/local-time';
import { escapeHtml, page, renderErrorPage } from '../proxy/error-page';
import type { ReportKind } from '../incidents/types';
import { renderSupportBanner } from './safeguarding';

// The protocol's own error pages (400, 407, 502…) share this frame; the filter's pages add to it.
export { escapeHtml, renderErrorPage };

export interface BlockPageInput {
  url: string;
  host: string;
  /** The category's friendly name ("Gambling/Casino games"), else its folder name. */
  categoryName: string | null;
  at: Date;
  /** The school's time zone (config `timeZone`): the time is shown as the classroom clock shows it. */
  timeZone?: string;
  /** The incident reference staff quote to the safeguarding lead. */
  reference: string;
  /** The sealed (opaque) reference the report forms carry. */
  token: string;
  /** Where the forms post: `<scheme>://<pagesHost>/block/report`, answered by the gateway itself. */
  reportAction: string;
  /**
   * The category is a list of content illegal to view (config illegalCategories: IWF, CTIRU). Only
   * then does the page say "illegal" and name the IWF: adult content is legal, however blocked.
   */
  illegal?: boolean;
}

/** One of the block page's two report forms: the same sealed reference, a different report type. */
function reportForm(p: BlockPageInput, type: ReportKind, id: string, label: string, placeholder: string, buttonAttrs: string, button: string): string {
  return `<form method="post" action="${escapeHtml(p.reportAction)}">
<input type="hidden" name="ref" value="${escapeHtml(p.token)}">
<input type="hidden" name="type" value="${type}">
<label for="${id}">${label}</label>
<textarea id="${id}" name="note" maxlength="2000" placeholder="${placeholder}"></textarea>
<button type="submit"${buttonAttrs}>${button}</button>
</form>`;
}

const ILLEGAL_NOTE = `<p><strong>This address is on a list of content that is illegal to view in the UK.</strong>
Do not try to reach it another way. If you came across it by accident you have done nothing wrong: tell the safeguarding lead
with the button below. You can also report it, anonymously, to the Internet Watch Foundation (IWF) at report.iwf.org.uk.</p>
`;

export function renderBlockPage(p: BlockPageInput): string {
  // The formatter is made once per zone (core/local-time.ts): building one per page cost more CPU than forwarding a request.
  const when = localDateTimeLong(p.at, p.timeZone ?? DEFAULT_TIME_ZONE);
  const category = p.categoryName ?? 'a blocked category';
  return page('This page is blocked', `
<h1>This page is blocked</h1>
<p>The school's web filter stopped this page because it is in the category <strong>${escapeHtml(category)}</strong>.
A record has been kept, as the school's acceptable use policy explains.</p>
${p.illegal ? ILLEGAL_NOTE : ''}<dl>
<dt>Website</dt><dd>${escapeHtml(p.host)}</dd>
<dt>Address</dt><dd>${escapeHtml(p.url.length > 300 ? `${p.url.slice(0, 300)}…` : p.url)}</dd>
<dt>Category</dt><dd>${escapeHtml(category)}</dd>
<dt>When</dt><dd><time datetime="${p.at.toISOString()}">${escapeHtml(when)}</time></dd>
<dt>Reference</dt><dd><code>${escapeHtml(p.reference)}</code></dd>
</dl>
${reportForm(p, 'self_report', 'note-accident', 'Did you reach this page by accident? You can tell the safeguarding lead now (note optional):', 'For example: I clicked a link in a search result', '', 'This was accidental — report it to the safeguarding lead')}
${reportForm(p, 'unblock_request', 'note-unblock', 'Is this page needed for school work? Ask the network manager to review it (note optional):', 'For example: we use this site in Year 9 history', ' class="secondary"', 'I think this should not be blocked')}
<p class="small">Quote the reference above if you speak to the safeguarding lead or the IT team.</p>
`);
}

export function renderNoListsPage(p: { url: string; consoleUrl: string }): string {
  return page('The web filter is not ready', `
<h1>The web filter is not ready yet</h1>
<p>No filtering lists are loaded, so the school's web filter is blocking every website to keep
everyone safe. Nothing is wrong with your device.</p>
<dl><dt>Address</dt><dd>${escapeHtml(p.url.slice(0, 300))}</dd></dl>
<p class="small">For the network manager: load lists with <code>schoolgate lists update --from DIR|URL</code>
or from the console at ${escapeHtml(p.consoleUrl)}.</p>
`);
}

export function renderHostMismatchPage(p: { tunnelHost: string; hostHeader: string }): string {
  return page('Request blocked', `
<h1>This request was blocked</h1>
<p>The request named a different website (<strong>${escapeHtml(p.hostHeader)}</strong>) from the one the
connection was opened to (<strong>${escapeHtml(p.tunnelHost)}</strong>). The web filter does not allow this.</p>
<p class="small">Error code: SG_ERR_HOST_MISMATCH</p>
`);
}

export function renderThanksPage(p: { type: ReportKind; reference: string }): string {
  const text =
    p.type === 'self_report'
      ? 'Thank you — your report has been sent to the safeguarding lead. You do not need to do anything else.'
      : 'Thank you — your request has been sent to the network manager, who will review whether this page should be unblocked.';
  return page('Thank you', `
<h1>Thank you</h1>
<p>${escapeHtml(text)}</p>
<p class="small">Reference: <code>${escapeHtml(p.reference)}</code></p>
`);
}

/**
 * What a pupil sees instead of the results of a self-harm, suicide or eating-disorder search
 * (issue 13, point 4): where help is, now, and a link on to the results. Nothing is blocked: a
 * pupil researching for a lesson, or looking for help, reaches the results with one click.
 *
 * Like the block page it is served on the search engine's own origin, so it names nobody and
 * repeats nothing the person did not just type; `continueHref` is the same search with the
 * gateway's sealed marker added (filter/support-continue.ts).
 */
export function renderSupportPage(p: { continueHref: string; schoolNote?: string }): string {
  return page('Help is here if you need it', `
<h1>Before you see your results</h1>
<p>Searches like this one can mean someone is going through a hard time. If that is you, you do not
have to deal with it alone: these people are there for you, free and in confidence, whenever you need them.</p>
${renderSupportBanner({ schoolNote: p.schoolNote ?? 'You can also talk to any adult you trust in school. Looking out for searches like this is part of how school keeps everyone safe: it is to help, never to get you into trouble.' })}
<p><a href="${escapeHtml(p.continueHref)}" rel="noreferrer">Continue to your results</a></p>
`);
}
