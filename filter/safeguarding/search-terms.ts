/**
 * What a person searched for, read from the URL of a search (issue 13, point 4). One rule per
 * engine, so adding an engine touches nothing else. Replaced the old `searchTerms` of
 * filter/safesearch.ts (the same engines and more).
 *
 * `kind` says how the terms reached the URL, because the wiring treats them differently:
 * - `search`: a results page the person asked for;
 * - `suggest`: the engine's type-ahead or the page's own API call. A pupil who types a phrase and
 *   deletes it never submits it, so these still count, but they come one per keystroke: fold them;
 * - `tag`: a hashtag page (TikTok, Instagram, YouTube), the way those apps search.
 */

export type SearchKind = 'search' | 'suggest' | 'tag';

export interface SearchQuery {
  engine: string;
  /** Decoded, trimmed, at most 500 characters. */
  terms: string;
  kind: SearchKind;
}

interface Rule {
  engine: string;
  host: RegExp;
  /** Matched against the path without query; a string is a prefix ending at `/`, `;` or the end. */
  paths: readonly (string | RegExp)[];
  /** Query parameters that may hold the terms, first present wins. */
  params?: readonly string[];
  /** Terms in the path itself: the first capture group, percent-decoded. */
  pathTerms?: RegExp;
  kind: SearchKind;
}

const GOOGLE = /^(?:www\.)?google\.(?:[a-z]{2,3}|co\.[a-z]{2}|com\.[a-z]{2})$/;
const BING = /^(?:www\.|cn\.)?bing\.com$/;
const DDG = /^(?:www\.|html\.|lite\.)?duckduckgo\.com$/;
const YAHOO = /^(?:[a-z]{2}\.)?(?:images\.|video\.)?search\.yahoo\.com$/;
const ECOSIA = /^(?:www\.)?ecosia\.org$/;
const YOUTUBE = /^(?:www\.|m\.|music\.)?youtube\.com$/;
const WIKIPEDIA = /^(?:[a-z]{2,3}(?:-[a-z]+)?\.)?(?:m\.)?wikipedia\.org$/;
const TIKTOK = /^(?:www\.|m\.)?tiktok\.com$/;
const INSTAGRAM = /^(?:www\.)?instagram\.com$/;

const RULES: readonly Rule[] = [
  { engine: 'google', host: GOOGLE, paths: ['/search', '/images'], params: ['q'], kind: 'search' },
  { engine: 'google', host: GOOGLE, paths: ['/complete/search'], params: ['q'], kind: 'suggest' },
  { engine: 'bing', host: BING, paths: ['/search', '/images/search', '/videos/search', '/news/search', '/shop'], params: ['q'], kind: 'search' },
  { engine: 'bing', host: BING, paths: ['/AS/Suggestions', '/osjson.aspx'], params: ['qry', 'query', 'q'], kind: 'suggest' },
  { engine: 'duckduckgo', host: DDG, paths: [/^\/$/, '/html', '/lite'], params: ['q'], kind: 'search' },
  { engine: 'duckduckgo', host: DDG, paths: ['/ac'], params: ['q'], kind: 'suggest' },
  { engine: 'yahoo', host: YAHOO, paths: ['/search'], params: ['p', 'q'], kind: 'search' },
  { engine: 'ecosia', host: ECOSIA, paths: ['/search', '/images', '/videos', '/news'], params: ['q'], kind: 'search' },
  { engine: 'ecosia', host: /^ac\.ecosia\.org$/, paths: ['/autocomplete', '/'], params: ['q'], kind: 'suggest' },
  { engine: 'youtube', host: YOUTUBE, paths: ['/results'], params: ['search_query', 'q'], kind: 'search' },
  { engine: 'youtube', host: YOUTUBE, paths: [], pathTerms: /^\/hashtag\/([^/]+)/, kind: 'tag' },
  { engine: 'youtube', host: /^suggestqueries(?:-clients6)?\.(?:google|youtube)\.com$/, paths: ['/complete/search'], params: ['q'], kind: 'suggest' },
  { engine: 'wikipedia', host: WIKIPEDIA, paths: ['/w/index.php', '/wiki/Special:Search', /^\/wiki\/Spezial:Suche$/, /^\/wiki\/Sp%C3%A9cial:Recherche$/i], params: ['search'], kind: 'search' },
  { engine: 'wikipedia', host: WIKIPEDIA, paths: [], pathTerms: /^\/wiki\/Special:Search\/(.+)$/, kind: 'search' },
  { engine: 'wikipedia', host: WIKIPEDIA, paths: ['/w/api.php'], params: ['search', 'srsearch'], kind: 'suggest' },
  { engine: 'wikipedia', host: WIKIPEDIA, paths: ['/w/rest.php/v1/search'], params: ['q'], kind: 'suggest' },
  { engine: 'tiktok', host: TIKTOK, paths: ['/search'], params: ['q'], kind: 'search' },
  { engine: 'tiktok', host: TIKTOK, paths: ['/api/search'], params: ['keyword', 'q'], kind: 'suggest' },
  { engine: 'tiktok', host: TIKTOK, paths: [], pathTerms: /^\/tag\/([^/]+)/, kind: 'tag' },
  { engine: 'instagram', host: INSTAGRAM, paths: ['/explore/search/keyword', '/explore/search'], params: ['q'], kind: 'search' },
  { engine: 'instagram', host: INSTAGRAM, paths: ['/web/search/topsearch', '/api/v1/fbsearch'], params: ['query', 'q'], kind: 'suggest' },
  { engine: 'instagram', host: INSTAGRAM, paths: [], pathTerms: /^\/explore\/tags\/([^/]+)/, kind: 'tag' },
  // Kept from filter/safesearch.ts, which read these before.
  { engine: 'qwant', host: /^(?:www\.)?qwant\.com$/, paths: [/^\/$/], params: ['q'], kind: 'search' },
  { engine: 'yandex', host: /^(?:www\.)?yandex\.[a-z]+$/, paths: ['/search'], params: ['text'], kind: 'search' },
  { engine: 'brave', host: /^search\.brave\.com$/, paths: ['/search', '/images', '/videos', '/news'], params: ['q'], kind: 'search' },
];

const MAX = 500;

function pathMatches(pathname: string, p: string | RegExp): boolean {
  if (typeof p !== 'string') return p.test(pathname);
  if (!pathname.startsWith(p)) return false;
  const next = pathname.charCodeAt(p.length);
  // '/search' must not match '/searchfoo'; Yahoo adds ';_ylt=…' to the path.
  return Number.isNaN(next) || next === 47 || next === 59;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

function clean(s: string | null): string | null {
  if (!s) return null;
  const t = s.replace(/\s+/g, ' ').trim();
  return t ? t.slice(0, MAX) : null;
}

/**
 * The search in a request to `host` (lower-case, as normalised) with `path` (path and query), or
 * null when it is not one. Never throws.
 */
/**
 * The rules whose host pattern a host matches, remembered per host: every request the gateway
 * passes asks, and almost none is a search, so most hosts remember an empty list and cost one
 * Map lookup instead of a regex per rule. Bounded: emptied when full, as a school's working set
 * of hosts is far smaller.
 */
const rulesByHost = new Map<string, readonly Rule[]>();
const RULES_BY_HOST_MAX = 20_000;
function rulesFor(host: string): readonly Rule[] {
  let rules = rulesByHost.get(host);
  if (rules === undefined) {
    rules = RULES.filter((r) => r.host.test(host));
    if (rulesByHost.size >= RULES_BY_HOST_MAX) rulesByHost.clear();
    rulesByHost.set(host, rules);
  }
  return rules;
}

export function extractSearch(host: string, path: string): SearchQuery | null {
  const rules = rulesFor(host);
  if (rules.length === 0) return null;
  const q = path.indexOf('?');
  const hash = path.indexOf('#');
  const end = hash < 0 ? path.length : hash;
  const pathname = q < 0 || q > end ? path.slice(0, end) : path.slice(0, q);
  let params: URLSearchParams | null = null;
  for (const r of rules) {
    if (r.pathTerms) {
      const m = r.pathTerms.exec(pathname);
      const terms = m ? clean(decode(m[1]!)) : null;
      if (terms) return { engine: r.engine, terms, kind: r.kind };
      continue;
    }
    if (q < 0 || !r.params || !r.paths.some((p) => pathMatches(pathname, p))) continue;
    params ??= new URLSearchParams(path.slice(q + 1, hash > q ? hash : undefined));
    for (const name of r.params) {
      const terms = clean(params.get(name));
      if (terms) return { engine: r.engine, terms, kind: r.kind };
    }
  }
  return null;
}

/** The same for a whole URL (`https://www.google.com/search?q=…`). */
export function extractSearchFromUrl(url: string): SearchQuery | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  return extractSearch(u.hostname.toLowerCase(), `${u.pathname}${u.search}`);
}
