/** A host as it stands in a URL or authority: an IPv6 literal in brackets, anything else as is. */
export function bracketHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
