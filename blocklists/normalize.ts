import { SchoolgateError } from '../core/errors';
import type { NormalizedUrl } from './types';
import { bracketHost } from '../core/host';

/**
 * One normalisation for the CLI, the gateway and list entries, so a trick that changes how a URL
 * is written (case, trailing dot, userinfo, port, IDN, hex/octal IPv4, %-escapes, dot-segments)
 * never changes what it is compared as. The WHATWG URL parser does most of it; we add only what it
 * leaves alone (trailing dot, unreserved %-decoding, bracket-less IPv6).
 */

const UNRESERVED_ESCAPE = /%(4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|3[0-9]|2D|2E|5F|7E)/gi;

/** A `%` that starts no escape: the WHATWG parser leaves it as it is. */
const STRAY_PERCENT = /%(?![0-9a-f]{2})/gi;

/**
 * A stray `%` is written as its escape first: else decoding `%%34%31` gives `%41`, which is another
 * resource (`A`) than the literal `%41` the client asked for, and normalising again changes it.
 */
const decodeUnreserved = (s: string): string =>
  s.indexOf('%') < 0 ? s : s.replace(STRAY_PERCENT, '%25').replace(UNRESERVED_ESCAPE, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));

/** `scheme://` at the start: an absolute URL rather than a host or a path. */
export const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

const DEFAULT_PORTS: Record<string, number> = { http: 80, https: 443, ftp: 21, ws: 80, wss: 443 };

export function normalizeUrl(raw: string, opts: { defaultScheme?: string } = {}): NormalizedUrl {
  const text = typeof raw === 'string' ? raw.trim() : '';
  return fastNormalize(text) ?? normalizeWithUrlParser(text, opts);
}

/**
 * What a person typed (a console form, a report): `http://` put in front when it has no scheme,
 * so `user:pw@host` or `host:8080` read as a host rather than as a scheme.
 */
export function normalizeTypedUrl(text: string): NormalizedUrl {
  return normalizeUrl(SCHEME.test(text) ? text : `http://${text}`);
}

/** Path and query characters the WHATWG parser leaves exactly as they are (no %, ', \\, #, space...). */
const PLAIN_PATH = new Uint8Array(128);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&()*+,;=:@/") PLAIN_PATH[c.charCodeAt(0)] = 1;

/**
 * The common case without the URL parser: `http(s)://` + a plain letters-digits-hyphens host
 * (+ a plain port) + a path and query of characters the parser keeps as they are. Anything else
 * (userinfo, IP-like, punycode or trailing-dot hosts, escapes, dot-segments, fragments, empty
 * queries, odd ports) returns null and takes the full parser, so both always agree (a test
 * compares them on the corpus and on fuzzed input).
 */
export function fastNormalize(text: string): NormalizedUrl | null {
  let i: number;
  let scheme: string;
  if (text.startsWith('http://')) {
    i = 7;
    scheme = 'http';
  } else if (text.startsWith('https://')) {
    i = 8;
    scheme = 'https';
  } else return null;
  const n = text.length;
  const hostStart = i;
  let upper = false;
  let labelStart = i;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if ((c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45) continue;
    if (c >= 65 && c <= 90) {
      upper = true;
      continue;
    }
    if (c === 46) {
      // empty or over-long label: the parser's business
      if (i === labelStart || i - labelStart > 63) return null;
      labelStart = i + 1;
      continue;
    }
    break;
  }
  const hostEnd = i;
  // empty host, trailing dot, over-long label or name
  if (hostEnd === labelStart || hostEnd - labelStart > 63 || hostEnd - hostStart > 253) return null;
  // last label starting with a digit: may be an IPv4 address in some notation
  const l0 = text.charCodeAt(labelStart);
  if (l0 >= 48 && l0 <= 57) return null;
  let port: number | null = null;
  if (i < n && text.charCodeAt(i) === 58) {
    const portStart = ++i;
    let value = 0;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c < 48 || c > 57) break;
      value = value * 10 + (c - 48);
    }
    const digits = i - portStart;
    if (digits === 0 || digits > 5 || text.charCodeAt(portStart) === 48 || value > 65535) return null;
    port = value === (scheme === 'http' ? 80 : 443) ? null : value;
  }
  const pathStart = i;
  if (i < n && text.charCodeAt(i) !== 47) return null;
  let query = -1;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 128 && PLAIN_PATH[c] === 1) {
      // a dot right after a slash may start a dot-segment: the parser resolves those
      if (c === 46 && query < 0 && text.charCodeAt(i - 1) === 47) return null;
      continue;
    }
    if (c === 63) {
      if (query < 0) query = i;
      continue;
    }
    return null;
  }
  // an empty query (`/a?`) is dropped by the parser
  if (query === n - 1) return null;
  let host = text.slice(hostStart, hostEnd);
  if (upper) host = host.toLowerCase();
  if (host.includes('xn--')) return null;
  const path = pathStart === n ? '/' : text.slice(pathStart);
  return { scheme, host, port, path, href: port === null ? `${scheme}://${host}${path}` : `${scheme}://${host}:${port}${path}` };
}

/** The full treatment, through the WHATWG URL parser. */
export function normalizeWithUrlParser(text: string, opts: { defaultScheme?: string } = {}): NormalizedUrl {
  if (text === '') throw new SchoolgateError('SG_ERR_URL_INVALID', 'empty URL');
  const hasScheme = text.startsWith('http://') || text.startsWith('https://') || SCHEME.test(text);
  // `mailto:x@y`, `javascript:...`: a scheme without an authority names no host to filter
  if (!hasScheme && /^[a-z][a-z0-9+.-]*:(?![0-9]*(?:[/?#]|$))/i.test(text)) {
    throw new SchoolgateError('SG_ERR_URL_INVALID', `no host in ${JSON.stringify(text.slice(0, 200))}`);
  }
  const withScheme = hasScheme ? text : `${opts.defaultScheme ?? 'http'}://${text}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new SchoolgateError('SG_ERR_URL_INVALID', JSON.stringify(text.slice(0, 200)));
  }
  const scheme = u.protocol.slice(0, -1);
  let host = u.hostname;
  if (host.charCodeAt(0) === 91) host = host.slice(1, -1);
  else if (host.charCodeAt(host.length - 1) === 46) host = host.replace(/\.+$/, '');
  if (host === '' || host.charCodeAt(0) === 46 || host.includes('..')) {
    throw new SchoolgateError('SG_ERR_URL_INVALID', `no usable host in ${JSON.stringify(text.slice(0, 200))}`);
  }
  const explicit = u.port === '' ? null : Number(u.port);
  const port = explicit === null || explicit === DEFAULT_PORTS[scheme] ? null : explicit;
  const path = decodeUnreserved(u.search === '' ? u.pathname || '/' : u.pathname + u.search);
  const hostPart = bracketHost(host);
  return { scheme, host, port, path, href: port === null ? `${scheme}://${hostPart}${path}` : `${scheme}://${hostPart}:${port}${path}` };
}

/** Characters a list host may hold once lower-cased (UT1 carries `_` in some names). */
const PLAIN_HOST = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/;
/** Last label numeric or hex: the WHATWG parser may rewrite it as an IPv4 address. */
const MAYBE_IPV4 = /(?:^|\.)(?:0x[0-9a-f]*|[0-9]+)$/;

/**
 * A bare host (list entry, CONNECT target without port, bypass host) in the form lookups use,
 * or null when it cannot be a host name.
 */
export function normalizeHost(host: string): string | null {
  let h = host.trim().toLowerCase();
  if (h.charCodeAt(h.length - 1) === 46) h = h.replace(/\.+$/, '');
  if (h === '' || h.length > 253) return null;
  // Fast path for the millions of plain entries a list holds; the URL parser handles the rest.
  if (PLAIN_HOST.test(h) && !MAYBE_IPV4.test(h) && !h.includes('xn--')) return h;
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (/[\s/?#@\\[\]*]/.test(h) || (h.includes(':') && !/^[0-9a-f:.]+$/.test(h))) return null;
  try {
    const u = new URL(`http://${bracketHost(h)}/`);
    if (u.port !== '') return null;
    let out = u.hostname;
    if (out.startsWith('[')) out = out.slice(1, -1);
    out = out.replace(/\.+$/, '');
    if (out === '' || out.includes('..') || out.startsWith('.') || out.includes('%')) return null;
    return out;
  } catch {
    return null;
  }
}

/** Leading `www.`, `web2.`, `ftp.`... that squidGuard strips from url entries and requests alike. */
export function stripWww(host: string): string {
  const i = wwwLength(host);
  return i === 0 ? host : host.slice(i);
}

/** Length of that prefix, dot included (0 when there is none): no string made on the hot path. */
export function wwwLength(host: string): number {
  // by hand rather than a regex: this runs on every lookup
  const c0 = host.charCodeAt(0);
  if (c0 !== 119 && c0 !== 102) return 0;
  const c1 = host.charCodeAt(1);
  const c2 = host.charCodeAt(2);
  if (!((c0 === 119 && c1 === 119 && c2 === 119) || (c0 === 119 && c1 === 101 && c2 === 98) || (c0 === 102 && c1 === 116 && c2 === 112))) return 0;
  let i = 3;
  while (i < host.length && host.charCodeAt(i) >= 48 && host.charCodeAt(i) <= 57) i++;
  return host.charCodeAt(i) === 46 ? i + 1 : 0;
}

/** Decodes every %XX (as squidGuard does before matching) so an escape cannot hide a listed path. */
function decodeAll(s: string): string {
  if (s.indexOf('%') < 0) return s;
  return s.replace(/(?:%[0-9a-f]{2})+/gi, (seq) => {
    try {
      return decodeURIComponent(seq);
    } catch {
      return seq.replace(/%([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
    }
  });
}

/**
 * The path as list entries are compared against it: lower case (squidGuard folds the whole URL),
 * every escape decoded, repeated slashes collapsed (a known squidGuard bypass it also closes).
 */
export function matchPath(path: string): string {
  // by hand rather than a regex: this runs on most lookups, and most paths need nothing done
  let escapes = false;
  let upper = false;
  let doubled = false;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c >= 65 && c <= 90) upper = true;
    else if (c === 37) escapes = true;
    else if (c === 47 && path.charCodeAt(i + 1) === 47) doubled = true;
  }
  if (!escapes && !upper && !doubled) return path;
  const lower = (escapes ? decodeAll(path) : path).toLowerCase();
  return escapes || doubled ? lower.replace(/\/{2,}/g, '/') : lower;
}

/** The path as expressions see it: like matchPath but case kept (expressions are case-insensitive). */
export function expressionPath(path: string): string {
  if (path.indexOf('%') < 0 && path.indexOf('//') < 0) return path;
  return decodeAll(path).replace(/\/{2,}/g, '/');
}
