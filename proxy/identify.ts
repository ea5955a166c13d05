import { createHash } from 'node:crypto';
import net from 'node:net';
import { LRUCache } from 'lru-cache';
import { verifyPassword } from '../admin-api/auth';
import { parseCidr, type Config } from '../core/config';
import type { Queryable } from '../incidents/types';

/** Who is behind a request: what incidents record and what picks the policy group. */
export interface Identity {
  clientIp: string;
  user: string | null;
  device: string | null;
  group: string;
}

export type IdentifyResult = { ok: true; identity: Identity } | { ok: false; code: 'SG_ERR_CLIENT_DENIED' | 'SG_ERR_PROXY_AUTH' };

/** Looks a user up for Proxy-Authorization: Basic (the users table in practice). */
export type UserLookup = (email: string) => Promise<{ passwordHash: string; role: string; disabled: boolean } | null>;

export function usersTableLookup(db: Queryable): UserLookup {
  return async (email) => {
    const r = await db.query<{ password_hash: string; role: string; disabled: boolean }>(
      'SELECT password_hash, role, disabled FROM users WHERE lower(email) = lower($1)',
      [email],
    );
    const u = r.rows[0];
    return u ? { passwordHash: u.password_hash, role: u.role, disabled: u.disabled } : null;
  };
}

/** `::ffff:10.0.0.1` is how a dual-stack socket reports an IPv4 client. */
export function plainIp(ip: string | undefined): string {
  if (!ip) return '';
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

const blockListOf = (cidrs: string[]) => {
  const list = new net.BlockList();
  for (const c of cidrs) {
    const { addr, prefix, type } = parseCidr(c);
    list.addSubnet(addr, prefix, type);
  }
  return list;
};

const typeOf = (ip: string) => (net.isIPv6(ip) ? 'ipv6' : 'ipv4');

/**
 * Decides who may use the gateway and who they are: the CIDR allow-list first (everyone else is
 * refused), then Proxy-Authorization Basic against the users table when required, then the
 * IP→user/device/group map for shared devices.
 */
export class ClientIdentifier {
  private readonly allowed: net.BlockList;
  private readonly map: Array<{ list: net.BlockList; user?: string; device?: string; group?: string }>;
  /** Verified credentials, by a hash of the header: scrypt is deliberately too slow to run per request. */
  private readonly authCache = new LRUCache<string, { user: string; role: string }>({ max: 10_000, ttl: 5 * 60_000 });
  private readonly failCache = new LRUCache<string, true>({ max: 10_000, ttl: 30_000 });

  constructor(
    private readonly config: Pick<Config, 'allowedClients' | 'clients' | 'defaultGroup' | 'proxyAuth' | 'policyGroups'>,
    private readonly users: UserLookup | null,
  ) {
    this.allowed = blockListOf(config.allowedClients);
    this.map = config.clients.map((c) => ({ list: blockListOf([c.cidr]), user: c.user, device: c.device, group: c.group }));
  }

  get requiresAuth(): boolean {
    return this.config.proxyAuth;
  }

  isAllowed(ip: string): boolean {
    const a = plainIp(ip);
    return net.isIP(a) !== 0 && this.allowed.check(a, typeOf(a));
  }

  /** The static part of an identity: from the IP map, without credentials. */
  byAddress(ip: string): Identity {
    const a = plainIp(ip);
    const hit = this.map.find((m) => m.list.check(a, typeOf(a)));
    return { clientIp: a, user: hit?.user ?? null, device: hit?.device ?? null, group: hit?.group ?? this.config.defaultGroup };
  }

  async identify(ip: string, proxyAuthorization: string | undefined): Promise<IdentifyResult> {
    if (!this.isAllowed(ip)) return { ok: false, code: 'SG_ERR_CLIENT_DENIED' };
    const base = this.byAddress(ip);
    if (!proxyAuthorization) {
      return this.config.proxyAuth ? { ok: false, code: 'SG_ERR_PROXY_AUTH' } : { ok: true, identity: base };
    }
    const who = await this.checkBasic(proxyAuthorization);
    if (!who) return this.config.proxyAuth ? { ok: false, code: 'SG_ERR_PROXY_AUTH' } : { ok: true, identity: base };
    return { ok: true, identity: { ...base, user: who.user, group: this.groupForRole(who.role, base.group) } };
  }

  /** A staff login picks the group named after its role when one exists, else `staff`, else the device's. */
  private groupForRole(role: string, fallback: string): string {
    const groups = this.config.policyGroups;
    if (groups[role]) return role;
    if (role !== 'auditor' && groups.staff) return 'staff';
    return fallback;
  }

  private async checkBasic(header: string): Promise<{ user: string; role: string } | null> {
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!m || !this.users) return null;
    const key = createHash('sha256').update(header).digest('base64');
    const cached = this.authCache.get(key);
    if (cached) return cached;
    if (this.failCache.has(key)) return null;
    const decoded = Buffer.from(m[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) return null;
    const email = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    let ok: { user: string; role: string } | null = null;
    try {
      const u = await this.users(email);
      if (u && !u.disabled && (await verifyPassword(password, u.passwordHash))) ok = { user: email.toLowerCase(), role: u.role };
    } catch {
      ok = null; // database down: treat as not identified rather than fail the request path
    }
    if (ok) this.authCache.set(key, ok);
    else this.failCache.set(key, true);
    return ok;
  }
}
