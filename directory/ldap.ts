import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { AndFilter, Client, EqualityFilter, FilterParser, InvalidCredentialsError, OrFilter, PresenceFilter, type Entry, type Filter } from 'ldapts';
import type { DirectoryConfig } from '../core/config';
import { SchoolgateError } from '../core/errors';
import type { Logger } from '../core/log';

/** A person as the school's directory holds them, and the policy group their groups map to. */
export interface DirectoryPerson {
  /** What incidents name them by: their mail, lower-cased (their uid where they have none). */
  email: string;
  uid: string | null;
  name: string;
  form: string | null;
  yearGroup: string | null;
  /** Common names of the directory groups they belong to. */
  groups: string[];
  /** The first groupMap entry they belong to; null when none maps. */
  policyGroup: string | null;
  /** Locked (OpenLDAP ppolicy pwdAccountLockedTime) or disabled (Active Directory userAccountControl). */
  disabled: boolean;
}

const first = (e: Entry, attr: string): string | null => {
  const key = Object.keys(e).find((k) => k.toLowerCase() === attr.toLowerCase());
  const v = key ? e[key] : undefined;
  const one = Array.isArray(v) ? v[0] : v;
  if (one === undefined) return null;
  const s = Buffer.isBuffer(one) ? one.toString('utf8') : String(one);
  return s.length ? s : null;
};
const all = (e: Entry, attr: string): string[] => {
  const key = Object.keys(e).find((k) => k.toLowerCase() === attr.toLowerCase());
  const v = key ? e[key] : undefined;
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : String(x)));
};

/** The cn of a group's DN (`cn=Year 7,ou=groups,...` → `Year 7`), with RFC 4514 escapes undone. */
export function cnOf(dn: string): string | null {
  const m = /^\s*cn\s*=\s*((?:\\.|[^,+])+)/i.exec(dn);
  return m ? m[1].replace(/\\(.)/g, '$1').trim() : null;
}

/**
 * The school's LDAP or Active Directory server, through ldapts: checks a person's password by
 * binding as them (after the service account finds their entry), reads their groups, and lists
 * everyone for the sync. Every exchange has a deadline: a directory that is slow or away makes
 * a check fail (SG_ERR_DIRECTORY), never wait, and for a few seconds afterwards checks fail at
 * once rather than each waiting out the deadline again.
 */
export class LdapDirectory {
  private readonly bindPassword: string;
  private readonly attrs: string[];
  private readonly userFilter: Filter;
  private readonly groupOrder: Array<[string, string]>;
  private downUntil = 0;
  private lastWarn = 0;
  private active = 0;
  /** Milliseconds a failed directory stays "away" before it is tried again. */
  static readonly RETRY_MS = 5_000;

  constructor(
    private readonly config: DirectoryConfig,
    private readonly logger?: Logger,
    private readonly now: () => number = Date.now,
  ) {
    try {
      this.bindPassword = readFileSync(config.bindPasswordFile, 'utf8').split(/\r?\n/)[0];
    } catch (err) {
      throw new SchoolgateError('SG_ERR_CONFIG', `directory.bindPasswordFile ${config.bindPasswordFile} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (!this.bindPassword) throw new SchoolgateError('SG_ERR_CONFIG', `directory.bindPasswordFile ${config.bindPasswordFile} is empty`);
    try {
      this.userFilter = FilterParser.parseString(config.userFilter ?? '(objectClass=person)');
    } catch (err) {
      throw new SchoolgateError('SG_ERR_CONFIG', `directory.userFilter is not an LDAP filter: ${(err as Error).message}`);
    }
    this.attrs = [
      'mail', 'uid', 'cn', 'displayName', 'givenName', 'sn', 'memberOf', 'pwdAccountLockedTime', 'userAccountControl',
      this.formAttr, this.yearAttr, ...(config.loginAttributes ?? []),
    ];
    this.groupOrder = Object.entries(config.groupMap).map(([g, p]) => [g.toLowerCase(), p]);
  }

  private get formAttr() {
    return this.config.formAttribute ?? 'departmentNumber';
  }
  private get yearAttr() {
    return this.config.yearGroupAttribute ?? 'businessCategory';
  }
  /** Seconds a verified sign-in is trusted without asking again. */
  get cacheSeconds(): number {
    return this.config.cacheSeconds ?? 300;
  }
  private get timeoutMs() {
    return this.config.timeoutMs ?? 3000;
  }

  private serverName(): { host: string; servername?: string } {
    const host = new URL(this.config.url).hostname.replace(/^\[|\]$/g, '');
    return isIP(host) ? { host } : { host, servername: host };
  }

  /** Checks in progress: the identifier refuses new sign-ins past its limit rather than queue them. */
  get inFlight(): number {
    return this.active;
  }

  /** The first groupMap entry (in the file's order) among the person's groups. */
  policyGroupOf(groups: string[]): string | null {
    const have = new Set(groups.map((g) => g.toLowerCase()));
    for (const [g, p] of this.groupOrder) if (have.has(g)) return p;
    return null;
  }

  /**
   * The person whose uid or mail (or configured login attribute) is `account`, when `password`
   * binds as them and the account is not locked; null otherwise. Throws SG_ERR_DIRECTORY when the
   * directory cannot say within the deadline.
   */
  async verify(account: string, password: string): Promise<DirectoryPerson | null> {
    // An empty password is an LDAP "unauthenticated bind", which servers answer with success.
    if (!password || !account) return null;
    return this.session(async (client) => {
      const filter = new AndFilter({
        filters: [this.userFilter, new OrFilter({ filters: (this.config.loginAttributes ?? ['uid', 'mail']).map((attribute) => new EqualityFilter({ attribute, value: account })) })],
      });
      const { searchEntries } = await client.search(this.config.baseDn, { scope: 'sub', filter, attributes: this.attrs, sizeLimit: 2 });
      // Two entries answering to one name cannot be told apart: refuse rather than guess.
      const entry = searchEntries.length === 1 ? searchEntries[0] : null;
      const groups = entry ? await this.groupsOf(client, entry) : [];
      // Unknown names cost a bind too, so that timing does not tell who has an account.
      const dn = entry?.dn ?? `cn=schoolgate-no-such-person,${this.config.baseDn}`;
      try {
        await client.bind(dn, password);
      } catch (err) {
        if (err instanceof InvalidCredentialsError) return null;
        throw err;
      }
      if (!entry) return null;
      const person = this.person(entry, groups);
      return person.disabled ? null : person;
    });
  }

  /** Everyone under baseDn matching userFilter, for the sync (paged: Active Directory returns at most 1,000 a page). */
  async listPeople(): Promise<DirectoryPerson[]> {
    return this.session(async (client) => {
      const memberships = await this.allGroups(client);
      const people: DirectoryPerson[] = [];
      for await (const page of client.searchPaginated(this.config.baseDn, { scope: 'sub', filter: this.userFilter, attributes: this.attrs, paged: { pageSize: 500 } })) {
        for (const e of page.searchEntries) {
          const viaMemberOf = all(e, 'memberOf').map(cnOf).filter((g): g is string => g !== null);
          const uid = first(e, 'uid');
          const viaGroups = [...(memberships.get(e.dn.toLowerCase()) ?? []), ...(uid ? (memberships.get(`uid:${uid.toLowerCase()}`) ?? []) : [])];
          const p = this.person(e, [...new Set([...viaMemberOf, ...viaGroups])]);
          if (p.email) people.push(p);
        }
      }
      return people;
    }, 60_000);
  }

  private person(e: Entry, groups: string[]): DirectoryPerson {
    const uid = first(e, 'uid');
    const email = (first(e, 'mail') ?? uid ?? '').toLowerCase();
    const given = first(e, 'givenName');
    const sn = first(e, 'sn');
    const name = first(e, 'displayName') ?? first(e, 'cn') ?? ([given, sn].filter(Boolean).join(' ') || email);
    const uac = Number(first(e, 'userAccountControl') ?? 0);
    return {
      email, uid, name,
      form: first(e, this.formAttr),
      yearGroup: first(e, this.yearAttr),
      groups,
      policyGroup: this.policyGroupOf(groups),
      disabled: first(e, 'pwdAccountLockedTime') !== null || (Number.isInteger(uac) && (uac & 2) === 2),
    };
  }

  /** memberOf where the directory keeps it (Active Directory, OpenLDAP's memberof overlay), else a group search. */
  private async groupsOf(client: Client, entry: Entry): Promise<string[]> {
    const memberOf = all(entry, 'memberOf');
    if (memberOf.length) return memberOf.map(cnOf).filter((g): g is string => g !== null);
    const uid = first(entry, 'uid');
    const filter = new OrFilter({
      filters: [
        new EqualityFilter({ attribute: 'member', value: entry.dn }),
        new EqualityFilter({ attribute: 'uniqueMember', value: entry.dn }),
        ...(uid ? [new EqualityFilter({ attribute: 'memberUid', value: uid })] : []),
      ],
    });
    const { searchEntries } = await client.search(this.config.groupBaseDn ?? this.config.baseDn, { scope: 'sub', filter, attributes: ['cn'] });
    return searchEntries.map((g) => first(g, 'cn')).filter((g): g is string => g !== null);
  }

  /** Member DN (lower-cased) or `uid:<memberUid>` → group common names, from one search of every group. */
  private async allGroups(client: Client): Promise<Map<string, string[]>> {
    const filter = new OrFilter({ filters: ['member', 'uniqueMember', 'memberUid'].map((attribute) => new PresenceFilter({ attribute })) });
    const out = new Map<string, string[]>();
    const add = (k: string, cn: string) => out.set(k, [...(out.get(k) ?? []), cn]);
    for await (const page of client.searchPaginated(this.config.groupBaseDn ?? this.config.baseDn, { scope: 'sub', filter, attributes: ['cn', 'member', 'uniqueMember', 'memberUid'], paged: { pageSize: 500 } })) {
      for (const g of page.searchEntries) {
        const cn = first(g, 'cn');
        if (!cn) continue;
        for (const m of [...all(g, 'member'), ...all(g, 'uniqueMember')]) add(m.toLowerCase(), cn);
        for (const u of all(g, 'memberUid')) add(`uid:${u.toLowerCase()}`, cn);
      }
    }
    return out;
  }

  /**
   * One connection (StartTLS first when configured), bound as the service account, handed to
   * `work`, and closed; the whole exchange is abandoned at the deadline.
   */
  private async session<T>(work: (client: Client) => Promise<T>, deadlineMs = this.timeoutMs): Promise<T> {
    if (this.now() < this.downUntil) throw new SchoolgateError('SG_ERR_DIRECTORY', 'the directory did not answer a moment ago; not asked again yet');
    const ca = this.config.caFile ? [readFileSync(this.config.caFile, 'utf8')] : undefined;
    const tlsOptions = ca ? { ca } : undefined;
    // tlsOptions given to the constructor for an ldap:// URL break ldapts's StartTLS upgrade: they go to startTLS alone.
    const ldaps = this.config.url.toLowerCase().startsWith('ldaps:');
    const client = new Client({ url: this.config.url, timeout: deadlineMs, connectTimeout: deadlineMs, tlsOptions: ldaps ? tlsOptions : undefined, strictDN: false });
    this.active++;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new SchoolgateError('SG_ERR_DIRECTORY', `no answer within ${deadlineMs} ms`)), deadlineMs);
    });
    const exchange = (async () => {
      // The certificate must name the server in the URL: without `host`, Node checks it against "localhost".
      if (this.config.startTls) await client.startTLS({ ...tlsOptions, ...this.serverName() });
      try {
        await client.bind(this.config.bindDn, this.bindPassword);
      } catch (err) {
        if (err instanceof InvalidCredentialsError) throw new SchoolgateError('SG_ERR_DIRECTORY', `the directory refused the service account ${this.config.bindDn} (check directory.bindPasswordFile)`);
        throw err;
      }
      return work(client);
    })();
    exchange.catch(() => {}); // its failure after the deadline is already answered
    try {
      return await Promise.race([exchange, deadline]);
    } catch (err) {
      this.downUntil = this.now() + LdapDirectory.RETRY_MS;
      const e = err instanceof SchoolgateError ? err : new SchoolgateError('SG_ERR_DIRECTORY', (err as Error).message);
      if (this.now() - this.lastWarn > 60_000) {
        this.lastWarn = this.now();
        // The directory's address and the reason; never who was signing in, never a password.
        this.logger?.warn({ code: 'SG_ERR_DIRECTORY', url: this.config.url, err: e.message }, 'directory check failed: sign-ins not in the cache are refused until it answers');
      }
      throw e;
    } finally {
      clearTimeout(timer);
      this.active--;
      void client.unbind().catch(() => {});
    }
  }
}
