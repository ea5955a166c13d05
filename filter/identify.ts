import { createHash } from 'node:crypto';
import net from 'node:net';
import { LRUCache } from 'lru-cache';
import { parseCidr, type Config } from '../core/config';
import { plainIp } from '../core/host';
import type { Logger } from '../core/log';
import type { IdentitySource } from '../core/vocabulary';
import type { Queryable } from '../db/types';
import { findUserByEmail } from '../repos/accounts';

// Defined where the protocol carries it from a connection to its requests (proxy/hooks.ts).
export type { Identity } from '../proxy/hooks';
import type { AuthRefusal, Identity } from '../proxy/hooks';

export type RefusalCode = 'SG_ERR_CLIENT_DENIED' | 'SG_ERR_PROXY_AUTH' | 'SG_ERR_PROXY_AUTH_LOCKED';
export type IdentifyResult = { ok: true; identity: Identity } | { ok: false; code: RefusalCode };

/** Looks a user up for Proxy-Authorization: Basic (the users table in practice). */
export type UserLookup = (email: string) => Promise<{ passwordHash: string; role: string; disabled: boolean } | null>;

export function usersTableLookup(db: Queryable): UserLookup {
  return async (email) => {
    const u = await findUserByEmail(db, email);
    return u ? { passwordHash: u.password_hash, role: u.role, disabled: u.disabled } : null;
  };
}

/** What the audit log is told about proxy sign-ins (the gateway never writes it itself). */
export interface ProxyAuthEvent {
  action: 'proxy_auth_failed' | 'proxy_auth_locked';
  /** The account named in the header, as sent (at most 254 characters). */
  account: string;
  clientIp: string;
  /** For proxy_auth_locked: what is now refused for a while. */
  scope?: 'address' | 'address_account' | 'account';
}

export interface ProxyAuthLimits {
  /** Failed sign-ins for one account from one address before that pair is refused. */
  perAddressAccount: number;
  /** Failed sign-ins from one address, whatever the account, before the address is refused. */
  perAddress: number;
  /** Failed sign-ins for one account from all addresses before new sign-ins to it are refused. */
  perAccount: number;
  /** Failures older than this are forgotten. */
  windowMs: number;
  /** How long a limit, once reached, refuses. */
  lockMs: number;
  /** Hashes waiting in this process beyond which a new sign-in is refused rather than queued. */
  maxWaitingHashes: number;
  /** How long a verified credential is trusted without hashing again. */
  cacheTtlMs: number;
}

export const DEFAULT_PROXY_AUTH_LIMITS: ProxyAuthLimits = {
  perAddressAccount: 5,
  perAddress: 20,
  perAccount: 50,
  windowMs: 15 * 60_000,
  lockMs: 15 * 60_000,
  maxWaitingHashes: 32,
  cacheTtlMs: 5 * 60_000,
};

/**
 * The school's directory (directory/ldap.ts, wired by server/start.ts): with one configured,
 * proxy sign-ins are checked against it instead of console accounts, so a pupil needs no console
 * login and console passwords never travel to the proxy.
 */
export interface DirectoryAuth {
  /** The person (named by mail) and their policy group when the password is theirs; null when wrong, unknown or disabled; throws when the directory cannot say in time. */
  verify(account: string, password: string): Promise<{ email: string; policyGroup: string | null } | null>;
  /** How long a verified sign-in is trusted without asking the directory again. */
  cacheTtlMs: number;
}

/**
 * How Proxy-Authorization is checked, passed in by server/start.ts: the gateway holds no password
 * code of its own and reaches neither the admin API nor the audit table directly.
 */
export interface ProxyAuthDeps {
  users: UserLookup;
  /** When set, sign-ins are checked against the school's directory instead of `users`. */
  directory?: DirectoryAuth;
  /** A password against a stored hash (admin-api/auth's verifyPassword, whose hashing is bounded). */
  verify: (password: string, stored: string) => Promise<boolean>;
  /** A hash of the same cost as real ones: unknown and disabled accounts are verified against it. */
  dummyHash: () => Promise<string>;
  /** Hashes queued in this process; past `maxWaitingHashes` a new sign-in is refused at once. */
  hashesWaiting?: () => number;
  audit?: (e: ProxyAuthEvent) => Promise<void> | void;
  limits?: Partial<ProxyAuthLimits>;
  logger?: Logger;
  /** Milliseconds; tests move it on instead of waiting for a lock to end. */
  now?: () => number;
}

/**
 * Who holds an address by the school network's own record (RADIUS accounting from the Wi-Fi
 * controller or NAC: filter/radius.ts's RadiusSessions). Asked on every request outside a tunnel,
 * so it answers from memory in O(1), never awaiting.
 */
export interface AddressSessions {
  /** The live session for this plain address, or undefined (ended ones at once, expired ones within seconds). */
  at(ip: string): AddressSession | undefined;
}

export interface AddressSession {
  readonly user: string;
  /** The identity made for this session, kept on it so later requests allocate nothing; a new session starts without. */
  memo?: Identity;
}

/**
 * A network-named person's policy group, for a source that knows it (the seam for the directory
 * connector's group map). Null: the group of the address's `clients` entry, else the default group.
 */
export type GroupOf = (user: string, ip: string) => string | null;

export interface IdentifySources {
  /** RADIUS accounting's address → person mappings; absent when `radiusAccounting` is not configured. */
  sessions?: AddressSessions | null;
  groupOf?: GroupOf | null;
}

// The protocol reads client addresses too (and may not import the filter): plainIp lives in core.
export { plainIp } from '../core/host';

const blockListOf = (cidrs: string[]) => {
  const list = new net.BlockList();
  for (const c of cidrs) {
    const { addr, prefix, type } = parseCidr(c);
    list.addSubnet(addr, prefix, type);
  }
  return list;
};

const typeOf = (ip: string) => (net.isIPv6(ip) ? 'ipv6' : 'ipv4');

/** A verified sign-in: a console account's role, or a directory person's policy group (null: the device's). */
type Verified = { user: string; role: string; group?: string | null };

/** Failures per key within a window; at `limit` the key is refused for `lockMs`. */
class FailureCounter {
  private readonly entries: LRUCache<string, { n: number; since: number; lockedUntil: number }>;
  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly lockMs: number,
    private readonly now: () => number,
  ) {
    // Bounded, so a flood of addresses or account names costs memory once, not for ever; an
    // evicted key only starts counting again.
    this.entries = new LRUCache({ max: 50_000 });
  }

  locked(key: string, pending = 0): boolean {
    const e = this.current(key);
    return (e?.lockedUntil ?? 0) > this.now() || (e?.n ?? 0) + pending >= this.limit;
  }

  /** Counts one failure; true when it is the one that reached the limit. */
  fail(key: string): boolean {
    const now = this.now();
    const e = this.current(key) ?? { n: 0, since: now, lockedUntil: 0 };
    e.n++;
    this.entries.set(key, e);
    if (e.n === this.limit) {
      e.lockedUntil = now + this.lockMs;
      return true;
    }
    return false;
  }

  clear(key: string): void {
    this.entries.delete(key);
  }

  private current(key: string) {
    const e = this.entries.get(key);
    if (!e) return undefined;
    const now = this.now();
    if (e.lockedUntil <= now && now - e.since > this.windowMs) {
      this.entries.delete(key);
      return undefined;
    }
    if (e.lockedUntil !== 0 && e.lockedUntil <= now) {
      // A lock served: start afresh rather than refuse again on the next single failure.
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }
}

/** In-flight counts per key: guesses sent in parallel count against a limit before any has failed. */
class Pending {
  private readonly counts = new Map<string, number>();
  of(key: string): number {
    return this.counts.get(key) ?? 0;
  }
  add(key: string, d: 1 | -1): void {
    const n = this.of(key) + d;
    if (n > 0) this.counts.set(key, n);
    else this.counts.delete(key);
  }
}

/**
 * Decides who may use the gateway and who they are: the CIDR allow-list first (everyone else is
 * refused), then who sent each request in one order of precedence (`who`, README "Identity"):
 * RADIUS accounting's mapping of the address, Proxy-Authorization Basic against the users table
 * when proxy authentication is on (and only then), the IP→user/device/group map for shared
 * devices, else nobody.
 */
export class ClientIdentifier {
  private readonly allowed: net.BlockList;
  private readonly map: Array<{ list: net.BlockList; user?: string; device?: string; group?: string }>;
  private readonly limits: ProxyAuthLimits;
  private readonly now: () => number;
  /** Verified credentials, by a hash of the header: scrypt is deliberately too slow to run per request. */
  private readonly authCache: LRUCache<string, Verified>;
  /** Recently failed headers per address: a browser resending a mistyped password is one failure, not one per request. */
  private readonly failCache = new LRUCache<string, true>({ max: 10_000, ttl: 30_000 });
  private readonly pairFailures: FailureCounter;
  private readonly addressFailures: FailureCounter;
  private readonly accountFailures: FailureCounter;
  private readonly pending = new Pending();
  private readonly inflight = new Map<string, Promise<Verified | { refused: RefusalCode }>>();
  /** Imported school devices by exact address (`schoolgate devices import`): after the clients map. */
  private devices = new Map<string, { user: string; device: string | null; group: string | null }>();
  /** Bumped whenever credentials change: a check that started before it must not fill the cache. */
  private epoch = 0;
  private lastBusyLog = 0;

  private readonly sessions: AddressSessions | null;
  private readonly groupOf: GroupOf | null;

  constructor(
    private readonly config: Pick<Config, 'allowedClients' | 'clients' | 'defaultGroup' | 'proxyAuth' | 'policyGroups'> & Partial<Pick<Config, 'categories'>>,
    private readonly auth: ProxyAuthDeps | null,
    sources: IdentifySources = {},
  ) {
    this.sessions = sources.sessions ?? null;
    this.groupOf = sources.groupOf ?? null;
    this.allowed = blockListOf(config.allowedClients);
    this.map = config.clients.map((c) => ({ list: blockListOf([c.cidr]), user: c.user, device: c.device, group: c.group }));
    const l = (this.limits = { ...DEFAULT_PROXY_AUTH_LIMITS, ...auth?.limits });
    const now = (this.now = auth?.now ?? Date.now);
    this.authCache = new LRUCache({ max: 10_000, ttl: l.cacheTtlMs });
    this.pairFailures = new FailureCounter(l.perAddressAccount, l.windowMs, l.lockMs, now);
    this.addressFailures = new FailureCounter(l.perAddress, l.windowMs, l.lockMs, now);
    this.accountFailures = new FailureCounter(l.perAccount, l.windowMs, l.lockMs, now);
  }

  get requiresAuth(): boolean {
    return this.config.proxyAuth;
  }

  isAllowed(ip: string): boolean {
    const a = plainIp(ip);
    return net.isIP(a) !== 0 && this.allowed.check(a, typeOf(a));
  }

  /** A connection's identity from its address alone, without credentials: RADIUS's person, else the `clients` map's. */
  byAddress(ip: string): Identity {
    const a = plainIp(ip);
    return this.byRadius(a) ?? this.byMap(a);
  }

  /**
   * Who sent a request, in the one order of precedence (README "Identity"):
   *  1. RADIUS accounting: the person the Wi-Fi controller or NAC says holds the address. Never
   *     asked for a proxy password, even with proxy authentication on: the network has already
   *     signed them in, and a prompt on every school device is what transparent naming avoids.
   *  2. proxy authentication, when on (and only then): Proxy-Authorization checked; refused without.
   *     With it off, Proxy-Authorization is never read: checking it anyway gave anyone on the
   *     network an unlimited, unaudited password oracle against console accounts.
   *  3. the `clients` map's user for the address;
   *  4. nobody: the address alone, in the default group.
   * `connection` is what `byAddress` said when the connection was admitted (the gateway holds it);
   * it is returned as it is when nothing changed, so a request allocates nothing and awaits only
   * when a password must be checked.
   */
  who(connection: Identity, proxyAuthorization: string | undefined): Identity | Promise<Identity | AuthRefusal> {
    const ip = connection.clientIp;
    const named = this.byRadius(ip);
    if (named) return named;
    if (this.config.proxyAuth) return this.signIn(ip, proxyAuthorization);
    // Admitted while RADIUS named its address, and that session has ended since.
    return connection.source === 'radius' ? this.byMap(ip) : connection;
  }

  /** `who` for an address not yet admitted (the allow-list checked first), as a result. */
  async identify(ip: string, proxyAuthorization: string | undefined): Promise<IdentifyResult> {
    if (!this.isAllowed(ip)) return { ok: false, code: 'SG_ERR_CLIENT_DENIED' };
    const r = await this.who(this.byAddress(ip), proxyAuthorization);
    return 'refused' in r ? { ok: false, code: r.refused } : { ok: true, identity: r };
  }

  /** Step 1: the session's identity, made once per session (its device and group from the `clients` map unless `groupOf` knows better). */
  private byRadius(ip: string): Identity | null {
    const s = this.sessions?.at(ip);
    if (s === undefined) return null;
    if (s.memo !== undefined) return s.memo;
    const hit = this.mapHit(ip);
    // The seam for a directory's group map: what it says wins over the address range's group.
    const group = this.groupOf?.(s.user, ip) ?? hit?.group ?? this.config.defaultGroup;
    return (s.memo = { clientIp: ip, user: s.user, device: hit?.device ?? null, group, source: 'radius' });
  }

  /** Steps 3 and 4: the `clients` map's entry for the address, if it names anyone. */
  private byMap(ip: string): Identity {
    const hit = this.mapHit(ip);
    // A device imported from the school's MIS (schoolgate devices import) names its person where no `clients` range covers the address.
    const imported = hit ? undefined : this.devices.get(ip);
    if (imported) return { clientIp: ip, user: imported.user, device: imported.device, group: imported.group ?? this.config.defaultGroup, source: 'clients' };
    const user = hit?.user ?? null;
    const source: IdentitySource = user !== null ? 'clients' : 'unknown';
    return { clientIp: ip, user, device: hit?.device ?? null, group: hit?.group ?? this.config.defaultGroup, source };
  }

  private mapHit(ip: string) {
    return this.map.find((m) => m.list.check(ip, typeOf(ip)));
  }

  /** Step 2. */
  private async signIn(ip: string, proxyAuthorization: string | undefined): Promise<Identity | AuthRefusal> {
    if (!proxyAuthorization) return { refused: 'SG_ERR_PROXY_AUTH' };
    const who = await this.checkBasic(ip, proxyAuthorization);
    if (!('user' in who)) return { refused: who.refused === 'SG_ERR_PROXY_AUTH_LOCKED' ? who.refused : 'SG_ERR_PROXY_AUTH' };
    const base = this.byMap(ip);
    // A directory sign-in carries the group its groupMap gave (null: none mapped); a console account's role decides otherwise.
    if (who.group !== undefined) return { ...base, user: who.user, group: who.group ?? base.group, source: 'directory' };
    return { ...base, user: who.user, group: this.groupForRole(who.role, base.group), source: 'proxy_auth' };
  }

  /** Replaces the imported devices (wired by server/start.ts to the devices table). */
  setDevices(devices: Array<{ ip: string; user: string; device: string | null; group: string | null }>): void {
    this.devices = new Map(devices.filter((d) => net.isIP(plainIp(d.ip)) !== 0).map((d) => [plainIp(d.ip), { user: d.user, device: d.device, group: d.group }]));
  }

  /**
   * Forgets cached sign-ins of one account ('*': all), so a changed password, a disabled account
   * or a new role counts from the next request on. Wired to core/credentials by server/start.ts.
   */
  forget(email: string): void {
    this.epoch++;
    this.failCache.clear();
    if (email === '*') {
      this.authCache.clear();
      return;
    }
    const who = email.toLowerCase();
    const stale: string[] = [];
    for (const [k, v] of this.authCache.entries()) if (v.user === who) stale.push(k);
    for (const k of stale) this.authCache.delete(k);
  }

  /**
   * A staff login picks the group named after its role when one exists, else `staff` (configured,
   * or the shipped profile's when `categories` does not replace it), else the device's.
   */
  private groupForRole(role: string, fallback: string): string {
    const groups = this.config.policyGroups;
    if (groups[role]) return role;
    if (role !== 'auditor' && (groups.staff || !this.config.categories)) return 'staff';
    return fallback;
  }

  private async checkBasic(ip: string, header: string): Promise<Verified | { refused: RefusalCode }> {
    const no = { refused: 'SG_ERR_PROXY_AUTH' } as const;
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!m || !this.auth) return no;
    const decoded = Buffer.from(m[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0 || colon > 254) return no;
    const account = decoded.slice(0, colon).toLowerCase();
    const password = decoded.slice(colon + 1);
    const pair = `${ip}|${account}`;

    // The address's limits come before the cache: the right password from a limited address is
    // refused too, or a guesser would learn that it was right.
    if (this.addressFailures.locked(ip, this.pending.of(ip)) || this.pairFailures.locked(pair, this.pending.of(pair))) {
      return { refused: 'SG_ERR_PROXY_AUTH_LOCKED' };
    }
    const key = createHash('sha256').update(header).digest('base64');
    const cached = this.authCache.get(key);
    if (cached) return cached;
    // Past here every answer costs a hash. An account under attack from many addresses takes no
    // new sign-ins for a while; those already signed in (cached) carry on.
    if (this.accountFailures.locked(account)) return { refused: 'SG_ERR_PROXY_AUTH_LOCKED' };
    if (this.failCache.has(`${ip}|${key}`)) return no;
    if ((this.auth.hashesWaiting?.() ?? 0) >= this.limits.maxWaitingHashes) {
      const now = this.now();
      if (now - this.lastBusyLog > 60_000) {
        this.lastBusyLog = now;
        this.auth.logger?.warn({ code: 'SG_ERR_PROXY_AUTH_BUSY' }, 'proxy sign-ins refused: too many password checks waiting');
      }
      return { refused: 'SG_ERR_PROXY_AUTH' };
    }

    // A browser opens several connections at once with the same header: one hash answers them all.
    const flightKey = `${ip}|${key}`;
    let flight = this.inflight.get(flightKey);
    if (!flight) {
      flight = this.verify(ip, account, password, pair, key).finally(() => this.inflight.delete(flightKey));
      this.inflight.set(flightKey, flight);
    }
    return flight;
  }

  private async verify(ip: string, account: string, password: string, pair: string, key: string): Promise<Verified | { refused: RefusalCode }> {
    const no = { refused: 'SG_ERR_PROXY_AUTH' } as const;
    const epoch = this.epoch;
    this.pending.add(ip, 1);
    this.pending.add(pair, 1);
    let ok: Verified | null = null;
    let failed = false;
    try {
      const directory = this.auth!.directory;
      if (directory) {
        const p = await directory.verify(account, password);
        if (p) ok = { user: p.email, role: '', group: p.policyGroup };
        else failed = true;
      } else {
        const u = await this.auth!.users(account);
        // Unknown and disabled accounts cost a hash too: timing must not tell them from real ones.
        const verified = await this.auth!.verify(password, u?.passwordHash ?? (await this.auth!.dummyHash()));
        if (u && !u.disabled && verified) ok = { user: account, role: u.role };
        else failed = true;
      }
    } catch {
      ok = null; // database or directory down: not identified (fail closed), and not the client's fault either
    } finally {
      this.pending.add(ip, -1);
      this.pending.add(pair, -1);
    }
    if (ok) {
      if (epoch === this.epoch) this.authCache.set(key, ok, this.auth!.directory ? { ttl: this.auth!.directory.cacheTtlMs } : undefined);
      this.pairFailures.clear(pair);
      return ok;
    }
    if (failed) this.recordFailure(ip, account, pair, key);
    return no;
  }

  private recordFailure(ip: string, account: string, pair: string, key: string): void {
    this.failCache.set(`${ip}|${key}`, true);
    const audit = (e: ProxyAuthEvent) => {
      try {
        Promise.resolve(this.auth?.audit?.(e)).catch((err) => this.auth?.logger?.warn({ err: (err as Error).message }, 'proxy sign-in not audited'));
      } catch (err) {
        this.auth?.logger?.warn({ err: (err as Error).message }, 'proxy sign-in not audited');
      }
    };
    audit({ action: 'proxy_auth_failed', account, clientIp: ip });
    const locks: Array<[boolean, NonNullable<ProxyAuthEvent['scope']>]> = [
      [this.pairFailures.fail(pair), 'address_account'],
      [this.addressFailures.fail(ip), 'address'],
      [this.accountFailures.fail(account), 'account'],
    ];
    for (const [locked, scope] of locks) {
      if (!locked) continue;
      audit({ action: 'proxy_auth_locked', account, clientIp: ip, scope });
      // Who and from where is for the audit log; the service log only says that it happened.
      this.auth?.logger?.warn({ code: 'SG_ERR_PROXY_AUTH_LOCKED', scope, minutes: Math.round(this.limits.lockMs / 60_000) }, 'proxy sign-ins refused for a while after repeated failures');
    }
  }
}
