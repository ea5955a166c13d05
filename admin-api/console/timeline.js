// A person's timeline (issue 13, point 6): their incidents and, around each, their browsing log.
// The safeguarding lead's alone; the server audits every opening, so nothing here is prefetched.
import { h, api, mount, errorBox, timeEl, urlView, statusBadge, KIND_LABELS, ApiError } from './dom.js';

const WINDOWS = [15, 60, 180, 720];

function formatBytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** Incidents and log rows in one list by time, each incident among the minutes around it. */
function merged(data) {
  const items = [
    ...data.incidents.map((inc) => ({ at: inc.occurredAt, incident: inc })),
    ...data.browsing.map((row) => ({ at: row.minute, row })),
  ];
  return items.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.incident ? -1 : 1));
}

function incidentItem(inc, focus) {
  return h('tr', { class: `timeline-incident${focus ? ' focus' : ''}` },
    h('td', {}, timeEl(inc.occurredAt)),
    h('td', {}, h('a', { href: `#/incidents/${inc.id}` }, `Incident #${inc.id}`), ' ', statusBadge(inc.status)),
    h('td', {}, KIND_LABELS[inc.kind] ?? inc.kind, inc.categoryName || inc.category ? ` — ${inc.categoryName || inc.category}` : ''),
    h('td', {}, urlView(inc), inc.searchTerms ? h('div', { class: 'small' }, `Searched: ${inc.searchTerms}`) : null),
    h('td', {}, inc.count > 1 ? `${inc.count} times` : ''));
}

function rowItem(row) {
  return h('tr', { class: `timeline-log ${row.verdict}` },
    h('td', {}, timeEl(row.minute)),
    h('td', {}, row.verdict === 'allowed' ? 'Visited' : h('strong', {}, 'Blocked')),
    h('td', {}, row.host, row.category ? h('span', { class: 'small' }, ` (${row.category})`) : null),
    h('td', {}, row.searchTerms?.length ? h('div', { class: 'small' }, `Searched: ${row.searchTerms.join(' · ')}`) : null),
    h('td', {}, `${row.requests} request${row.requests === 1 ? '' : 's'}`, row.verdict === 'allowed' ? `, ${formatBytes(row.bytes)}` : ''));
}

export async function timelinePage(ctx) {
  const id = ctx.params[0];
  const windowMinutes = Number(ctx.query.get('window')) || 60;
  const back = h('p', { class: 'back' }, h('a', { href: `#/incidents/${encodeURIComponent(id)}` }, `← Back to incident #${id}`));
  const data = await api(`/api/incidents/${encodeURIComponent(id)}/timeline?${new URLSearchParams({ window: String(windowMinutes) })}`).catch((err) => err);
  if (!ctx.isCurrent()) return;
  if (data instanceof Error) {
    mount(ctx.view, back, h('h1', {}, 'Timeline'), errorBox(data));
    if (!(data instanceof ApiError)) throw data;
    return;
  }
  ctx.setTitle(`Timeline: ${data.person}`);
  const choose = h('p', { class: 'small' }, 'Browsing shown around each incident: ',
    WINDOWS.map((w) => [w === windowMinutes
      ? h('strong', {}, `±${w} min`)
      : h('a', { href: `#/incidents/${encodeURIComponent(id)}/timeline?window=${w}` }, `±${w} min`), ' ']));
  const items = merged(data);
  const table = items.length
    ? h('table', { class: 'timeline-table' },
      h('caption', { class: 'visually-hidden' }, `Incidents and browsing of ${data.person}`),
      h('thead', {}, h('tr', {}, ['When', 'What', 'Where', 'Detail', 'Amount'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, items.map((it) => (it.incident ? incidentItem(it.incident, String(it.incident.id) === String(id)) : rowItem(it.row)))))
    : h('p', { class: 'muted' }, 'Nothing recorded for this person in this period.');
  mount(ctx.view,
    back,
    h('h1', {}, `Timeline: ${data.person}`),
    h('p', {}, `${data.incidents.length} incident${data.incidents.length === 1 ? '' : 's'} from `, timeEl(data.from), ' to ', timeEl(data.to),
      `, with ${data.browsing.length} minute${data.browsing.length === 1 ? '' : 's'} of browsing around them. Opening this page is recorded in the audit log.`),
    data.truncated ? h('div', { class: 'warning', role: 'note' }, 'More than one page shows: only the first part is listed.') : null,
    choose,
    table);
}
