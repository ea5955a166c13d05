// The staff self-report form and the audit log.
import { h, api, mount, errorBox, field, timeEl, localNow, schoolInstant, itemsOf } from './dom.js';

const DSL = 'safeguarding_lead';

export async function reportPage(ctx) {
  // Staff must be able to do this in under a minute: three fields, sensible defaults, one button.
  // The block page (or anyone) may link here with ?url= so the address is already filled in.
  const url = h('input', { type: 'text', name: 'url', id: 'report-url', inputmode: 'url', autocomplete: 'off', spellcheck: 'false', required: true, value: ctx.query.get('url') ?? '' });
  // The block it is about, by the reference its block page showed (My reports links here with ?ref=):
  // the safeguarding lead then sees the report and the block together, and the address is the block's.
  const ref = h('input', { type: 'text', name: 'blockReference', id: 'report-ref', autocomplete: 'off', spellcheck: 'false', value: ctx.query.get('ref') ?? '' });
  const when = h('input', { type: 'datetime-local', name: 'occurredAt', id: 'report-when', value: localNow(), max: localNow() });
  const what = h('textarea', { name: 'description', id: 'report-what', rows: 5, required: true });
  const status = h('div', { class: 'form-status' });
  const send = h('button', { type: 'submit', class: 'primary' }, 'Send report');
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'report-title', novalidate: true },
    field('Web address', url, 'Copy it from the address bar. If you do not have it, type the site name.'),
    field('When did it happen?', when),
    field('What happened?', what, 'For example: "A pupil clicked a search result and an adult page opened before I closed it."'),
    field('Block page reference (if there was one)', ref, 'The reference the block page showed. With it, the web address may be left empty.'),
    status,
    h('div', { class: 'actions' }, send));

  for (const el of [url, what]) el.addEventListener('input', () => el.removeAttribute('aria-invalid'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const missing = [[url, 'the web address'], [what, 'what happened']].filter(([el]) => !el.value.trim() && !(el === url && ref.value.trim()));
    for (const el of [url, what]) el.removeAttribute('aria-invalid');
    if (missing.length) {
      for (const [el] of missing) el.setAttribute('aria-invalid', 'true');
      mount(status, h('div', { class: 'error', role: 'alert' }, `Please fill in ${missing.map(([, n]) => n).join(' and ')}.`));
      missing[0][0].focus();
      return;
    }
    const body = { description: what.value.trim() };
    if (url.value.trim()) body.url = url.value.trim();
    if (ref.value.trim()) body.blockReference = ref.value.trim();
    if (when.value) {
      // The time typed is on the school's clock, as every time the console shows.
      const at = schoolInstant(when.value);
      if (at) body.occurredAt = at;
    }
    send.disabled = true;
    mount(status, h('p', { class: 'muted' }, 'Sending…'));
    try {
      const res = await api('/api/self-reports', { method: 'POST', body });
      const reference = res?.id ?? res?.key;
      const done = h('div', { class: 'success', role: 'status', tabindex: '-1' },
        h('h2', {}, 'Thank you — your report has been sent'),
        h('p', {}, 'The safeguarding lead will see it in their queue. You do not need to do anything else.'),
        reference !== undefined ? h('p', {}, 'Reference: ', h('strong', { class: 'reference' }, String(reference))) : null,
        res?.blockId ? h('p', { id: 'report-linked' }, 'Linked to the block it is about: ',
          h('a', { href: `#/incidents/${res.blockId}` }, `incident #${res.blockId}`), '.') : null,
        h('div', { class: 'actions' },
          h('button', { type: 'button', onclick: () => ctx.navigate('/report') }, 'Report something else'),
          ctx.me.role === 'staff' || ctx.me.role === DSL ? h('a', { class: 'button', href: '#/incidents' }, ctx.me.role === DSL ? 'Go to the queue' : 'See my reports') : null));
      mount(ctx.view, h('h1', {}, 'Report accidental access'), done);
      done.focus();
      ctx.announce('Your report has been sent.');
    } catch (err) {
      send.disabled = false;
      mount(status, errorBox(err));
    }
  });

  mount(ctx.view,
    h('h1', { id: 'report-title' }, 'Report accidental access'),
    h('p', { class: 'lead' }, 'If you or a pupil saw something inappropriate by accident, tell the safeguarding lead here. It takes a minute, and reporting it is what the Acceptable Use Policy asks.'),
    h('p', { class: 'muted' }, 'Do not go back to the page to check it.'),
    form);
}

function valueText(v) {
  if (v === true) return 'yes';
  if (v === false) return 'no';
  if (v === null || v === undefined) return '—';
  if (typeof v === 'object') {
    try {
      return JSON.stringify(v);
    } catch {
      return String(v);
    }
  }
  return String(v);
}

/** Audit details as "key: value" lines; whatever the API put there is shown as text. */
function detailsView(details) {
  if (details === null || details === undefined || details === '') return '';
  if (typeof details !== 'object' || Array.isArray(details)) return h('code', {}, valueText(details));
  return h('ul', { class: 'audit-details' }, Object.entries(details).map(([k, v]) => h('li', {}, h('span', { class: 'muted' }, `${k}: `), h('code', {}, valueText(v)))));
}

function targetView(target, role) {
  if (!target) return '';
  const m = /^incident:(\d+)$/.exec(String(target));
  // The auditor reads the log but may not open incidents; the DSL can jump to the one named.
  if (m && role === DSL) return h('a', { href: `#/incidents/${m[1]}` }, `Incident #${m[1]}`);
  return String(target);
}

export async function auditPage(ctx) {
  const tbody = h('tbody');
  const more = h('div', { class: 'actions' });
  const count = h('p', { class: 'results-count', id: 'audit-count' });
  let shown = 0;
  const addPage = (data) => {
    const items = itemsOf(data);
    tbody.append(...items.map((e) => h('tr', {},
      h('td', {}, timeEl(e.at)),
      h('td', {}, e.actor ?? ''),
      h('td', {}, String(e.action ?? '').replace(/_/g, ' ')),
      h('td', { class: 'url-cell' }, targetView(e.target, ctx.me.role)),
      h('td', {}, detailsView(e.details)))));
    shown += items.length;
    count.textContent = shown ? `${shown}${data?.nextCursor ? '+' : ''} entries, newest first.` : 'The audit log is empty.';
    mount(more, data?.nextCursor ? h('button', {
      type: 'button',
      onclick: async (event) => {
        event.currentTarget.disabled = true;
        try {
          const next = await api(`/api/audit?${new URLSearchParams({ cursor: data.nextCursor })}`);
          addPage(next);
          ctx.announce(`${itemsOf(next).length} more entries loaded.`);
        } catch (err) {
          mount(more, errorBox(err));
        }
      },
    }, 'Load older entries') : null);
  };
  const first = await api('/api/audit');
  if (!ctx.isCurrent()) return;
  mount(ctx.view,
    h('h1', {}, 'Audit log'),
    h('p', { class: 'muted' }, 'Every time someone opens or changes an incident, exports data or changes the lists, it is recorded here.'),
    count,
    h('div', { class: 'table-wrap' }, h('table', { class: 'data', 'aria-describedby': 'audit-count' },
      h('caption', { class: 'visually-hidden' }, 'Audit log'),
      h('thead', {}, h('tr', {}, ['When', 'Who', 'Action', 'Target', 'Details'].map((c) => h('th', { scope: 'col' }, c)))),
      tbody)),
    more);
  addPage(first);
}
