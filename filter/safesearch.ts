/**
 * SafeSearch on intercepted traffic. Each engine is a rule here, so adding one never touches the
 * proxy plumbing. What was searched for is read by filter/safeguarding/search-terms.ts.
 */

export interface SafeSearchChange {
  /** Path and query to send upstream instead of the client's, when it changed. */
  path?: string;
  /** Headers to set on the upstream request. */
  headers?: Record<string, string>;
}

const GOOGLE = /^(?:www\.)?google\.(?:[a-z]{2,3}|co\.[a-z]{2}|com\.[a-z]{2})$/;
const BING = /^(?:www\.)?bing\.com$/;
const DDG = /^(?:www\.|html\.|lite\.)?duckduckgo\.com$/;
const YOUTUBE = /^(?:(?:www|m|music)\.youtube\.com|youtube\.com|(?:www\.)?youtube-nocookie\.com|youtubei\.googleapis\.com|youtube\.googleapis\.com)$/;

function withParams(path: string, set: Record<string, string>): string {
  const q = path.indexOf('?');
  const pathname = q < 0 ? path : path.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : path.slice(q + 1));
  for (const [k, v] of Object.entries(set)) params.set(k, v);
  return `${pathname}?${params.toString()}`;
}

const isSearchPath = (path: string, prefixes: string[]) => prefixes.some((p) => path === p || path.startsWith(`${p}?`) || path.startsWith(`${p}/`));

/** What to change on a request to `host` + `path` (path includes the query) so SafeSearch is on. */
export function safeSearchFor(host: string, path: string): SafeSearchChange | null {
  if (YOUTUBE.test(host)) return { headers: { 'YouTube-Restrict': 'Strict' } };
  if (GOOGLE.test(host) && isSearchPath(path, ['/search', '/images', '/webhp', '/complete/search'])) {
    return { path: withParams(path, { safe: 'active' }) };
  }
  if (BING.test(host) && isSearchPath(path, ['/search', '/images/search', '/videos/search', '/AS/Suggestions'])) {
    return { path: withParams(path, { adlt: 'strict' }) };
  }
  if (DDG.test(host) && (path === '/' || path.startsWith('/?') || isSearchPath(path, ['/html', '/lite', '/d.js', '/i.js', '/v.js', '/ac']))) {
    return { path: withParams(path, { kp: '1' }) };
  }
  return null;
}
