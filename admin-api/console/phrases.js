// The safeguarding phrase lists, for the safeguarding lead alone: what each list looks for, how
// often each phrase fired (never by whom: that is on the incidents), a tester for "would this
// search be flagged?", and the school's changes — phrases added, shipped phrases switched off —
// each applied on every gateway at once and written to the audit log.
import { h, api, mount, errorBox, field, select, timeEl } from './dom.js';

const TIER_LABEL = { log: 'Log only', incident: 'Incident', alert: 'Alert' };
const num = (n) => Number(n ?? 0).toLocaleString();

export async function phrasesPage(ctx) {
  const listsBody = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  let lists = [];

  const refresh = async () => {
    try {
      const data = await api('/api/phrases');
      lists = data?.lists ?? [];
      mount(listsBody, ...lists.map((list) => listView(ctx, list, refresh)));
      mount(addSlot, addForm(ctx, lists, refresh));
    } catch (err) {
      mount(listsBody, errorBox(err));
    }
  };
  const addSlot = h('div', {});

  mount(ctx.view,
    h('h1', { tabindex: '-1' }, 'Safeguarding phrases'),
    h('p', {}, 'Searches on Google, Bing, DuckDuckGo, Yahoo, Ecosia, YouTube, Wikipedia, TikTok and Instagram are checked against these lists. ',
      'A match raises an incident at the list\'s severity; self-harm, suicide and eating-disorder searches also show the pupil where to get help before their results. ',
      'Spelling tricks (capitals, accents, "k1ll", "s u i c i d e", "suiiicide") are handled for you.'),
    h('section', { class: 'card', 'aria-labelledby': 'phrase-test-title' }, h('h2', { id: 'phrase-test-title' }, 'Test a search'), testForm()),
    h('section', { class: 'card', 'aria-labelledby': 'phrase-add-title' }, h('h2', { id: 'phrase-add-title' }, 'Add a phrase'), addSlot),
    h('section', { class: 'card', 'aria-labelledby': 'phrase-lists-title' }, h('h2', { id: 'phrase-lists-title' }, 'The lists'), listsBody));
  await refresh();
}

function testForm() {
  const text = h('input', { type: 'search', name: 'text', autocomplete: 'off', spellcheck: 'false', maxlength: '500' });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'inline-form', 'aria-label': 'Test a search', novalidate: true },
    h('div', { class: 'filter-grid' }, field('Search text', text, 'Nothing is recorded or counted')),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Test')),
    out);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const res = await api('/api/phrases/test', { method: 'POST', body: { text: text.value } });
      const matches = res?.matches ?? [];
      mount(out, matches.length
        ? h('div', {},
          h('p', {}, res.support ? 'Would be flagged, and the pupil shown where to get help:' : 'Would be flagged:'),
          h('ul', {}, matches.map((m) => h('li', {}, h('strong', {}, m.phrase), ` — ${m.label}, ${TIER_LABEL[m.severity] ?? m.severity} (matched "${m.text}")`))))
        : h('p', { class: 'muted' }, 'Nothing would be flagged.'));
    } catch (err) {
      mount(out, errorBox(err));
    }
  });
  return form;
}

function addForm(ctx, lists, refresh) {
  const category = select('category', lists.map((l) => [l.category, l.label]), lists[0]?.category ?? '');
  const phrase = h('input', { type: 'text', name: 'phrase', required: true, autocomplete: 'off', spellcheck: 'false', maxlength: '200' });
  const reason = h('input', { type: 'text', name: 'reason', required: true, autocomplete: 'off', maxlength: '2000' });
  const severity = select('severity', [['', 'The list\'s own'], ['alert', TIER_LABEL.alert], ['incident', TIER_LABEL.incident], ['log', TIER_LABEL.log]], '');
  const status = h('div', { class: 'form-status' });
  const form = h('form', { class: 'inline-form', 'aria-label': 'Add a phrase', novalidate: true },
    h('div', { class: 'filter-grid' },
      field('List', category),
      field('Phrase', phrase, 'As a pupil would type it, e.g. a local nickname used for bullying'),
      field('Reason', reason, 'Why: kept with the phrase and in the audit log'),
      field('Severity', severity)),
    status,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add phrase')));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!phrase.value.trim() || !reason.value.trim()) {
      mount(status, h('div', { class: 'error', role: 'alert' }, 'Please give the phrase and a reason.'));
      (phrase.value.trim() ? reason : phrase).focus();
      return;
    }
    const body = { category: category.value, phrase: phrase.value.trim(), reason: reason.value.trim() };
    if (severity.value) body.severity = severity.value;
    try {
      await api('/api/phrases', { method: 'POST', body });
      ctx.announce(`Phrase "${body.phrase}" added; every gateway is matching it now.`);
      await refresh();
    } catch (err) {
      mount(status, errorBox(err));
    }
  });
  return form;
}

function listView(ctx, list, refresh) {
  const fired = list.phrases.reduce((a, p) => a + (p.hits ?? 0), 0);
  const act = async (what, request) => {
    try {
      await request();
      ctx.announce(what);
      await refresh();
    } catch (err) {
      ctx.announce(err.message);
    }
  };
  const row = (p) => h('tr', {},
    h('th', { scope: 'row' }, p.enabled ? p.text : h('s', {}, p.text), p.variants?.length ? h('div', { class: 'small muted' }, `also: ${p.variants.join(', ')}`) : null),
    h('td', {}, p.source === 'school' ? `School (${p.changedBy ?? ''})` : 'Shipped'),
    h('td', {}, p.severity ? TIER_LABEL[p.severity] : TIER_LABEL[list.severity]),
    h('td', { class: 'num' }, num(p.hits)),
    h('td', {}, p.lastHit ? timeEl(p.lastHit) : '—'),
    h('td', { class: 'small' }, p.reason),
    h('td', {}, p.source === 'school'
      ? h('button', { type: 'button', class: 'secondary', onclick: () => act(`Phrase "${p.text}" removed.`, () => api(`/api/phrases/${p.id}`, { method: 'DELETE' })) }, 'Remove')
      : h('button', {
        type: 'button', class: 'secondary',
        onclick: () => {
          const reason = p.enabled ? prompt(`Why switch off "${p.text}" for this school?`) : '';
          if (reason === null) return;
          const body = { category: list.category, phrase: p.text, enabled: !p.enabled };
          if (reason) body.reason = reason;
          act(`Phrase "${p.text}" switched ${p.enabled ? 'off' : 'on'}.`, () => api('/api/phrases/shipped', { method: 'PATCH', body }));
        },
      }, p.enabled ? 'Switch off' : 'Switch on')));
  return h('details', { class: 'phrase-list' },
    h('summary', {}, h('strong', {}, list.label), ` — ${TIER_LABEL[list.severity] ?? list.severity}${list.supportBanner ? ', shows support' : ''}; ${list.phrases.length} phrases, fired ${num(fired)} times`),
    h('p', { class: 'small' }, list.why),
    h('div', { class: 'table-wrap' }, h('table', { class: 'data compact' },
      h('caption', { class: 'visually-hidden' }, `${list.label} phrases`),
      h('thead', {}, h('tr', {}, ['Phrase', 'Source', 'Severity', 'Fired', 'Last fired', 'Why', ''].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, list.phrases.map(row)))));
}
