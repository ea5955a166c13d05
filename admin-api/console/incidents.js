// The incident queue (filters, live updates, chart, CSV export) and one incident's detail and triage.
import {
  h, api, mount, errorBox, describeError, field, select, timeEl, urlView, statusBadge, severityBadge, itemsOf, decisionView,
  STATUS_LABELS, KIND_LABELS, SEVERITY_LABELS, ILLEGAL_WARNING, ApiError, addDays, localDay, schoolInstant,
} from './dom.js';
import { incidentsChart } from './chart.js';
import { KINDS, STATUSES, TIERS, NEXT_STATUSES, CLOSING, REOPENED, LINKABLE_KINDS } from './vocab.js';

const DSL = 'safeguarding_lead';
const FILTERS = ['status', 'severity', 'kind', 'category', 'user', 'q', 'from', 'to', 'sort'];
// Most urgent first in the select, as the DSL reads it.
const SEVERITY_OPTIONS = [...TIERS].reverse();
const CHART_DAYS = 14;
// What a bulk change can set: every status some status may move to (nothing moves back to new).
const BULK_TARGETS = STATUSES.filter((st) => Object.values(NEXT_STATUSES).some((next) => next.includes(st)));
// The API's rule (incidents/queries.ts needsNote): closing and reopening are decisions with a reason.
const needsNote = (from, to) => Boolean(to) && from !== to && (CLOSING.has(to) || CLOSING.has(from));
// Server messages name statuses as stored; people read their labels.
const STATUS_WORDS = new RegExp(`\\b(${STATUSES.join('|')})\\b`, 'g');
const withLabels = (text) => String(text).replace(STATUS_WORDS, (st) => STATUS_LABELS[st] ?? st);
/** Which source named the person (core/vocabulary.ts IDENTITY_SOURCES): how sure the name is. */
const IDENTITY_SOURCE_LABELS = {
  radius: 'Wi-Fi / network sign-in (RADIUS)',
  proxy_auth: 'Proxy sign-in (console account)',
  directory: 'Proxy sign-in (school directory)',
  clients: 'Address map (clients setting)',
  unknown: 'Nobody (address only)',
};


// "Back to the queue" returns to the queue as it was filtered, not to a fresh one.
let lastQueueHash = '#/incidents';

// Dates in the URL are the school's days; the API gets instants, so "to" includes the whole of its day.
function startOfDay(day) {
  return /^\d{4}-\d{2}-\d{2}$/.test(day) ? schoolInstant(day) : null;
}
function endOfDay(day) {
  return /^\d{4}-\d{2}-\d{2}$/.test(day) ? schoolInstant(addDays(day, 1)) : null;
}

// The chart's days are the school's days, as the API groups them (its time zone), ending today.
function chartRange(days = CHART_DAYS) {
  const to = localDay();
  const from = addDays(to, -(days - 1));
  return { from, to, query: new URLSearchParams({ from: startOfDay(from), to: endOfDay(to) }) };
}

/** The queue over a chart's days: its counts are the chart's (stats count incidents as the queue lists them). */
function queueHash(from, to, extra = {}) {
  return `#/incidents?${new URLSearchParams({ ...extra, from, to })}`;
}

function apiQuery(filters, extra = {}) {
  const q = new URLSearchParams();
  for (const key of FILTERS) {
    const v = filters[key];
    if (!v) continue;
    if (key === 'from') { const iso = startOfDay(v); if (iso) q.set('from', iso); }
    else if (key === 'to') { const iso = endOfDay(v); if (iso) q.set('to', iso); }
    else q.set(key, v);
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  return q;
}

async function categoryNames(role) {
  const names = new Map();
  if (role !== DSL && role !== 'network_manager') return names;
  try {
    const data = await api('/api/lists');
    for (const c of data?.categories ?? []) names.set(c.name, c.friendlyName || c.name);
  } catch {
    // Names are a nicety: the raw category keys still work in filters.
  }
  return names;
}

function matchesFilters(incident, filters) {
  if (filters.q || filters.from || filters.to) return false;
  if (filters.status && incident.status !== filters.status) return false;
  if (filters.kind && incident.kind !== filters.kind) return false;
  if (filters.severity && incident.severity !== filters.severity) return false;
  if (filters.category && incident.category !== filters.category) return false;
  if (filters.user && String(incident.user ?? '').toLowerCase() !== filters.user.toLowerCase()) return false;
  return true;
}

function whoCell(item) {
  // The school's own name for the person ("Sam Jones, 9B", from the directory or an MIS import) leads; the login follows.
  const main = item.personName || item.user || item.device || item.clientIp;
  if (!main) return h('span', { class: 'muted' }, 'unknown');
  const extra = [item.personName ? item.user : null, item.user && item.device ? item.device : null, (item.user || item.device) && item.clientIp ? item.clientIp : null].filter(Boolean);
  return [h('span', {}, main), extra.length ? h('span', { class: 'muted small' }, ` ${extra.join(' · ')}`) : null];
}

function incidentRow(item, names, selectable = false) {
  const categoryLabel = item.categoryName || names.get(item.category) || item.category;
  // data-label lets narrow screens show each row as a card with its own headings.
  return h('tr', { class: item.illegal ? 'row-illegal' : null, 'data-id': item.id },
    selectable ? h('td', { class: 'pick-cell', 'data-label': 'Select' },
      h('input', { type: 'checkbox', class: 'pick', value: String(item.id), 'aria-label': `Select incident ${item.id}` })) : null,
    h('td', { 'data-label': 'Incident' }, h('a', { href: `#/incidents/${item.id}`, 'aria-label': `Open incident ${item.id}` }, `#${item.id}`)),
    h('td', { 'data-label': 'When' }, timeEl(item.occurredAt)),
    h('td', { 'data-label': 'Severity' }, severityBadge(item.severity)),
    h('td', { 'data-label': 'Kind' }, KIND_LABELS[item.kind] ?? item.kind),
    h('td', { 'data-label': 'Category' }, categoryLabel ? categoryLabel : h('span', { class: 'muted' }, '—')),
    h('td', { 'data-label': 'Who' }, h('span', {}, whoCell(item))),
    h('td', { class: 'url-cell', 'data-label': 'Address' }, urlView(item)),
    h('td', { 'data-label': 'Status' }, statusBadge(item.status), item.decision ? [h('br'), decisionView(item.decision)] : null),
    h('td', { class: 'num', 'data-label': 'Seen' }, item.count ?? 1));
}

export async function incidentsPage(ctx, flash) {
  const isDsl = ctx.me.role === DSL;
  const filters = Object.fromEntries(FILTERS.map((k) => [k, ctx.query.get(k) ?? '']));
  lastQueueHash = location.hash || '#/incidents';
  const title = isDsl ? 'Incidents' : 'My reports';
  ctx.setTitle(title);

  const chartBody = h('div', {}, h('p', { class: 'muted' }, 'Loading the chart…'));
  const period = select('days', [['14', 'Last 14 days'], ['30', 'Last 30 days'], ['90', 'Last 90 days']], String(CHART_DAYS), { id: 'chart-period' });
  const chartSlot = h('section', { class: 'card', 'aria-labelledby': 'chart-title' },
    h('div', { class: 'page-head' }, h('h2', { id: 'chart-title' }, 'Overview'), h('div', { class: 'field inline' }, h('label', { for: 'chart-period' }, 'Period'), period)),
    chartBody);
  const resultsStatus = h('p', { class: 'results-count', id: 'results-count' });
  const tbody = h('tbody');
  const moreSlot = h('div', { class: 'actions' });
  const range = chartRange();
  const [listRes, names, statsRes, usersRes] = await Promise.allSettled([
    api(`/api/incidents?${apiQuery(filters, { limit: 50 })}`),
    categoryNames(ctx.me.role),
    isDsl ? api(`/api/stats?${range.query}`) : Promise.resolve(null),
    isDsl ? loadUsers() : Promise.resolve([]),
  ]);
  if (!ctx.isCurrent()) return;
  const nameMap = names.status === 'fulfilled' ? names.value : new Map();
  if (statsRes.status === 'fulfilled' && statsRes.value) {
    for (const c of statsRes.value.perCategory ?? []) if (c.categoryName && !nameMap.has(c.category)) nameMap.set(c.category, c.categoryName);
  }

  // Filters live in the address so a filtered queue can be bookmarked and the Back button works.
  const form = h('form', { class: 'filters card', role: 'search', 'aria-label': 'Filter incidents' });
  const categoryOptions = [['', 'Any category'], ...[...nameMap.entries()].sort((a, b) => a[1].localeCompare(b[1])).map(([k, v]) => [k, v === k ? k : `${v} (${k})`])];
  if (filters.category && !nameMap.has(filters.category)) categoryOptions.push([filters.category, filters.category]);
  form.append(
    h('div', { class: 'filter-grid' },
      field('Status', select('status', [['', 'Any status'], ...STATUSES.map((st) => [st, STATUS_LABELS[st] ?? st])], filters.status, { id: 'filter-status' })),
      field('Severity', select('severity', [['', 'Any severity'], ...SEVERITY_OPTIONS.map((t) => [t, SEVERITY_LABELS[t] ?? t])], filters.severity, { id: 'filter-severity' })),
      field('Order', select('sort', [['', 'Newest first'], ['severity', 'Alerts first']], filters.sort, { id: 'filter-sort' })),
      field('Kind', select('kind', [['', 'Any kind'], ...KINDS.map((k) => [k, KIND_LABELS[k] ?? k])], filters.kind, { id: 'filter-kind' })),
      field('Category', select('category', categoryOptions, filters.category, { id: 'filter-category' })),
      isDsl ? field('Person', h('input', { type: 'text', name: 'user', id: 'filter-user', value: filters.user, autocomplete: 'off' })) : null,
      field('Search', h('input', { type: 'search', name: 'q', id: 'filter-q', value: filters.q, autocomplete: 'off' }), 'Address, host or search words'),
      field('From', h('input', { type: 'date', name: 'from', id: 'filter-from', value: filters.from })),
      field('To', h('input', { type: 'date', name: 'to', id: 'filter-to', value: filters.to }))),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply filters'),
      h('button', { type: 'button', onclick: () => ctx.navigate('/incidents') }, 'Clear filters')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const q = new URLSearchParams();
    for (const key of FILTERS) {
      const v = String(data.get(key) ?? '').trim();
      if (v) q.set(key, v);
    }
    ctx.navigate('/incidents', q);
  });

  const selectAll = isDsl ? h('input', { type: 'checkbox', id: 'select-all', 'aria-label': 'Select every incident on this page' }) : null;
  const table = h('table', { class: 'data incidents', 'aria-describedby': 'results-count' },
    h('caption', { class: 'visually-hidden' }, title),
    h('thead', {}, h('tr', {},
      isDsl ? h('th', { scope: 'col', class: 'pick-cell' }, selectAll) : null,
      ['Incident', 'When', 'Severity', 'Kind', 'Category', 'Who', 'Address', 'Status', 'Seen'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  // Every incident shown, by id: the bulk form checks notes against each one's status.
  const shownById = new Map();
  const bulk = isDsl ? bulkForm(ctx, { tbody, selectAll, shownById, users: usersRes.status === 'fulfilled' ? usersRes.value : [] }) : null;

  let shown = 0;
  const setCount = (more) => {
    const active = FILTERS.filter((k) => k !== 'sort' && filters[k]).length;
    resultsStatus.textContent = shown === 0
      ? (active ? 'No incidents match these filters.' : 'No incidents yet.')
      : `${shown}${more ? '+' : ''} incident${shown === 1 ? '' : 's'}${active ? ` matching ${active} filter${active === 1 ? '' : 's'}` : ''}, ${filters.sort === 'severity' ? 'alerts first' : 'newest first'}.`;
  };
  const addPage = (data) => {
    const items = itemsOf(data);
    for (const i of items) shownById.set(String(i.id), i);
    tbody.append(...items.map((i) => incidentRow(i, nameMap, isDsl)));
    bulk?.sync();
    shown += items.length;
    setCount(Boolean(data?.nextCursor));
    mount(moreSlot, data?.nextCursor
      ? h('button', {
        type: 'button',
        onclick: async (event) => {
          const button = event.currentTarget;
          button.disabled = true;
          button.textContent = 'Loading…';
          try {
            const next = await api(`/api/incidents?${apiQuery(filters, { limit: 50, cursor: data.nextCursor })}`);
            addPage(next);
            ctx.announce(`${itemsOf(next).length} more incidents loaded.`);
          } catch (err) {
            mount(moreSlot, errorBox(err));
          }
        },
      }, 'Load more incidents')
      : null);
  };

  const exportLink = isDsl
    ? h('a', { class: 'button', href: `/api/incidents/export.csv?${apiQuery(filters)}`, download: 'incidents.csv' }, 'Export these incidents (CSV)')
    : null;

  mount(ctx.view,
    h('div', { class: 'page-head' },
      h('h1', {}, title),
      isDsl ? null : h('a', { class: 'button primary', href: '#/report' }, 'Report accidental access')),
    flash ?? null,
    isDsl ? chartSlot : null,
    form,
    h('section', { 'aria-labelledby': 'queue-title' },
      h('div', { class: 'page-head' }, h('h2', { id: 'queue-title' }, isDsl ? 'Queue' : 'Your incidents'), exportLink),
      resultsStatus,
      listRes.status === 'fulfilled' ? bulk?.form ?? null : null,
      listRes.status === 'fulfilled' ? h('div', { class: 'table-wrap' }, table) : errorBox(listRes.reason),
      moreSlot));

  if (listRes.status === 'fulfilled') addPage(listRes.value);
  if (isDsl) {
    const showStats = (stats, r) => {
      const counts = new Map((stats?.perStatus ?? []).map((x) => [x.status, x.count]));
      // Open work first, each a link to the queue filtered on it.
      const glance = h('p', { class: 'glance' }, 'In this period: ',
        STATUSES.map((st, i) => [i ? ' · ' : '',
          h('a', { href: queueHash(r.from, r.to, { status: st }) }, `${counts.get(st) ?? 0} ${(STATUS_LABELS[st] ?? st).toLowerCase()}`)]));
      mount(chartBody, glance, incidentsChart({ perDay: stats?.perDay ?? [], names: nameMap, from: r.from, to: r.to, dayHref: (d) => queueHash(d, d) }));
    };
    if (statsRes.status === 'fulfilled') showStats(statsRes.value, range);
    else mount(chartBody, errorBox(statsRes.reason));
    period.addEventListener('change', async () => {
      const r = chartRange(Number(period.value));
      try {
        const stats = await api(`/api/stats?${r.query}`);
        if (!ctx.isCurrent()) return;
        showStats(stats, r);
        ctx.announce(`Chart now shows the last ${period.value} days.`);
      } catch (err) {
        mount(chartBody, errorBox(err));
      }
    });
  }

  ctx.onIncident((incident) => {
    // A repeat folded into an incident already shown updates that row (its count) in place.
    const existing = tbody.querySelector(`tr[data-id="${CSS.escape(String(incident.id))}"]`);
    shownById.set(String(incident.id), incident);
    if (existing) {
      const fresh = incidentRow(incident, nameMap, isDsl);
      // A row the DSL ticked stays ticked when its count changes under them.
      const ticked = existing.querySelector('input.pick')?.checked;
      if (ticked) fresh.querySelector('input.pick').checked = true;
      existing.replaceWith(fresh);
      return;
    }
    if (!matchesFilters(incident, filters)) return;
    const row = incidentRow(incident, nameMap, isDsl);
    row.classList.add('fresh');
    tbody.prepend(row);
    bulk?.sync();
    shown += 1;
    setCount(false);
  });
}

/**
 * The queue's bulk triage: tick incidents (or every one on the page), then one status, assignee
 * and note for all of them in one request. The API applies it to all or to none; a refusal lists
 * each incident that cannot take the change, and those rows are marked so they can be unticked.
 */
function bulkForm(ctx, { tbody, selectAll, shownById, users }) {
  const status = select('status', [['', 'No change'], ...BULK_TARGETS.map((st) => [st, STATUS_LABELS[st] ?? st])], '', { id: 'bulk-status' });
  const assignable = users.filter((u) => !u.disabled && u.role === DSL);
  const assignee = select('assigneeId', [['', 'No change'], ['nobody', 'Nobody'], ...assignable.map((u) => [String(u.id), u.displayName || u.email])], '', { id: 'bulk-assignee' });
  const note = h('textarea', { name: 'note', id: 'bulk-note', rows: 2 });
  const count = h('p', { class: 'bulk-count', id: 'bulk-count' }, 'No incidents selected.');
  const result = h('div', { class: 'form-status', id: 'bulk-result' });
  const apply = h('button', { type: 'submit', class: 'primary', disabled: true }, 'Apply to selected');
  const picks = () => [...tbody.querySelectorAll('input.pick')];
  const picked = () => picks().filter((c) => c.checked).map((c) => c.value);

  const sync = () => {
    const all = picks();
    const n = all.filter((c) => c.checked).length;
    count.textContent = n ? `${n} incident${n === 1 ? '' : 's'} selected.` : 'No incidents selected.';
    selectAll.checked = n > 0 && n === all.length;
    selectAll.indeterminate = n > 0 && n < all.length;
    apply.disabled = n === 0;
  };
  selectAll.addEventListener('change', () => {
    for (const c of picks()) c.checked = selectAll.checked;
    sync();
  });
  tbody.addEventListener('change', (event) => {
    if (event.target?.classList?.contains('pick')) sync();
  });

  const form = h('form', { class: 'card bulk', 'aria-label': 'Change the selected incidents', novalidate: true },
    h('h3', {}, 'Change the selected incidents'),
    count,
    h('div', { class: 'filter-grid' },
      field('Set status', status),
      field('Assign to', assignee),
      field('Note for each', note, 'Required when closing or reopening.')),
    result,
    h('div', { class: 'actions' }, apply));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    for (const tr of tbody.querySelectorAll('tr.row-refused')) tr.classList.remove('row-refused');
    const ids = picked();
    const body = { ids: ids.map(Number) };
    if (status.value) body.status = status.value;
    if (assignee.value) body.assigneeId = assignee.value === 'nobody' ? null : Number(assignee.value);
    const text = note.value.trim();
    if (text) body.note = text;
    if (!ids.length) {
      mount(result, h('div', { class: 'error', role: 'alert' }, 'Select at least one incident first.'));
      return;
    }
    if (body.status === undefined && body.assigneeId === undefined && body.note === undefined) {
      mount(result, h('div', { class: 'error', role: 'alert' }, 'Nothing to apply: choose a status, an assignee or write a note.'));
      return;
    }
    if (!text && ids.some((id) => needsNote(shownById.get(id)?.status, body.status))) {
      mount(result, h('div', { class: 'error', role: 'alert' }, 'Write a note saying why: closing or reopening an incident needs one.'));
      note.setAttribute('aria-invalid', 'true');
      note.focus();
      return;
    }
    note.removeAttribute('aria-invalid');
    apply.disabled = true;
    mount(result, h('p', { class: 'muted' }, 'Applying…'));
    try {
      const res = await api('/api/incidents/bulk', { method: 'POST', body });
      const n = res?.incidents?.length ?? ids.length;
      const message = `${n} incident${n === 1 ? '' : 's'} changed${body.status ? ` to ${STATUS_LABELS[body.status] ?? body.status}` : ''}.`;
      ctx.announce(message);
      const flash = h('div', { class: 'success', role: 'status', tabindex: '-1' }, message);
      await incidentsPage(ctx, flash);
      flash.focus();
    } catch (err) {
      apply.disabled = false;
      const failures = err instanceof ApiError ? err.body?.error?.details?.failures ?? [] : [];
      for (const f of failures) tbody.querySelector(`tr[data-id="${CSS.escape(String(f.id))}"]`)?.classList.add('row-refused');
      mount(result, h('div', { class: 'error', role: 'alert' },
        failures.length
          ? [h('p', {}, `Nothing was changed: ${failures.length} of ${ids.length} selected incident${ids.length === 1 ? '' : 's'} cannot take this change. Untick ${failures.length === 1 ? 'it' : 'them'}, or choose another change.`),
            h('ul', { class: 'bulk-failures' }, failures.map((f) => h('li', {}, h('a', { href: `#/incidents/${f.id}` }, `Incident #${f.id}`), `: ${withLabels(f.message)}`)))]
          : describeError(err)));
    }
  });
  return { form, sync };
}

function describeEvent(ev) {
  if (ev.fromStatus || ev.toStatus) {
    if (ev.fromStatus && ev.toStatus && ev.fromStatus !== ev.toStatus) {
      return `changed the status from ${STATUS_LABELS[ev.fromStatus] ?? ev.fromStatus} to ${STATUS_LABELS[ev.toStatus] ?? ev.toStatus}`;
    }
    if (!ev.fromStatus && ev.toStatus) return `${String(ev.action ?? 'set the status').replace(/_/g, ' ')} (${STATUS_LABELS[ev.toStatus] ?? ev.toStatus})`;
  }
  return String(ev.action ?? 'updated').replace(/_/g, ' ');
}

async function loadUsers() {
  try {
    const data = await api('/api/users');
    return itemsOf(data).length ? itemsOf(data) : itemsOf(data, 'users');
  } catch {
    return [];
  }
}

export async function incidentPage(ctx, flash) {
  const id = ctx.params[0];
  const isDsl = ctx.me.role === DSL;
  const [detail, users] = await Promise.all([
    api(`/api/incidents/${encodeURIComponent(id)}`).catch((err) => err),
    isDsl ? loadUsers() : Promise.resolve([]),
  ]);
  if (!ctx.isCurrent()) return;
  const back = h('p', { class: 'back' }, h('a', { href: lastQueueHash }, isDsl ? '← Back to the queue' : '← Back to my reports'));
  if (detail instanceof Error) {
    mount(ctx.view, back, h('h1', {}, `Incident #${id}`), errorBox(detail));
    if (!(detail instanceof ApiError)) throw detail;
    return;
  }
  const { incident: inc, events = [], attempts = [], related = [] } = detail;
  ctx.setTitle(`Incident #${inc.id}`);
  const usersById = new Map(users.map((u) => [String(u.id), u]));
  const userLabel = (u) => u.displayName || u.display_name || u.email;
  const categoryLabel = inc.categoryName && inc.categoryName !== inc.category ? `${inc.categoryName} (${inc.category})` : inc.category;

  const rows = [
    ['Status', statusBadge(inc.status)],
    ['Severity', severityBadge(inc.severity)],
    ['Kind', KIND_LABELS[inc.kind] ?? inc.kind],
    ['Category', categoryLabel],
    ['Address', urlView(inc, { link: true })],
    ['Host', inc.host],
    ['Person', inc.user ? [inc.personName ? `${inc.personName} (${inc.user})` : inc.user, isDsl ? [' ', h('a', { href: `#/incidents?${new URLSearchParams({ user: inc.user })}`, class: 'small' }, 'their other incidents')] : null] : null],
    ['Timeline', isDsl && (inc.user || inc.clientIp) ? h('a', { href: `#/incidents/${inc.id}/timeline`, id: 'timeline-link' }, 'Open their timeline (incidents and browsing around each; recorded in the audit log)') : null],
    ['Device', inc.device],
    ['Client IP', inc.clientIp],
    ['Named by', inc.identitySource ? IDENTITY_SOURCE_LABELS[inc.identitySource] ?? inc.identitySource : null],
    ['Policy group', inc.policyGroup],
    ['Search terms', inc.searchTerms],
    ['Phrase that fired', inc.matchedPhrase],
    ['Note from the reporter', inc.note],
    // The API gives an unblock request its decision (null while undecided); other kinds have none.
    ['Network manager\'s decision', inc.decision !== undefined ? (inc.decision ? [decisionView(inc.decision), ' ', timeEl(inc.decision.decidedAt)] : 'Not decided yet') : null],
    ['Times seen', inc.count],
    ['First seen', timeEl(inc.occurredAt)],
    ['Last seen', timeEl(inc.lastSeen)],
    ['Assigned to', inc.assigneeId != null ? (usersById.has(String(inc.assigneeId)) ? userLabel(usersById.get(String(inc.assigneeId))) : `user ${inc.assigneeId}`) : 'Nobody'],
  ].filter(([, v]) => v !== null && v !== undefined && v !== '');

  const history = events.length
    ? h('ol', { class: 'timeline' }, events.map((ev) => h('li', {},
      h('div', {}, timeEl(ev.at), ' — ', h('strong', {}, ev.actor || 'system'), ' ', describeEvent(ev)),
      ev.note ? h('blockquote', { class: 'note' }, ev.note) : null)))
    : h('p', { class: 'muted' }, 'No history yet.');

  // Each time the person went back to the site (folded into this incident), with the page they asked for.
  const attemptList = attempts.length > 1
    ? h('section', { class: 'card', 'aria-labelledby': 'attempts-title' },
      h('h2', { id: 'attempts-title' }, `Attempts (${inc.count})`),
      inc.count > attempts.length ? h('p', { class: 'muted small' }, `The first ${attempts.length} are listed.`) : null,
      h('ol', { class: 'timeline' }, attempts.map((a) => h('li', {}, timeEl(a.at), ' — ', a.url ? urlView({ ...inc, url: a.url }) : h('span', { class: 'muted' }, 'address not kept')))))
    : null;

  mount(ctx.view,
    back,
    h('h1', {}, `Incident #${inc.id}: ${KIND_LABELS[inc.kind] ?? inc.kind}${inc.categoryName || inc.category ? ` — ${inc.categoryName || inc.category}` : ''}`),
    flash ?? null,
    inc.illegal ? h('div', { class: 'warning', role: 'note' }, h('strong', {}, 'Illegal content category. '), ILLEGAL_WARNING) : null,
    h('div', { class: 'detail-grid' },
      h('section', { class: 'card', 'aria-labelledby': 'details-title' },
        h('h2', { id: 'details-title' }, 'Details'),
        h('dl', { class: 'details' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]))),
      isDsl ? triageForm(ctx, inc, users, userLabel) : null),
    linkedSection(inc, related, isDsl),
    attemptList,
    h('section', { class: 'card', 'aria-labelledby': 'history-title' }, h('h2', { id: 'history-title' }, 'History'), history));
}

/**
 * A report and the block it is about, seen from either end: a report names its block (relatedKey,
 * the reference the block page showed), a block lists the reports that name it. Staff see their
 * own block with a way to report it, linked, if they have not yet.
 */
function linkedSection(inc, related, isDsl) {
  const isReport = Boolean(inc.relatedKey);
  const linkable = LINKABLE_KINDS.includes(inc.kind);
  if (!isReport && !linkable) return null;
  const item = (r) => h('li', {},
    h('a', { href: `#/incidents/${r.id}` }, `Incident #${r.id}: ${KIND_LABELS[r.kind] ?? r.kind}`),
    ' — ', timeEl(r.occurredAt), r.user ? ` — ${r.user}` : '', ' ', statusBadge(r.status),
    r.note ? h('blockquote', { class: 'note' }, r.note) : null);
  const title = isReport ? 'The block this report is about' : 'Reports about this block';
  let body;
  if (related.length) body = h('ul', { class: 'linked' }, related.map(item));
  else if (isReport && !isDsl) {
    // Staff see only incidents in their own name: a block on a device nobody was signed in to is not one.
    body = h('p', {}, 'Your report names the block with the reference ', h('code', {}, inc.relatedKey), '.');
  } else if (isReport) {
    body = h('p', { class: 'muted' }, 'The block it names (reference ', h('code', {}, inc.relatedKey),
      ') is not among the incidents: its category may only be logged, or retention has deleted it.');
  } else body = h('p', { class: 'muted' }, 'Nobody has reported this block yet.');
  // Staff open only their own incidents: a block of theirs can be reported from here, linked.
  const report = !isDsl && linkable && !related.length
    ? h('p', {}, h('a', { class: 'button primary', href: `#/report?${new URLSearchParams({ ref: inc.key })}` }, 'Report this block as accidental access'))
    : null;
  return h('section', { class: 'card', 'aria-labelledby': 'linked-title', id: 'linked' }, h('h2', { id: 'linked-title' }, title), body, report);
}

function triageForm(ctx, inc, users, userLabel) {
  if (CLOSING.has(inc.status)) return reopenForm(ctx, inc);
  const next = NEXT_STATUSES[inc.status] ?? [];
  const status = select('status',
    [['', `No change (${STATUS_LABELS[inc.status] ?? inc.status})`], ...next.map((s) => [s, STATUS_LABELS[s] ?? s])], '', { id: 'triage-status' });
  const assignable = users.filter((u) => !u.disabled && (u.role === DSL || String(u.id) === String(inc.assigneeId)));
  const assignee = select('assigneeId',
    [['', 'Nobody'], ...assignable.map((u) => [String(u.id), userLabel(u)])], inc.assigneeId != null ? String(inc.assigneeId) : '', { id: 'triage-assignee' });
  const note = h('textarea', { name: 'note', id: 'triage-note', rows: 4 });
  const noteLabel = h('label', { for: 'triage-note' }, 'Note');
  const noteHint = h('span', { class: 'hint', id: 'triage-note-hint' }, 'What you did or decided. Required when closing or marking as a false positive.');
  note.setAttribute('aria-describedby', 'triage-note-hint');
  const status_ = h('div', { class: 'form-status' });
  const save = h('button', { type: 'submit', class: 'primary' }, 'Save');

  const syncRequired = () => {
    const closing = needsNote(inc.status, status.value);
    note.required = closing;
    note.setAttribute('aria-required', closing ? 'true' : 'false');
    noteLabel.textContent = closing ? 'Note (required)' : 'Note';
  };
  status.addEventListener('change', syncRequired);

  const form = h('form', { class: 'card triage', 'aria-labelledby': 'triage-title', novalidate: true },
    h('h2', { id: 'triage-title' }, 'Triage'),
    next.length ? field('New status', status) : h('p', { class: 'muted' }, `This incident is ${STATUS_LABELS[inc.status] ?? inc.status}: its status cannot change any more. You can still add a note.`),
    field('Assigned to', assignee),
    h('div', { class: 'field' }, noteLabel, noteHint, note),
    status_,
    h('div', { class: 'actions' }, save));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = {};
    const newStatus = next.length ? status.value : '';
    if (newStatus) body.status = newStatus;
    const currentAssignee = inc.assigneeId != null ? String(inc.assigneeId) : '';
    if (assignee.value !== currentAssignee) body.assigneeId = assignee.value ? Number(assignee.value) : null;
    const text = note.value.trim();
    if (text) body.note = text;
    if (needsNote(inc.status, newStatus) && !text) {
      mount(status_, h('div', { class: 'error', role: 'alert' }, 'Write a note saying why before closing this incident.'));
      note.setAttribute('aria-invalid', 'true');
      note.focus();
      return;
    }
    if (!Object.keys(body).length) {
      mount(status_, h('div', { class: 'error', role: 'alert' }, 'Nothing to save: choose a new status, an assignee or write a note.'));
      return;
    }
    save.disabled = true;
    mount(status_, h('p', { class: 'muted' }, 'Saving…'));
    try {
      const res = await api(`/api/incidents/${encodeURIComponent(inc.id)}`, { method: 'PATCH', body });
      const now = res?.incident?.status ?? newStatus ?? inc.status;
      const message = body.status ? `Saved. The incident is now ${STATUS_LABELS[now] ?? now}.` : 'Saved.';
      ctx.announce(message);
      const flash = h('div', { class: 'success', role: 'status', tabindex: '-1' }, message);
      await incidentPage(ctx, flash);
      // The form was replaced: keep keyboard users where the news is.
      flash.focus();
    } catch (err) {
      save.disabled = false;
      mount(status_, errorBox(err));
    }
  });
  return form;
}

/**
 * A closed (or false-positive) incident: reopen it, back to the queue, with a note saying why (the
 * API refuses a reopen without one; it is audited as incident_reopen), or add a note and leave it closed.
 */
function reopenForm(ctx, inc) {
  const note = h('textarea', { name: 'note', id: 'reopen-note', rows: 4, required: true, 'aria-required': 'true' });
  const result = h('div', { class: 'form-status' });
  const reopen = h('button', { type: 'submit', class: 'primary', value: 'reopen' }, 'Reopen incident');
  const noteOnly = h('button', { type: 'submit', value: 'note' }, 'Add the note only');
  const form = h('form', { class: 'card triage', 'aria-labelledby': 'triage-title', novalidate: true },
    h('h2', { id: 'triage-title' }, 'Reopen'),
    h('p', {}, `This incident is ${STATUS_LABELS[inc.status] ?? inc.status}. Reopening puts it back in the queue as ${STATUS_LABELS[REOPENED] ?? REOPENED}; it is recorded in the audit log.`),
    field('Note (required)', note, 'Why it is reopened (or what you want to add).'),
    result,
    h('div', { class: 'actions' }, reopen, noteOnly));
  note.addEventListener('input', () => {
    note.removeAttribute('aria-invalid');
    if (result.querySelector('.error')) mount(result);
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = note.value.trim();
    const reopening = event.submitter !== noteOnly;
    if (!text) {
      mount(result, h('div', { class: 'error', role: 'alert' }, reopening ? 'Write a note saying why before reopening this incident.' : 'Write the note first.'));
      note.setAttribute('aria-invalid', 'true');
      note.focus();
      return;
    }
    reopen.disabled = true;
    noteOnly.disabled = true;
    mount(result, h('p', { class: 'muted' }, 'Saving…'));
    try {
      const body = reopening ? { status: REOPENED, note: text } : { note: text };
      const res = await api(`/api/incidents/${encodeURIComponent(inc.id)}`, { method: 'PATCH', body });
      const now = res?.incident?.status ?? inc.status;
      const message = reopening ? `Reopened. The incident is now ${STATUS_LABELS[now] ?? now}.` : 'Saved.';
      ctx.announce(message);
      const flash = h('div', { class: 'success', role: 'status', tabindex: '-1' }, message);
      await incidentPage(ctx, flash);
      flash.focus();
    } catch (err) {
      reopen.disabled = false;
      noteOnly.disabled = false;
      mount(result, errorBox(err));
    }
  });
  return form;
}
