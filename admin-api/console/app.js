// The console shell: session, role-aware navigation, hash routing and live updates.
import { h, api, mount, errorBox, describeError, setUnauthenticatedHandler, setTimeZone, ROLE_LABELS, KIND_LABELS, formatTime } from './dom.js';
import { incidentsPage, incidentPage } from './incidents.js';
import { timelinePage } from './timeline.js';
import { listsPage } from './lists.js';
import { reportPage, auditPage } from './pages.js';
import { accountsPage, accountPage } from './accounts.js';
import { phrasesPage } from './phrases.js';

const DSL = 'safeguarding_lead';

const NAV = {
  safeguarding_lead: [['/incidents', 'Incidents'], ['/phrases', 'Phrases'], ['/report', 'Report access'], ['/lists', 'Lists'], ['/audit', 'Audit log'], ['/accounts', 'Accounts']],
  network_manager: [['/lists', 'Lists'], ['/report', 'Report access'], ['/accounts', 'Accounts']],
  staff: [['/report', 'Report access'], ['/incidents', 'My reports']],
  auditor: [['/audit', 'Audit log']],
};

const HOME = { safeguarding_lead: '/incidents', network_manager: '/lists', staff: '/report', auditor: '/audit' };

const ROUTES = [
  { pattern: /^\/login$/, page: loginPage, title: 'Sign in', public: true },
  { pattern: /^\/incidents$/, page: incidentsPage, title: 'Incidents', roles: [DSL, 'staff'] },
  { pattern: /^\/incidents\/(\d+)$/, page: incidentPage, title: 'Incident', roles: [DSL, 'staff'] },
  { pattern: /^\/incidents\/(\d+)\/timeline$/, page: timelinePage, title: 'Timeline', roles: [DSL] },
  { pattern: /^\/report$/, page: reportPage, title: 'Report access', roles: [DSL, 'network_manager', 'staff'] },
  // Which phrases fire says what pupils search for: the safeguarding lead's alone.
  { pattern: /^\/phrases$/, page: phrasesPage, title: 'Phrases', roles: [DSL] },
  { pattern: /^\/lists$/, page: listsPage, title: 'Lists', roles: ['network_manager', DSL] },
  { pattern: /^\/audit$/, page: auditPage, title: 'Audit log', roles: ['auditor', DSL] },
  { pattern: /^\/accounts$/, page: accountsPage, title: 'Accounts', roles: [DSL, 'network_manager'] },
  { pattern: /^\/account$/, page: accountPage, title: 'My account', roles: [DSL, 'network_manager', 'staff', 'auditor'] },
];

const state = {
  me: null,
  events: null,
  incidentListeners: new Set(),
  renderToken: 0,
  firstRender: true,
  /** Live-update connection: 'on', 'reconnecting', 'off' or null (none for this role). */
  live: null,
};

const $ = (id) => document.getElementById(id);

/** Polite screen-reader announcement; cleared first so a repeated message is read again. */
export function announce(message) {
  const live = $('live');
  live.textContent = '';
  setTimeout(() => { live.textContent = message; }, 50);
}

export function navigate(path, query) {
  const qs = query && [...query.keys()].length ? `?${query}` : '';
  const target = `#${path}${qs}`;
  if (location.hash === target) render();
  else location.hash = target;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs = ''] = raw.split('?');
  return { path: path || '/', query: new URLSearchParams(qs) };
}

function renderHeader() {
  const nav = $('nav');
  const who = $('whoami');
  if (!state.me) {
    mount(nav);
    mount(who);
    return;
  }
  const { path } = parseHash();
  const items = NAV[state.me.role] ?? [];
  mount(nav, h('ul', {}, items.map(([p, label]) => {
    const current = path === p || path.startsWith(`${p}/`);
    return h('li', {}, h('a', { href: `#${p}`, 'aria-current': current ? 'page' : null }, label));
  })));
  const liveStatus = h('span', { id: 'live-status', class: 'live-status', 'data-status': state.live ?? '' }, state.live ? LIVE_TEXT[state.live] : '');
  mount(who,
    liveStatus,
    h('span', {}, state.me.displayName || state.me.email, ' ', h('span', { class: 'role' }, `(${ROLE_LABELS[state.me.role] ?? state.me.role})`)),
    h('a', { href: '#/account', id: 'my-account', 'aria-current': path === '/account' ? 'page' : null }, 'My account'),
    h('button', { type: 'button', class: 'link-button', onclick: logout }, 'Sign out'));
}

async function render() {
  const token = ++state.renderToken;
  state.incidentListeners.clear();
  const { path, query } = parseHash();
  const main = $('main');

  if (!state.me && path !== '/login') {
    const next = path === '/' ? null : location.hash.slice(1);
    navigate('/login', next ? new URLSearchParams({ next }) : undefined);
    return;
  }
  if (state.me && (path === '/' || path === '/login')) {
    navigate(HOME[state.me.role] ?? '/report');
    return;
  }
  renderHeader();

  const route = ROUTES.find((r) => r.pattern.test(path));
  const view = h('div', { class: 'view' });
  mount(main, view);
  if (!route) {
    document.title = 'Not found — schoolgate';
    mount(view, h('h1', { tabindex: '-1' }, 'Page not found'), h('p', {}, h('a', { href: `#${HOME[state.me.role]}` }, 'Go to the start page')));
    focusHeading(view);
    return;
  }
  if (!route.public && !route.roles.includes(state.me.role)) {
    document.title = 'Not allowed — schoolgate';
    mount(view, h('h1', { tabindex: '-1' }, 'Not available for your role'),
      h('p', {}, 'Your account cannot open this page. ', h('a', { href: `#${HOME[state.me.role]}` }, 'Go to your start page')));
    focusHeading(view);
    return;
  }
  document.title = `${route.title} — schoolgate`;
  const params = path.match(route.pattern).slice(1);
  const ctx = {
    me: state.me,
    params,
    query,
    view,
    isCurrent: () => token === state.renderToken,
    navigate,
    announce,
    onIncident: (fn) => state.incidentListeners.add(fn),
    setTitle: (t) => { if (token === state.renderToken) document.title = `${t} — schoolgate`; },
  };
  try {
    await route.page(ctx);
  } catch (err) {
    if (token !== state.renderToken) return;
    mount(view, h('h1', { tabindex: '-1' }, route.title), errorBox(err));
  }
  if (token === state.renderToken) focusHeading(view);
}

// Moving focus to the new heading tells keyboard and screen-reader users the page changed;
// on the first load the browser's own focus handling is left alone.
function focusHeading(view) {
  if (state.firstRender) {
    state.firstRender = false;
    return;
  }
  const heading = view.querySelector('h1');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: false });
  }
}

async function loginPage(ctx) {
  const email = h('input', { type: 'email', name: 'email', id: 'login-email', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', name: 'password', id: 'login-password', autocomplete: 'current-password', required: true });
  const status = h('div', { class: 'form-status' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'login-title', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'login-email' }, 'Email'), email),
    h('div', { class: 'field' }, h('label', { for: 'login-password' }, 'Password'), password),
    status,
    h('div', { class: 'actions' }, button));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!email.value.trim() || !password.value) {
      mount(status, h('div', { class: 'error', role: 'alert' }, 'Enter your email and password.'));
      (email.value.trim() ? password : email).focus();
      return;
    }
    button.disabled = true;
    mount(status, h('p', { class: 'muted' }, 'Signing in…'));
    try {
      const data = await api('/api/login', { method: 'POST', body: { email: email.value.trim(), password: password.value } });
      password.value = '';
      setTimeZone(data?.timeZone);
      await signedIn(data?.user);
      const next = ctx.query.get('next');
      if (next && next.startsWith('/') && !next.startsWith('/login')) location.hash = `#${next}`;
      else navigate(HOME[state.me.role] ?? '/report');
    } catch (err) {
      mount(status, errorBox(err));
      password.value = '';
      password.focus();
    } finally {
      button.disabled = false;
    }
  });
  // Sign-in at the school's identity provider, where configured; passwords stay for the first account and break-glass.
  let provider = null;
  try {
    const sso = await api('/api/auth/oidc');
    if (sso?.enabled && sso.startUrl) provider = sso;
  } catch {
    // Passwords still work; the page says nothing about a provider it could not ask about.
  }
  if (!ctx.isCurrent()) return;
  mount(ctx.view,
    h('h1', { id: 'login-title' }, 'Sign in to schoolgate'),
    h('p', { class: 'muted' }, 'For the safeguarding lead, staff, the network manager and auditors.'),
    provider
      ? h('div', { class: 'card narrow sso' },
        h('p', {}, h('a', { class: 'button primary', href: provider.startUrl, id: 'sso-start' }, `Sign in with ${provider.label}`)),
        h('p', { class: 'muted' }, 'Or sign in with a console password below.'))
      : null,
    form);
  if (!provider) email.focus();
}

async function signedIn(user) {
  if (!user) {
    const me = await api('/api/me');
    setTimeZone(me?.timeZone);
    user = me?.user;
  }
  state.me = user;
  startEvents();
  renderHeader();
}

async function logout() {
  try {
    await api('/api/logout', { method: 'POST', body: {} });
  } catch {
    // Signing out locally still matters when the server is unreachable.
  }
  stopEvents();
  state.me = null;
  mount($('alerts'));
  navigate('/login');
}

function startEvents() {
  stopEvents();
  if (state.me?.role !== DSL || typeof EventSource === 'undefined') return;
  const es = new EventSource('/api/events');
  // The DSL should know whether the queue is live; EventSource reconnects by itself after a drop.
  es.addEventListener('open', () => setLive('on'));
  es.addEventListener('error', () => setLive(es.readyState === EventSource.CLOSED ? 'off' : 'reconnecting'));
  es.addEventListener('incident', (e) => {
    const incident = parseEvent(e.data);
    if (!incident) return;
    for (const fn of state.incidentListeners) fn(incident);
    announce(`New incident: ${KIND_LABELS[incident.kind] ?? incident.kind}${incident.categoryName || incident.category ? `, ${incident.categoryName || incident.category}` : ''}.`);
  });
  es.addEventListener('alert', (e) => {
    const incident = parseEvent(e.data);
    if (incident) showAlert(incident);
  });
  state.events = es;
}

function stopEvents() {
  state.events?.close();
  state.events = null;
  setLive(null);
}

const LIVE_TEXT = { on: 'Live updates on', reconnecting: 'Reconnecting live updates…', off: 'Live updates off: reload the page' };
function setLive(status) {
  state.live = status;
  const el = $('live-status');
  if (!el) return;
  el.dataset.status = status ?? '';
  el.textContent = status ? LIVE_TEXT[status] : '';
}

function parseEvent(data) {
  try {
    const parsed = JSON.parse(data);
    return parsed?.incident ?? parsed;
  } catch {
    return null;
  }
}

// High-severity alerts get a banner that stays until dismissed; it never shows the address.
function showAlert(incident) {
  const who = incident.user || incident.device || incident.clientIp || 'an unknown user';
  const category = incident.categoryName || incident.category || 'a high-severity category';
  const banner = h('div', { class: 'alert-banner', role: 'alert' },
    h('strong', {}, 'High-severity incident: '),
    `${category} — ${who}, ${formatTime(incident.occurredAt)}. `,
    incident.id !== undefined ? h('a', { href: `#/incidents/${incident.id}` }, 'Open the incident') : null,
    h('button', { type: 'button', class: 'dismiss', 'aria-label': 'Dismiss this alert', onclick: () => banner.remove() }, 'Dismiss'));
  const alerts = $('alerts');
  alerts.prepend(banner);
  // A burst of alerts must not push the page out of sight: the queue holds them all anyway.
  while (alerts.children.length > 5) alerts.lastElementChild.remove();
}

async function boot() {
  setUnauthenticatedHandler(() => {
    if (!state.me) return;
    stopEvents();
    state.me = null;
    const { path } = parseHash();
    navigate('/login', new URLSearchParams({ next: path }));
  });
  try {
    const data = await api('/api/me');
    setTimeZone(data?.timeZone);
    state.me = data?.user ?? null;
    if (state.me) startEvents();
  } catch (err) {
    if (err.status !== 401) {
      mount($('main'), h('h1', {}, 'schoolgate'), h('div', { class: 'error', role: 'alert' }, describeError(err)));
    }
  }
  // Hash routing owns the fragment: in-page anchors (the skip link) must not be taken for routes.
  window.addEventListener('hashchange', () => {
    if (location.hash === '' || location.hash.startsWith('#/')) render();
  });
  document.querySelector('.skip-link')?.addEventListener('click', (event) => {
    event.preventDefault();
    $('main').focus();
  });
  await render();
}

boot();
