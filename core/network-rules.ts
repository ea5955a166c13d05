import net from 'node:net';
import { SchoolgateError } from './errors';

/**
 * The gateway's network settings as configuration sees them: their shape, defaults and checks.
 * They live in core, not proxy/, because config.ts validates them at load time and core imports
 * no other layer; proxy/destinations.ts and proxy/timeouts.ts enforce them.
 */

export type Family = 'ipv4' | 'ipv6';

export interface DestinationRules {
  /** CIDRs refused beyond the built-in walls (e.g. private ranges a school wants closed). */
  deniedDestinations: string[];
  /** CIDRs reachable although denied (built-in or configured); never the gateway's own ports. */
  allowedDestinations: string[];
  /** Ports CONNECT may open: single ports or `low-high` ranges. */
  connectPorts: Array<string | number>;
}

export const DEFAULT_DESTINATION_RULES: DestinationRules = { deniedDestinations: [], allowedDestinations: [], connectPorts: [443] };

/** One CIDR, validated with the name of the setting it came from. */
export function parseRange(where: string, v: unknown): { addr: string; prefix: number; family: Family } {
  const m = typeof v === 'string' ? /^([^/]+?)(?:\/(\d{1,3}))?$/.exec(v.trim()) : null;
  const addr = m?.[1] ?? '';
  const family: Family | null = net.isIPv4(addr) ? 'ipv4' : net.isIPv6(addr) ? 'ipv6' : null;
  const max = family === 'ipv4' ? 32 : 128;
  const prefix = m?.[2] === undefined ? max : Number(m[2]);
  if (!family || prefix > max) throw new SchoolgateError('SG_ERR_CONFIG', `${where}: not an address or CIDR: ${JSON.stringify(v)}`);
  return { addr, prefix, family };
}

/** Validates `connectPorts` (a port, or `low-high`), naming the entry that is wrong. */
export function parsePortRanges(where: string, v: unknown): Array<[number, number]> {
  if (!Array.isArray(v)) throw new SchoolgateError('SG_ERR_CONFIG', `${where} must be a list of ports or port ranges (low-high)`);
  return v.map((entry, i) => {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(String(entry).trim());
    const low = m ? Number(m[1]) : NaN;
    const high = m?.[2] === undefined ? low : Number(m[2]);
    if (!m || low < 1 || high > 65535 || low > high) {
      throw new SchoolgateError('SG_ERR_CONFIG', `${where}[${i}]: not a port or port range (1-65535): ${JSON.stringify(entry)}`);
    }
    return [low, high] as [number, number];
  });
}

/** Fails the config load on a bad entry, naming the key: called by loadConfig. */
export function checkDestinationRules(r: DestinationRules): void {
  for (const key of ['deniedDestinations', 'allowedDestinations'] as const) {
    if (!Array.isArray(r[key])) throw new SchoolgateError('SG_ERR_CONFIG', `${key} must be a list of addresses or CIDRs`);
    r[key].forEach((v, i) => parseRange(`${key}[${i}]`, v));
  }
  parsePortRanges('connectPorts', r.connectPorts);
}

/**
 * Limits on what a client connection may hold open without doing anything. The gateway's HTTP
 * servers never listen themselves (sockets are handed to them with `emit('connection')`), so
 * Node's own headersTimeout/requestTimeout checks never start: without these, a few hundred
 * connections trickling header bytes, or opening a tunnel and saying nothing, hold the gateway's
 * sockets and memory for ever (slowloris).
 */
export interface ConnectionLimits {
  /** A request's headers must be complete within this long of its first byte. */
  headersTimeoutMs: number;
  /** A new connection, or a freshly opened TLS tunnel, may stay silent this long before its first request. */
  idleTimeoutMs: number;
  /** From a CONNECT's 200 to a finished TLS handshake (or the first plain byte in the tunnel). */
  handshakeTimeoutMs: number;
  /** Concurrent connections one client address may hold (a NAT'd device holds many). */
  maxConnectionsPerClient: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  headersTimeoutMs: 30_000,
  idleTimeoutMs: 30_000,
  handshakeTimeoutMs: 10_000,
  // Browsers open about 6 per host and 256 in all; a school's NAT or a benchmark of 200 connections stays well under.
  maxConnectionsPerClient: 512,
};
