// DOM and API helpers shared by every page. Every value from the API goes into the page through
// textContent or setAttribute, never innerHTML: URLs, search terms and notes are attacker-controlled.

const SVG_NS = 'http://www.w3.org/2000/svg';

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.setAttribute('class', value);
    else if (key === 'value' && 'value' in el) el.value = String(value);
    else if (key === 'checked' || key === 'selected' || key === 'disabled' || key === 'required') {
      el[key] = Boolean(value);
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** h('p', {class: 'x'}, 'text', child) — children that are not nodes become text nodes. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Only http(s) addresses may become links: a `javascript:` URL from the API must never be clickable. */
export function safeHref(url) {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

let onUnauthenticated = () => {};
export function setUnauthenticatedHandler(fn) {
  onUnauthenticated = fn;
}

/** Same-origin fetch: the browser sends the session cookie and, on writes, the Origin the API checks. */
export async function api(path, { method = 'GET', body } = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'SG_ERR_NETWORK', 'The server could not be reached. Check the connection and try again.');
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const code = data?.error?.code ?? `HTTP_${res.status}`;
    const message = data?.error?.message ?? `The server answered ${res.status} ${res.statusText}`;
    const err = new ApiError(res.status, code, message, data);
    if (res.status === 401 && path !== '/api/login') onUnauthenticated(err);
    throw err;
  }
  return data;
}

/** A plain-language sentence for an API error, for people who do not read status codes. */
export function describeError(err) {
  if (!(err instanceof ApiError)) return `Something went wrong: ${err?.message ?? err}`;
  switch (err.code) {
    case 'SG_ERR_FORBIDDEN': return 'Your account is not allowed to do this.';
    case 'SG_ERR_UNAUTHENTICATED': return 'Your session has ended. Please sign in again.';
    case 'SG_ERR_BAD_ORIGIN': return 'The request was refused because it did not come from this console. Reload the page and try again.';
    case 'SG_ERR_LOGIN': return 'The email or password is not correct.';
    case 'SG_ERR_NOT_FOUND': return 'This item does not exist (or no longer exists).';
    default:
      if (err.status === 429) return 'Too many attempts. Please wait a minute and try again.';
      return err.message;
  }
}

/** A role="alert" box for an error, or null to clear. */
export function errorBox(err) {
  return h('div', { class: 'error', role: 'alert' }, describeError(err));
}

// Every time the console shows is on the school's clock (config timeZone, served with /api/me and
// the login answer), written as UK schools write dates: dd/mm/yyyy, 24-hour. The browser's own
// zone is never used: a DSL reading the queue on a laptop set to UTC sees the classroom's times.
let schoolZone = 'Europe/London';
let zoneParts = null;

export function setTimeZone(zone) {
  if (!zone || zone === schoolZone) return;
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone: zone });
  } catch {
    return; // an unknown zone keeps the default rather than breaking every page
  }
  schoolZone = zone;
  zoneParts = null;
}

export function timeZone() {
  return schoolZone;
}

function partsOf(date) {
  zoneParts ??= new Intl.DateTimeFormat('en-GB', {
    timeZone: schoolZone, day: '2-digit', month: '2-digit', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
  });
  const p = {};
  for (const part of zoneParts.formatToParts(date)) p[part.type] = part.value;
  return p;
}

/** "29/03/2026 02:30" on the school's clock. */
export function formatTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = partsOf(d);
  return `${p.day}/${p.month}/${p.year} ${p.hour}:${p.minute}`;
}

/** "29/03/2026" for a day written YYYY-MM-DD (as the API's charts and the date inputs write days). */
export function formatDay(day) {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(String(day));
  return m ? `${m[3]}/${m[2]}/${m[1]}` : String(day);
}

/** The school's day (YYYY-MM-DD) at an instant, by default now. */
export function localDay(at = new Date()) {
  const p = partsOf(at);
  return `${p.year}-${p.month}-${p.day}`;
}

export function addDays(day, n) {
  const d = new Date(`${day}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

/** The instant (ISO) a wall-clock time on the school's clock happens: "2026-03-29T00:00" → "2026-03-29T00:00:00.000Z". */
export function schoolInstant(wall) {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}))?/.exec(String(wall));
  if (!m) return null;
  const asUtc = Date.UTC(+m[1], +m[2] - 1, +m[3], +(m[4] ?? 0), +(m[5] ?? 0));
  const offset = (t) => {
    const p = partsOf(new Date(t));
    return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - Math.floor(t / 1000) * 1000;
  };
  // Twice: the first guess may sit on the other side of a clock change from the answer.
  let t = asUtc - offset(asUtc);
  t = asUtc - offset(t);
  return new Date(t).toISOString();
}

export function timeEl(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: `${schoolZone} time` }, formatTime(iso));
}

export const STATUS_LABELS = {
  new: 'New',
  in_review: 'In review',
  escalated: 'Escalated',
  closed: 'Closed',
  false_positive: 'False positive',
};

export const KIND_LABELS = {
  blocked: 'Blocked',
  self_report: 'Self-report',
  flagged_search: 'Flagged search',
  unblock_request: 'Unblock request',
};

export const SEVERITY_LABELS = {
  log: 'Log only',
  incident: 'Incident',
  alert: 'Alert',
};

export function severityBadge(severity) {
  return h('span', { class: `badge severity-${severity}` }, SEVERITY_LABELS[severity] ?? severity);
}

export const ROLE_LABELS = {
  safeguarding_lead: 'Safeguarding lead',
  network_manager: 'Network manager',
  staff: 'Staff',
  auditor: 'Auditor',
};

export function statusBadge(status) {
  return h('span', { class: `badge status-${status}` }, STATUS_LABELS[status] ?? status);
}

// Shown only for lists of content illegal to view (IWF/CTIRU-type, config illegalCategories), never for adult or other legal sites.
export const ILLEGAL_WARNING = 'This address is on a list of content that is illegal to view. Do not visit it; follow your safeguarding procedure and ask the police if you need advice.';

/**
 * An incident's address. Illegal-content addresses are plain text with a warning, never a link;
 * others become a link only when asked and only for http(s).
 */
export function urlView(item, { link = false } = {}) {
  const url = item.url ?? item.host ?? '';
  if (!url) return h('span', { class: 'muted' }, '—');
  if (item.illegal) {
    return h('span', { class: 'url url-illegal' },
      h('span', { class: 'url-text' }, url),
      h('strong', { class: 'illegal-flag' }, ' ⚠ Do not visit'));
  }
  const href = link ? safeHref(url) : null;
  if (href) return h('a', { class: 'url', href, rel: 'noopener noreferrer nofollow', target: '_blank' }, url, h('span', { class: 'visually-hidden' }, ' (opens in a new tab)'));
  return h('span', { class: 'url url-text' }, url);
}

/** Replaces a container's content. */
export function mount(container, ...children) {
  container.replaceChildren();
  append(container, children);
}

/** A labelled form field. The id ties the label to the control. */
export function field(labelText, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  const parts = [h('label', { for: id }, labelText)];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute('aria-describedby', hintId);
    parts.push(h('span', { class: 'hint', id: hintId }, hint));
  }
  parts.push(control);
  return h('div', { class: 'field' }, parts);
}

export function select(name, options, value, attrs = {}) {
  return h('select', { name, ...attrs },
    options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
}

/** Value for a datetime-local input: now, on the school's clock (read back with schoolInstant). */
export function localNow() {
  const p = partsOf(new Date());
  return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
}

/** The items of a list answer whether the API wraps them (`{items}`) or not. */
export function itemsOf(data, key = 'items') {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data[key])) return data[key];
  return [];
}

export const OUTCOME_LABELS = { approved: 'Approved', declined: 'Declined' };

/** An unblock request's outcome and the network manager's reason, as the person who asked reads it. */
export function decisionView(decision) {
  if (!decision) return null;
  return h('span', { class: 'decision' },
    h('span', { class: `badge decision-${decision.outcome}` }, OUTCOME_LABELS[decision.outcome] ?? decision.outcome),
    ' ', h('span', { class: 'decision-reason' }, decision.reason));
}
