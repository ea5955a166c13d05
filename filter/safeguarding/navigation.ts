/**
 * Is this request something the person did (a page they opened) or something a page did on its
 * own (favicon, script, advert, beacon, XHR)? Only the first raises an incident (issue 13, point 1):
 * otherwise one blocked advert on a school page becomes a DSL's incident on every page view.
 *
 * Pure and allocation-light: it runs on every request the gateway sees.
 */

export type RequestKind = 'navigation' | 'subresource';

/** Which rule decided, for the browsing log and for tests that pin each rule. */
export type KindRule =
  | 'method'
  | 'prefetch'
  | 'fetch-metadata'
  | 'x-requested-with'
  | 'accept-html'
  | 'accept-other'
  | 'path'
  | 'default';

/** Header values as node gives them: names lower-case, repeated headers as arrays. */
export type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

function header(h: HeaderBag, name: string): string | undefined {
  const v = h[name];
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : v.join(', ');
}

/**
 * Sub-resource extensions. Documents (.html, .php, .aspx, .pdf, none at all) are absent on purpose:
 * a person opens those. .xml and .txt are absent too: feeds and robots.txt are fetched by
 * programs, but a pupil may also open a .txt, and the Accept rule has already answered for
 * browsers, so the path only decides for clients that said nothing useful.
 */
const ASSET_EXT = new Set([
  'js', 'mjs', 'cjs', 'map', 'css', 'json', 'jsonp', 'wasm', 'webmanifest',
  'ico', 'png', 'jpg', 'jpeg', 'gif', 'webp', 'avif', 'svg', 'bmp', 'tif', 'tiff', 'apng', 'cur',
  'woff', 'woff2', 'ttf', 'otf', 'eot',
  'mp4', 'webm', 'm4s', 'ts', 'm3u8', 'mpd', 'mp3', 'm4a', 'aac', 'ogg', 'oga', 'opus', 'wav', 'vtt', 'srt',
]);

/** Paths programs fetch by name, whatever their extension says. */
const ASSET_PATHS = new Set(['/favicon.ico', '/robots.txt', '/ads.txt', '/sitemap.xml', '/browserconfig.xml', '/crossdomain.xml', '/manifest.json', '/site.webmanifest', '/sw.js', '/service-worker.js']);

/** The path of `url` without query or fragment: an absolute URL, a path with query, or a NormalizedUrl. */
function pathOf(url: string | { path: string }): string {
  let s = typeof url === 'string' ? url : url.path;
  if (!s.startsWith('/')) {
    const scheme = s.indexOf('://');
    if (scheme >= 0) {
      const slash = s.indexOf('/', scheme + 3);
      s = slash < 0 ? '/' : s.slice(slash);
    }
  }
  const q = s.search(/[?#]/);
  return (q < 0 ? s : s.slice(0, q)).toLowerCase();
}

function isAssetPath(path: string): boolean {
  if (ASSET_PATHS.has(path) || path.startsWith('/.well-known/') || path.startsWith('/apple-touch-icon')) return true;
  const slash = path.lastIndexOf('/');
  const dot = path.lastIndexOf('.');
  if (dot <= slash + 1) return false;
  return ASSET_EXT.has(path.slice(dot + 1));
}

/**
 * Media types that say "a page". Images and the wildcard are not among them: Chromium and Firefox
 * list images in their navigation Accept, but only after text/html, and the rule looks at the first.
 */
const HTML_TYPES = new Set(['text/html', 'application/xhtml+xml']);

/**
 * Internet Explorer 6–8 navigations send no text/html at all, leading with image/gif and listing
 * the plug-in types they could open; those types never appear on their image or script requests.
 */
const OLD_IE_NAVIGATION = /application\/(?:x-ms-application|xaml\+xml|x-ms-xbap|x-shockwave-flash|vnd\.ms-|msword)/;

function firstMediaType(accept: string): string {
  const comma = accept.indexOf(',');
  const first = comma < 0 ? accept : accept.slice(0, comma);
  const semi = first.indexOf(';');
  return (semi < 0 ? first : first.slice(0, semi)).trim().toLowerCase();
}

/** Like classifyRequest, naming the rule that decided. */
export function explainRequest(method: string, headers: HeaderBag, url: string | { path: string }): { kind: RequestKind; rule: KindRule } {
  // Only GET and POST (a submitted form) put a page in front of someone; HEAD, OPTIONS (CORS
  // preflight), PUT and the rest are made by scripts and tools.
  const m = method.toUpperCase();
  if (m !== 'GET' && m !== 'POST') return { kind: 'subresource', rule: 'method' };

  // A prefetch or prerender is the browser guessing, not the person choosing. If the guess was
  // right and the page was blocked, the browser discards the prerender and navigates for real,
  // which this function then sees as a navigation; if it was wrong, nobody saw anything.
  const purpose = header(headers, 'sec-purpose') ?? header(headers, 'purpose') ?? header(headers, 'x-purpose') ?? header(headers, 'x-moz');
  if (purpose && /prefetch|prerender|preview/i.test(purpose)) return { kind: 'subresource', rule: 'prefetch' };

  const dest = header(headers, 'sec-fetch-dest')?.toLowerCase();
  const mode = header(headers, 'sec-fetch-mode')?.toLowerCase();
  if (dest !== undefined || mode !== undefined) {
    // `Sec-Fetch-Dest: document` alone counts: it is the contract, and no browser sends
    // it on anything but a top-level navigation.
    if (dest === 'document') return { kind: 'navigation', rule: 'fetch-metadata' };
    // Frames are chosen by the page's author, not the reader: adverts, consent banners, social and
    // video embeds are iframes, and the page that framed them has been judged already. A frame
    // counts only when the person clicked inside it (Sec-Fetch-User: ?1 marks user activation),
    // e.g. a link in an embedded search box.
    if (dest === 'iframe' || dest === 'frame') {
      const user = header(headers, 'sec-fetch-user');
      return { kind: user === '?1' ? 'navigation' : 'subresource', rule: 'fetch-metadata' };
    }
    // A client that sends Sec-Fetch-Mode without Sec-Fetch-Dest (a partial implementation, a
    // hand-written client) is trusted on the mode.
    if (dest === undefined && mode === 'navigate') return { kind: 'navigation', rule: 'fetch-metadata' };
    return { kind: 'subresource', rule: 'fetch-metadata' };
  }

  // No fetch metadata: Safari before 16.4, Internet Explorer, curl, apps, old Android browsers.
  // Only the literal XMLHttpRequest value counts: Android WebView sends the app's package name in
  // X-Requested-With on every request, navigations included.
  if (header(headers, 'x-requested-with')?.toLowerCase() === 'xmlhttprequest') return { kind: 'subresource', rule: 'x-requested-with' };

  const accept = header(headers, 'accept');
  if (accept) {
    const first = firstMediaType(accept);
    if (HTML_TYPES.has(first)) return { kind: 'navigation', rule: 'accept-html' };
    // A specific non-page type first (image/webp, text/css, application/json, text/event-stream)
    // is a sub-resource, unless it is the old IE navigation list that leads with image/gif.
    if (first !== '*/*' && first !== '' && !OLD_IE_NAVIGATION.test(accept)) return { kind: 'subresource', rule: 'accept-other' };
  }

  if (isAssetPath(pathOf(url))) return { kind: 'subresource', rule: 'path' };
  // A form POST from an old browser sends text/html first (answered above); a POST that did not is
  // an API call or a beacon.
  if (m === 'POST') return { kind: 'subresource', rule: 'method' };
  // Nothing said otherwise: count it. A missed concern costs more than one extra incident, and
  // repeated navigations to one site fold into a single incident anyway.
  return { kind: 'navigation', rule: 'default' };
}

/**
 * 'navigation' when the request is a page the person opened; 'subresource' for what a page or a
 * program fetched by itself. `headers` as node's IncomingHttpHeaders (lower-case names); `url` an
 * absolute URL, a path with query, or anything with a `path` (a NormalizedUrl).
 */
export function classifyRequest(method: string, headers: HeaderBag, url: string | { path: string }): RequestKind {
  return explainRequest(method, headers, url).kind;
}
