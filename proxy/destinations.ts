import dns from 'node:dns';
import net from 'node:net';
import os from 'node:os';
import { SchoolgateError } from '../core/errors';
import { checkDestinationRules, DEFAULT_DESTINATION_RULES, parsePortRanges, parseRange, type DestinationRules, type Family } from '../core/network-rules';

// Configuration's shape and checks live in core (config.ts reads them); re-exported for the protocol's users.
export { checkDestinationRules, DEFAULT_DESTINATION_RULES, parsePortRanges, type DestinationRules } from '../core/network-rules';

/**
 * Where the gateway may connect on a client's behalf. A forward proxy on the school network is
 * otherwise a way in: to the gateway's own console and ports, to services that trust loopback, and
 * to a cloud host's metadata address. Private ranges stay reachable (school intranets) unless the
 * configuration denies them.
 *
 * The check is made on addresses, never on names: a name is judged by what it resolves to, inside
 * the lookup the connection itself uses (so a name that resolves to a public address for a check
 * and to 127.0.0.1 for the connection — DNS rebinding — cannot slip between the two), and the
 * address actually connected to is checked again where the port matters.
 */


/** The reason given for the gateway's own ports. */
export const OWN_PORTS = 'the web filter itself';
const THIS_MACHINE = "an address of the web filter's own computer";
interface Range {
  addr: string;
  prefix: number;
  family: Family;
  reason: string;
}

/**
 * Always refused, whatever the configuration denies, unless `allowedDestinations` names them; so
 * are the addresses of the gateway's own network interfaces.
 */
const BUILT_IN: Range[] = [
  { addr: '0.0.0.0', prefix: 8, family: 'ipv4', reason: 'unspecified address' },
  { addr: '127.0.0.0', prefix: 8, family: 'ipv4', reason: 'loopback address' },
  { addr: '169.254.0.0', prefix: 16, family: 'ipv4', reason: 'link-local address (cloud metadata lives here)' },
  { addr: '224.0.0.0', prefix: 4, family: 'ipv4', reason: 'multicast address' },
  { addr: '240.0.0.0', prefix: 4, family: 'ipv4', reason: 'reserved or broadcast address' },
  // ::/96 holds :: and ::1 and the deprecated IPv4-compatible forms (::127.0.0.1), none of them a website.
  { addr: '::', prefix: 96, family: 'ipv6', reason: 'unspecified or loopback address' },
  { addr: 'fe80::', prefix: 10, family: 'ipv6', reason: 'link-local address' },
  { addr: 'ff00::', prefix: 8, family: 'ipv6', reason: 'multicast address' },
];

const LOOPBACK: Array<[string, number, Family]> = [['127.0.0.0', 8, 'ipv4'], ['::1', 128, 'ipv6']];


export interface DestinationOptions extends DestinationRules {
  /**
   * Tests only, never set from configuration: loopback destinations and every CONNECT port are
   * allowed, so tests can use origins on 127.0.0.1 and random ports. The gateway's own ports stay refused.
   */
  allowLoopbackForTests?: boolean;
}



/** The eight 16-bit groups of an IPv6 address (dotted tails and zone ids handled). */
function hextets(addr: string): number[] {
  const canon = new URL(`http://[${addr}]/`).hostname.slice(1, -1);
  const [head, tail] = canon.split('::');
  const part = (s: string | undefined) => (s ? s.split(':').map((h) => parseInt(h, 16)) : []);
  const h = part(head);
  const t = tail === undefined ? [] : part(tail);
  return [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
}

/**
 * The address as the kernel will use it: IPv4-mapped (::ffff:a.b.c.d, in any spelling) and NAT64
 * (64:ff9b::/96) addresses reach an IPv4 host, so they are judged as that IPv4 address.
 */
export function effectiveAddress(address: string): { address: string; family: Family } | null {
  const a = address.replace(/%.*$/, '');
  if (net.isIPv4(a)) return { address: a, family: 'ipv4' };
  if (!net.isIPv6(a)) return null;
  let g: number[];
  try {
    g = hextets(a);
  } catch {
    return null;
  }
  const mapped = g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff;
  const nat64 = g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0);
  if (mapped || nat64) return { address: `${g[6] >> 8}.${g[6] & 255}.${g[7] >> 8}.${g[7] & 255}`, family: 'ipv4' };
  return { address: a, family: 'ipv6' };
}

export class DestinationDenied extends SchoolgateError {
  constructor(readonly target: string, readonly reason: string) {
    super('SG_ERR_DESTINATION_DENIED', `${target}: ${reason}`);
  }
}

export const isDestinationDenied = (err: unknown): err is DestinationDenied =>
  err instanceof DestinationDenied || (err as { code?: unknown } | null)?.code === 'SG_ERR_DESTINATION_DENIED';

type LookupAll = Array<{ address: string; family: number }>;

export class Destinations {
  private readonly builtIn: Array<{ list: net.BlockList; reason: string }>;
  private readonly denied = new net.BlockList();
  private readonly allowed = new net.BlockList();
  private readonly loopback = new net.BlockList();
  private readonly connectPorts: Array<[number, number]>;
  private readonly ownPorts = new Set<number>();
  private readonly testLoopback: boolean;
  private localCache: { at: number; addresses: Set<string> } | null = null;

  constructor(opts: DestinationOptions = DEFAULT_DESTINATION_RULES) {
    checkDestinationRules(opts);
    this.builtIn = BUILT_IN.map((r) => {
      const list = new net.BlockList();
      list.addSubnet(r.addr, r.prefix, r.family);
      return { list, reason: r.reason };
    });
    opts.deniedDestinations.forEach((v, i) => {
      const r = parseRange(`deniedDestinations[${i}]`, v);
      this.denied.addSubnet(r.addr, r.prefix, r.family);
    });
    opts.allowedDestinations.forEach((v, i) => {
      const r = parseRange(`allowedDestinations[${i}]`, v);
      this.allowed.addSubnet(r.addr, r.prefix, r.family);
    });
    for (const [a, p, f] of LOOPBACK) this.loopback.addSubnet(a, p, f);
    this.connectPorts = parsePortRanges('connectPorts', opts.connectPorts);
    this.testLoopback = opts.allowLoopbackForTests === true;
  }

  /** The gateway's own listening ports (proxy, console): refused on every local address. */
  addOwnPort(port: number): void {
    if (port > 0) this.ownPorts.add(port);
  }

  connectPortAllowed(port: number): boolean {
    return this.testLoopback || this.connectPorts.some(([lo, hi]) => port >= lo && port <= hi);
  }

  /**
   * Why a connection to this address (and port, where known) is refused, or null when it may go.
   * Not an IP address at all: refused, since only resolved addresses are ever judged here.
   */
  refusal(address: string, port?: number): string | null {
    const eff = effectiveAddress(address);
    if (!eff) return 'not an IP address';
    if (port !== undefined && this.ownPorts.has(port) && this.isLocal(eff.address, eff.family)) return OWN_PORTS;
    if (this.allowed.check(eff.address, eff.family)) return null;
    if (this.testLoopback && this.loopback.check(eff.address, eff.family)) return null;
    for (const r of this.builtIn) if (r.list.check(eff.address, eff.family)) return r.reason;
    // Any port on the gateway's own machine, not only ours: its database, SSH and whatever else
    // listens on the school-facing interface trust that network, not a relay for it.
    if (this.isLocal(eff.address, eff.family)) return THIS_MACHINE;
    if (this.denied.check(eff.address, eff.family)) return 'address range closed by the school';
    return null;
  }

  /** Throws DestinationDenied for an IP-literal target (they skip DNS, so the lookup never sees them). */
  checkLiteral(host: string, port: number): void {
    if (!net.isIP(host.replace(/%.*$/, ''))) return;
    const why = this.refusal(host, port);
    if (why) throw new DestinationDenied(`${host}:${port}`, why);
  }

  /** After connect: the address actually connected to, for whatever path the connection took. */
  checkConnected(socket: net.Socket, target: string): DestinationDenied | null {
    const address = socket.remoteAddress;
    if (!address) return new DestinationDenied(target, 'connection has no peer address');
    const why = this.refusal(address, socket.remotePort);
    return why ? new DestinationDenied(target, why) : null;
  }

  /**
   * A lookup for one connection that passes on only the addresses this policy allows: the socket
   * connects to what this returns and to nothing else. With `port`, the gateway's own ports count too.
   */
  lookup(base: net.LookupFunction | undefined, port?: number): net.LookupFunction {
    const resolve = (base ?? dns.lookup) as unknown as (h: string, o: object, cb: (err: Error | null, a: string | LookupAll, f?: number) => void) => void;
    return ((hostname: string, options: dns.LookupOptions, callback: (err: Error | null, a?: string | LookupAll, f?: number) => void) => {
      resolve(hostname, { ...options, all: true }, (err, addresses, family) => {
        if (err) return callback(err);
        const all: LookupAll = Array.isArray(addresses) ? addresses : [{ address: addresses, family: family ?? net.isIP(addresses) }];
        let why: string | null = null;
        const ok = all.filter((a) => {
          const r = this.refusal(a.address, port);
          why ??= r;
          return r === null;
        });
        if (ok.length === 0) return callback(new DestinationDenied(hostname, why ?? 'name has no address'));
        if (options?.all) callback(null, ok);
        else callback(null, ok[0].address, ok[0].family);
      });
    }) as unknown as net.LookupFunction;
  }

  private isLocal(address: string, family: Family): boolean {
    if (this.loopback.check(address, family)) return true;
    if (address === '0.0.0.0' || address === '::') return true;
    // Interfaces change (DHCP, VPNs): re-read them now and then; only consulted for our own ports.
    const now = Date.now();
    if (!this.localCache || now - this.localCache.at > 5000) {
      const addresses = new Set<string>();
      for (const list of Object.values(os.networkInterfaces())) {
        for (const i of list ?? []) {
          const eff = effectiveAddress(i.address);
          if (eff) addresses.add(hextetsKey(eff.address, eff.family));
        }
      }
      this.localCache = { at: now, addresses };
    }
    return this.localCache.addresses.has(hextetsKey(address, family));
  }
}

/** IPv6 written one canonical way, so a local address matches however the request spelled it. */
function hextetsKey(address: string, family: Family): string {
  if (family === 'ipv4') return address;
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return address;
  }
}
