// List management for the network manager (the safeguarding lead sees it read-only): categories,
// sources, the school's own overrides, policy groups, reloads and unblock requests. Nothing here
// shows who did what: the network manager has no need to know.
import { h, api, mount, errorBox, field, select, timeEl, urlView, statusBadge, itemsOf, decisionView, ApiError, addDays, localDay, schoolInstant } from './dom.js';
import { incidentsChart } from './chart.js';
import { CLOSING } from './vocab.js';

const NM = 'network_manager';
const FORMATS = [['ut1', 'UT1 folder or tarball'], ['hosts', 'Hosts file'], ['adguard', 'AdGuard / Adblock list'], ['domains', 'Plain list of domains']];
const FORMAT_LABEL = Object.fromEntries(FORMATS);
const KINDS = [['domain', 'Domain (and its subdomains)'], ['url', 'Address prefix (host/path)'], ['expression', 'Expression (regular expression)']];

const GROUP_SOURCE = { default: 'the default for everyone not in another group', config: 'from the configuration file', console: 'set in this console', profile: 'the shipped UK school profile' };

const num = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString());

function firstList(data, ...keys) {
  for (const key of ['items', ...keys]) {
    const items = itemsOf(data, key);
    if (items.length) return items;
  }
  if (data && typeof data === 'object' && !Array.isArray(data)) {
    // A map keyed by name, e.g. { groups: { staff: { categories } } }.
    for (const key of keys) {
      const v = data[key];
      if (v && typeof v === 'object' && !Array.isArray(v)) return Object.entries(v).map(([name, g]) => ({ name, ...(Array.isArray(g) ? { categories: g } : g) }));
    }
  }
  return [];
}

/** A section that loads its own data and can refresh itself after a change. */
function section(id, title, load) {
  const body = h('div', { class: 'section-body' }, h('p', { class: 'muted' }, 'Loading…'));
  const el = h('section', { class: 'card', 'aria-labelledby': `${id}-title`, id }, h('h2', { id: `${id}-title` }, title), body);
  const refresh = async () => {
    try {
      await load(body, refresh);
    } catch (err) {
      mount(body, errorBox(err));
    }
  };
  return { el, refresh };
}

function reportView(report, heading) {
  if (!report) return null;
  const sources = report.sources ?? [];
  const skippedTotal = report.skippedCount ?? sources.reduce((a, s) => a + (s.skippedCount ?? 0), 0);
  const withSkips = sources.filter((s) => (s.skippedCount ?? 0) > 0);
  return h('div', { class: 'report' },
    heading ? h('h3', {}, heading) : null,
    h('ul', { class: 'facts' },
      h('li', {}, h('strong', {}, num(report.entries)), ' entries'),
      report.millis !== undefined ? h('li', {}, 'compiled in ', h('strong', {}, `${num(Math.round(report.millis))} ms`)) : null,
      sources.length ? h('li', {}, h('strong', {}, num(sources.length)), ' source files') : null,
      h('li', {}, h('strong', {}, num(skippedTotal)), ' lines skipped'),
      report.fromCache ? h('li', {}, 'from the compiled cache') : null),
    withSkips.length ? h('details', {},
      h('summary', {}, 'Show skipped lines'),
      h('ul', { class: 'skips' }, withSkips.map((s) => h('li', {},
        h('strong', {}, s.source), ` — ${num(s.skippedCount)} skipped`,
        h('ul', {}, (s.skipped ?? []).slice(0, 5).map((k) => h('li', {}, `line ${k.line}: ${k.reason} `, h('code', {}, k.text)))))))) : null);
}

export async function listsPage(ctx) {
  const canEdit = ctx.me.role === NM;
  let categories = [];
  let categoryNames = new Map();
  // The summary's /api/lists answer, handed once to the sources section so a page load asks once.
  let listsData = null;

  const summary = section('lists-summary', 'Loaded lists', async (body) => {
    const data = await api('/api/lists');
    listsData = data;
    categories = data?.categories ?? [];
    categoryNames = new Map(categories.map((c) => [c.name, c.friendlyName || c.name]));
    const reloadStatus = h('div', { class: 'form-status', 'aria-live': 'polite' });
    const reload = canEdit ? h('button', {
      type: 'button',
      class: 'primary',
      onclick: async () => {
        reload.disabled = true;
        mount(reloadStatus, h('p', { class: 'muted' }, 'Reloading the lists… the current lists keep filtering meanwhile.'));
        try {
          const res = await api('/api/lists/reload', { method: 'POST', body: {} });
          mount(reloadStatus, h('div', { class: 'success', role: 'status' }, 'Reloaded: the new lists are filtering now.'), reportView(res?.report, 'Reload report'));
          await refreshAll(['lists-categories', 'lists-sources']);
        } catch (err) {
          const report = err instanceof ApiError ? err.body?.report ?? err.body?.error?.report ?? err.body?.error?.details?.report : null;
          mount(reloadStatus, errorBox(err),
            err.code === 'SG_ERR_LIST_REJECTED' ? h('p', {}, 'The previous lists are still filtering.') : null,
            reportView(report, 'Why it was rejected'));
        } finally {
          reload.disabled = false;
        }
      },
    }, 'Reload now') : null;
    mount(body,
      data?.loaded === false ? h('div', { class: 'warning', role: 'note' }, 'No lists are loaded: nothing is being blocked by category.') : null,
      reportView(data?.report),
      canEdit ? h('div', { class: 'actions' }, reload, h('span', { class: 'hint' }, 'Reads every source again and swaps the new lists in when they compile.')) : null,
      reloadStatus);
  });

  const categoriesSection = section('lists-categories', 'Categories', async (body) => {
    if (!categories.length) {
      mount(body, h('p', { class: 'muted' }, 'No categories loaded.'));
      return;
    }
    const sorted = [...categories].sort((a, b) => (a.friendlyName || a.name).localeCompare(b.friendlyName || b.name));
    mount(body, h('div', { class: 'table-wrap tall' }, h('table', { class: 'data compact' },
      h('caption', { class: 'visually-hidden' }, 'Categories'),
      h('thead', {}, h('tr', {}, ['Category', 'Key', 'Use', 'Domains', 'Addresses', 'Expressions'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, sorted.map((c) => h('tr', {},
        h('th', { scope: 'row' }, c.friendlyName || c.name),
        h('td', {}, h('code', {}, c.name)),
        h('td', {}, (c.usage ?? []).map((u) => (u === 'white' ? 'allow' : u === 'black' ? 'block' : u)).join(', ')),
        h('td', { class: 'num' }, num(c.domains)),
        h('td', { class: 'num' }, num(c.urls)),
        h('td', { class: 'num' }, num(c.expressions))))))));
  });

  const sourcesSection = section('lists-sources', 'Sources', async (body, refresh) => {
    const data = listsData ?? await api('/api/lists');
    listsData = null;
    const sources = data?.sources ?? [];
    const rows = sources.map((s) => h('tr', {},
      h('th', { scope: 'row' }, s.name),
      h('td', {}, FORMAT_LABEL[s.format] ?? s.format),
      h('td', { class: 'url-cell' }, h('code', {}, s.location)),
      h('td', {}, s.enabled === false ? 'No' : 'Yes'),
      h('td', {}, timeEl(s.lastLoaded)),
      h('td', { class: 'num' }, num(s.entries)),
      h('td', { class: 'num' }, num(s.skipped)),
      canEdit ? h('td', {}, h('button', {
        type: 'button',
        class: 'danger small',
        'aria-label': `Remove source ${s.name}`,
        onclick: async () => {
          if (!window.confirm(`Remove the source "${s.name}"? Its entries stop filtering at the next reload.`)) return;
          try {
            await api(`/api/lists/sources/${encodeURIComponent(s.id)}`, { method: 'DELETE' });
            ctx.announce(`Source ${s.name} removed.`);
            await refresh();
          } catch (err) {
            body.prepend(errorBox(err));
          }
        },
      }, 'Remove')) : null));
    const table = sources.length
      ? h('div', { class: 'table-wrap' }, h('table', { class: 'data compact' },
        h('caption', { class: 'visually-hidden' }, 'List sources'),
        h('thead', {}, h('tr', {}, ['Name', 'Format', 'Location', 'Enabled', 'Last loaded', 'Entries', 'Skipped', canEdit ? 'Actions' : null].filter(Boolean).map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, rows)))
      : h('p', { class: 'muted' }, 'No sources added through the console (lists given on the command line still load).');
    mount(body, table, canEdit ? [addSourceForm(ctx, refresh), uploadForm(ctx, refresh)] : null);
  });

  // Policy group names for scoping an entry; the groups section shows what each blocks.
  let groupNames = [];
  const loadGroupNames = async () => {
    try {
      groupNames = firstList(await api('/api/policy-groups'), 'groups', 'policyGroups').map((g) => g.name);
    } catch {
      groupNames = [];
    }
    return groupNames;
  };

  const overridesSection = section('lists-overrides', "The school's own entries", async (body, refresh) => {
    const [data] = await Promise.all([api('/api/overrides'), canEdit ? loadGroupNames() : null]);
    const items = firstList(data, 'overrides');
    const table = items.length
      ? h('div', { class: 'table-wrap' }, h('table', { class: 'data compact' },
        h('caption', { class: 'visually-hidden' }, 'Overrides'),
        h('thead', {}, h('tr', {}, ['Action', 'Type', 'Entry', 'Applies to', 'Until', 'Category', 'Reason', 'Added', canEdit ? 'Actions' : null].filter(Boolean).map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, items.map((o) => h('tr', { class: o.expired ? 'override-expired' : null, 'data-entry': o.entry },
          h('td', {}, h('span', { class: `badge override-${o.action}` }, o.action === 'allow' ? 'Allow' : 'Block')),
          h('td', {}, o.kind ?? 'domain'),
          h('td', { class: 'url-cell' }, h('code', {}, o.entry)),
          h('td', {}, o.group ? `${o.group} group only` : 'Everyone'),
          h('td', {}, o.expiresAt
            ? [o.expired ? h('strong', {}, 'Expired ') : null, timeEl(o.expiresAt)]
            : h('span', { class: 'muted' }, 'No expiry')),
          h('td', {}, o.category ? categoryNames.get(o.category) ?? o.category : h('span', { class: 'muted' }, '—')),
          h('td', {}, o.reason ?? ''),
          h('td', {}, timeEl(o.createdAt ?? o.created_at)),
          canEdit ? h('td', {}, h('button', {
            type: 'button',
            class: 'danger small',
            'aria-label': `Delete ${o.action} entry ${o.entry}${o.group ? ` for ${o.group}` : ''}`,
            onclick: async () => {
              if (!window.confirm(`Delete the ${o.action} entry "${o.entry}"?`)) return;
              try {
                await api(`/api/overrides/${encodeURIComponent(o.id)}`, { method: 'DELETE' });
                ctx.announce(`Entry ${o.entry} deleted.`);
                await refresh();
              } catch (err) {
                body.prepend(errorBox(err));
              }
            },
          }, 'Delete')) : null)))))
      : h('p', { class: 'muted' }, 'No entries of your own yet.');
    mount(body,
      h('p', { class: 'hint' }, 'Allow entries win over every category; block entries add to them. An entry for one policy group applies only to people in it, and wins over an entry for everyone. An entry with an expiry stops applying at that time on every gateway, and stays here marked expired until deleted. Changes reach every gateway within two seconds.'),
      table,
      canEdit ? overrideForm(ctx, refresh, () => categoryNames, () => groupNames) : null);
  });

  const groupsSection = section('lists-groups', 'Policy groups', async (body, refresh) => {
    const data = await api('/api/policy-groups');
    const groups = firstList(data, 'groups', 'policyGroups');
    mount(body,
      h('p', { class: 'hint' }, 'Which categories each group of users has blocked, in the order they are checked.'),
      groups.length ? h('ul', { class: 'groups' }, groups.map((g) => h('li', {},
        h('h3', {}, g.name, g.source ? h('span', { class: 'muted small' }, ` — ${GROUP_SOURCE[g.source] ?? g.source}`) : null),
        g.description ? h('p', { class: 'hint' }, g.description) : null,
        (g.categories ?? []).length
          ? h('ul', { class: 'group-categories', 'aria-label': `Blocked for ${g.name}` }, (g.details ?? (g.categories ?? []).map((c) => ({ name: c }))).map((c) => h('li', { title: c.name },
            c.friendlyName || categoryNames.get(c.name) || c.name,
            c.harm && c.harm !== 'none' ? h('span', { class: 'muted small' }, ` — ${c.harm}`) : null)))
          : h('p', {}, h('span', { class: 'muted' }, 'Nothing blocked')),
        canEdit ? h('details', {}, h('summary', {}, `Change the ${g.name} group`), groupForm(ctx, refresh, g, () => categoryNames)) : null))) : h('p', { class: 'muted' }, 'No policy groups defined: every user gets the default categories.'),
      canEdit ? h('details', { class: 'add-group' }, h('summary', {}, 'Add a policy group'), groupForm(ctx, refresh, null, () => categoryNames)) : null);
  });

  const unblockSection = section('lists-unblock', 'Unblock requests', async (body, refresh) => {
    const [data] = await Promise.all([api('/api/unblock-requests'), canEdit ? loadGroupNames() : null]);
    const items = firstList(data, 'requests');
    const open = (r) => !CLOSING.has(r.status);
    mount(body, items.length
      ? h('div', { class: 'table-wrap' }, h('table', { class: 'data compact' },
        h('caption', { class: 'visually-hidden' }, 'Unblock requests'),
        h('thead', {}, h('tr', {}, ['When', 'Address', 'Category', 'Reason given', 'Status', 'Decision'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, items.map((r) => h('tr', {},
          h('td', {}, timeEl(r.occurredAt)),
          h('td', { class: 'url-cell' }, urlView(r)),
          h('td', {}, r.categoryName || categoryNames.get(r.category) || r.category || '—'),
          h('td', {}, r.note ?? ''),
          h('td', {}, r.status ? statusBadge(r.status) : ''),
          canEdit ? h('td', {}, open(r) ? decisionForm(ctx, r, async () => {
            // Approving adds an entry: both tables change at once.
            await Promise.all([refresh(), overridesSection.refresh()]);
          }, () => groupNames) : (r.decision ? decisionView(r.decision) : h('span', { class: 'muted' }, 'Decided'))) : h('td', {}, r.decision ? decisionView(r.decision) : ''))))))
      : h('p', { class: 'muted' }, 'No unblock requests.'));
  });

  const chartSection = section('lists-chart', 'Blocked attempts per day (last 14 days)', async (body) => {
    // The school's days, ending today on its clock, as the API groups them.
    const to = localDay();
    const from = addDays(to, -13);
    const stats = await api(`/api/stats?${new URLSearchParams({ from: schoolInstant(from), to: schoolInstant(addDays(to, 1)) })}`);
    for (const c of stats?.perCategory ?? []) if (c.categoryName && !categoryNames.has(c.category)) categoryNames.set(c.category, c.categoryName);
    // The network manager has no queue to compare with: every blocked attempt counts, and the chart says "attempts".
    mount(body, incidentsChart({ perDay: stats?.perDay ?? [], names: categoryNames, from, to, measure: 'attempts', caption: 'Blocked attempts and reports per day by category' }));
  });

  const all = [summary, chartSection, categoriesSection, sourcesSection, overridesSection, groupsSection, unblockSection].filter(Boolean);
  async function refreshAll(ids) {
    await Promise.all(all.filter((s) => ids.includes(s.el.id)).map((s) => s.refresh()));
  }

  mount(ctx.view,
    h('h1', {}, 'Lists'),
    canEdit ? null : h('p', { class: 'muted' }, 'You can read the lists here; the network manager changes them.'),
    h('nav', { class: 'toc', 'aria-label': 'On this page' }, h('ul', {}, all.map((s) => h('li', {}, h('a', {
      href: `#/lists`,
      onclick: (event) => {
        event.preventDefault();
        s.el.scrollIntoView();
        s.el.querySelector('h2')?.setAttribute('tabindex', '-1');
        s.el.querySelector('h2')?.focus();
      },
    }, s.el.querySelector('h2').textContent))))),
    all.map((s) => s.el));

  // Categories and sources need the summary's answer.
  await summary.refresh();
  await Promise.all([categoriesSection.refresh(), sourcesSection.refresh(), overridesSection.refresh(), groupsSection.refresh(), unblockSection.refresh(), chartSection.refresh()]);
}

function formStatus() {
  return h('div', { class: 'form-status' });
}

function addSourceForm(ctx, refresh) {
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off' });
  const format = select('format', FORMATS, 'ut1');
  const location = h('input', { type: 'text', name: 'location', required: true, autocomplete: 'off', spellcheck: 'false' });
  const status = formStatus();
  const form = h('form', { class: 'inline-form', 'aria-label': 'Add a source', novalidate: true },
    h('h3', {}, 'Add a source'),
    h('div', { class: 'filter-grid' },
      field('Name', name),
      field('Format', format),
      field('Location', location, 'A folder or file on the server, or an https:// address')),
    status,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add source')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!name.value.trim() || !location.value.trim()) {
      mount(status, h('div', { class: 'error', role: 'alert' }, 'Give the source a name and a location.'));
      (name.value.trim() ? location : name).focus();
      return;
    }
    try {
      await api('/api/lists/sources', { method: 'POST', body: { name: name.value.trim(), format: format.value, location: location.value.trim() } });
      ctx.announce(`Source ${name.value.trim()} added. Reload the lists to use it.`);
      await refresh();
    } catch (err) {
      mount(status, errorBox(err));
    }
  });
  return form;
}

function uploadForm(ctx, refresh) {
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off' });
  const format = select('format', FORMATS.filter(([f]) => f !== 'ut1'), 'domains');
  const file = h('input', { type: 'file', name: 'file', required: true, accept: '.txt,.list,.hosts,text/plain' });
  const status = formStatus();
  const form = h('form', { class: 'inline-form', 'aria-label': 'Upload a list', novalidate: true },
    h('h3', {}, 'Upload a list'),
    h('div', { class: 'filter-grid' }, field('Name', name), field('Format', format), field('File', file)),
    status,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Upload and reload')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const chosen = file.files?.[0];
    if (!name.value.trim() || !chosen) {
      mount(status, h('div', { class: 'error', role: 'alert' }, 'Give the list a name and choose a file.'));
      (name.value.trim() ? file : name).focus();
      return;
    }
    mount(status, h('p', { class: 'muted' }, 'Uploading…'));
    try {
      const res = await api('/api/lists/upload', { method: 'POST', body: { name: name.value.trim(), format: format.value, content: await chosen.text() } });
      mount(status, h('div', { class: 'success', role: 'status' }, 'Uploaded and reloaded.'), reportView(res?.report, 'Reload report'));
      await refresh();
    } catch (err) {
      const report = err instanceof ApiError ? err.body?.report ?? err.body?.error?.details?.report : null;
      mount(status, errorBox(err), reportView(report, 'Why it was rejected'));
    }
  });
  return form;
}

/** "Everyone" or one policy group, and an optional end: the scope of an allow or block entry. */
function scopeFields(groups, idPrefix) {
  const group = select('group', [['', 'Everyone'], ...groups().map((g) => [g, `${g} group only`])], '', { id: `${idPrefix}-group` });
  const until = h('input', { type: 'datetime-local', name: 'expiresAt', id: `${idPrefix}-until` });
  const read = () => {
    const out = {};
    if (group.value) out.group = group.value;
    if (until.value) {
      const d = new Date(until.value);
      if (Number.isNaN(d.getTime())) throw new Error('The end date is not a date.');
      if (d.getTime() <= Date.now()) throw new Error('The end date is in the past.');
      out.expiresAt = d.toISOString();
    }
    return out;
  };
  return { group, until, read };
}

function overrideForm(ctx, refresh, names, groups) {
  const action = select('action', [['block', 'Block'], ['allow', 'Allow']], 'block');
  const kind = select('kind', KINDS, 'domain');
  const entry = h('input', { type: 'text', name: 'entry', required: true, autocomplete: 'off', spellcheck: 'false' });
  const category = select('category', [['', 'None'], ...[...names().entries()].sort((a, b) => a[1].localeCompare(b[1])).map(([k, v]) => [k, v])], '');
  const reason = h('input', { type: 'text', name: 'reason', required: true, autocomplete: 'off' });
  const scope = scopeFields(groups, 'override');
  const status = formStatus();
  const form = h('form', { class: 'inline-form', 'aria-label': 'Add an entry', novalidate: true },
    h('h3', {}, 'Add an entry'),
    h('div', { class: 'filter-grid' },
      field('Action', action),
      field('Type', kind),
      field('Entry', entry, 'e.g. example.org, example.org/games, or an expression'),
      field('Applies to', scope.group, 'Everyone, or only the people in one policy group'),
      field('Until', scope.until, 'Leave empty to keep it until deleted'),
      field('Category', category, 'Shown on the block page (optional)'),
      field('Reason', reason, 'Why: kept with the entry for the next person')),
    status,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add entry')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const missing = [[entry, 'the entry'], [reason, 'a reason']].filter(([el]) => !el.value.trim());
    if (missing.length) {
      mount(status, h('div', { class: 'error', role: 'alert' }, `Please give ${missing.map(([, n]) => n).join(' and ')}.`));
      missing[0][0].focus();
      return;
    }
    let scoped;
    try {
      scoped = scope.read();
    } catch (err) {
      mount(status, h('div', { class: 'error', role: 'alert' }, err.message));
      scope.until.focus();
      return;
    }
    const body = { action: action.value, kind: kind.value, entry: entry.value.trim(), reason: reason.value.trim(), ...scoped };
    if (category.value) body.category = category.value;
    try {
      await api('/api/overrides', { method: 'POST', body });
      ctx.announce(`${body.action === 'allow' ? 'Allow' : 'Block'} entry ${body.entry} added.`);
      await refresh();
    } catch (err) {
      mount(status, errorBox(err));
    }
  });
  return form;
}

function groupForm(ctx, refresh, group, names) {
  const known = names();
  const name = group ? null : h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off', pattern: '[A-Za-z0-9_-]+' });
  const cats = h('input', { type: 'text', name: 'categories', value: (group?.categories ?? []).join(', '), autocomplete: 'off', spellcheck: 'false' });
  const status = formStatus();
  const form = h('form', { class: 'inline-form', 'aria-label': group ? `Edit the ${group.name} group` : 'Add a policy group', novalidate: true },
    name ? field('Group name', name, 'Letters, digits, - and _') : null,
    field('Blocked categories', cats, `Category keys in check order, separated by commas. Known: ${[...known.keys()].slice(0, 12).join(', ')}${known.size > 12 ? '…' : ''}`),
    status,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, group ? `Save ${group.name}` : 'Add group')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const groupName = group?.name ?? name.value.trim();
    if (!groupName) {
      mount(status, h('div', { class: 'error', role: 'alert' }, 'Give the group a name.'));
      name.focus();
      return;
    }
    const list = cats.value.split(/[,\s]+/).map((c) => c.trim()).filter(Boolean);
    const unknown = known.size ? list.filter((c) => !known.has(c)) : [];
    if (unknown.length) {
      mount(status, h('div', { class: 'error', role: 'alert' }, `Unknown categor${unknown.length === 1 ? 'y' : 'ies'}: ${unknown.join(', ')}.`));
      cats.focus();
      return;
    }
    try {
      await api(`/api/policy-groups/${encodeURIComponent(groupName)}`, { method: 'PUT', body: { categories: list } });
      ctx.announce(`Policy group ${groupName} saved.`);
      await refresh();
    } catch (err) {
      mount(status, errorBox(err));
    }
  });
  return form;
}

function decisionForm(ctx, request, refresh, groups) {
  const label = request.host ?? request.url ?? 'this request';
  const reason = h('input', { type: 'text', name: 'reason', autocomplete: 'off', 'aria-label': `Reason for the decision on ${label}` });
  const scope = scopeFields(groups, `decision-${request.id}`);
  scope.group.setAttribute('aria-label', `Allow ${label} for`);
  scope.until.setAttribute('aria-label', `Allow ${label} until (optional)`);
  const status = formStatus();
  const decide = (decision) => async () => {
    if (!reason.value.trim()) {
      mount(status, h('div', { class: 'error', role: 'alert' }, 'Give a reason: the person who asked will be told.'));
      reason.focus();
      return;
    }
    let scoped = {};
    if (decision === 'allow') {
      try {
        scoped = scope.read();
      } catch (err) {
        mount(status, h('div', { class: 'error', role: 'alert' }, err.message));
        scope.until.focus();
        return;
      }
    }
    try {
      await api(`/api/unblock-requests/${encodeURIComponent(request.id)}/decision`, { method: 'POST', body: { decision, reason: reason.value.trim(), ...scoped } });
      ctx.announce(decision === 'allow' ? `${request.host ?? 'The site'} is now allowed${scoped.group ? ` for the ${scoped.group} group` : ''}. The person who asked has been told.` : 'The request was declined. The person who asked has been told.');
      await refresh();
    } catch (err) {
      mount(status, errorBox(err));
    }
  };
  return h('details', { class: 'decision' },
    h('summary', {}, 'Decide'),
    h('div', { class: 'field' }, reason),
    h('div', { class: 'field' }, scope.group),
    h('div', { class: 'field' }, scope.until),
    h('p', { class: 'hint' }, 'Who asked is not shown to you; they see your decision and reason in My reports, and by email when email is set up.'),
    status,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'small', onclick: decide('allow') }, request.host ? `Allow ${request.host}` : 'Allow'),
      h('button', { type: 'button', class: 'small danger', onclick: decide('deny') }, 'Keep blocked')));
}
