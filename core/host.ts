import net from 'node:net';

/** A host as it stands in a URL or authority: an IPv6 literal in brackets, anything else as is. */
export function bracketHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** `::ffff:10.0.0.1` is how a dual-stack socket reports an IPv4 client. */
export function plainIp(ip: string | undefined): string {
  if (!ip) return '';
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}
