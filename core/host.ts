import net from 'node:net';
import { getDomain } from 'tldts';

/** A host as it stands in a URL or authority: an IPv6 literal in brackets, anything else as is. */
export function bracketHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** `::ffff:10.0.0.1` is how a dual-stack socket reports an IPv4 client. */
export function plainIp(ip: string | undefined): string {
  if (!ip) return '';
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

/**
 * The site a host belongs to, as a person would name it: its registrable domain by the Public
 * Suffix List (www.bbc.co.uk and news.bbc.co.uk are bbc.co.uk; a.blogspot.com and b.blogspot.com
 * are different people's sites). An IP address, or a name with no registrable part (localhost),
 * is its own site. Lower-cased, so that the same site is one string however the URL spelled it.
 */
export function siteOf(host: string): string {
  const h = host.toLowerCase();
  if (net.isIP(h) || h.startsWith('[')) return h;
  return getDomain(h, { allowPrivateDomains: true }) ?? h;
}
