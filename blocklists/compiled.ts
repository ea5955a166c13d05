import type { CategoryInfo, ListSet, Match, MatchKind, NormalizedUrl, Verdict } from './types';
import { CompiledTable, TableBuilder, walkHost, type TableData } from './table';
import { expressionPath, matchPath, stripWww } from './normalize';

/**
 * squidGuard's semantics over a compact structure:
 * - domain entry: the host itself or any subdomain, on a label boundary (IP addresses: exact);
 * - url entry: `host/path` prefix, host compared after stripping a leading (www|web|ftp)[0-9]*.;
 * - expression: case-insensitive regex over `host[:port]/path?query`, lower-cased and unescaped;
 * - categories in policy order, first match names the verdict; a matching allow category wins.
 */

export interface UrlEntry {
  /** Lower-case, unescaped path prefix ('' when the entry names the whole host). */
  prefix: string;
  category: number;
  entry: string;
}

export interface ExpressionSet {
  category: number;
  sources: string[];
  re: RegExp;
}

/** What a compiled set is made of; also what the cache file stores. */
export interface CompiledParts {
  categories: CategoryInfo[];
  /** Category-set id -> category indexes (a domain may be listed in several categories). */
  catsets: number[][];
  table: TableData;
  urls: Array<[host: string, entries: UrlEntry[]]>;
  expressions: Array<{ category: number; sources: string[] }>;
}

interface Policy {
  block: string[];
  allowList: string[];
  /** rank[category] = position in the block list, or -1 */
  rank: Int32Array;
  allow: Uint8Array;
}

const IPV4 = /^\d+\.\d+\.\d+\.\d+$/;
const NO_CATEGORIES: readonly string[] = [];

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Joins expressions into one regex per category; a pattern that breaks the join is kept apart. */
export function compileExpressions(sources: string[]): RegExp {
  try {
    return new RegExp(sources.map((s) => `(?:${s})`).join('|'), 'i');
  } catch {
    const parts = sources.filter((s) => {
      try {
        new RegExp(s, 'i');
        return true;
      } catch {
        return false;
      }
    });
    return new RegExp(parts.length ? parts.map((s) => `(?:${s})`).join('|') : '(?!)', 'i');
  }
}

export class CompiledLists implements ListSet {
  readonly categories: ReadonlyMap<string, CategoryInfo>;
  readonly categoryNames: string[];
  readonly parts: CompiledParts;
  private readonly table: CompiledTable;
  private readonly catsets: number[][];
  /** url entries grouped by www-stripped host; the host table answers "any for this host?" */
  private readonly urlHosts: CompiledTable;
  private readonly urlLists: UrlEntry[][];
  private readonly expressions: ExpressionSet[];
  private readonly index: Map<string, number>;
  private readonly hits = new Int32Array(128);
  private policyByKey = new Map<string, Policy>();

  constructor(parts: CompiledParts) {
    this.parts = parts;
    this.categories = new Map(parts.categories.map((c) => [c.name, c]));
    this.categoryNames = parts.categories.map((c) => c.name);
    this.index = new Map(this.categoryNames.map((n, i) => [n, i]));
    this.table = new CompiledTable(parts.table);
    this.catsets = parts.catsets;
    const hosts = new TableBuilder();
    this.urlLists = [];
    for (const [host, list] of parts.urls) {
      hosts.add(host, this.urlLists.length, (old) => old);
      this.urlLists.push(list);
    }
    this.urlHosts = hosts.finish();
    this.expressions = parts.expressions.map((e) => ({ ...e, re: compileExpressions(e.sources) }));
  }

  get entries(): number {
    let urls = 0;
    for (const list of this.urlLists) urls += list.length;
    let exprs = 0;
    for (const e of this.expressions) exprs += e.sources.length;
    return this.table.count + urls + exprs;
  }

  private last: Policy | null = null;

  /**
   * The compiled form of a policy. The gateway asks with the same arrays again and again, so
   * the last one is checked first, element by element (cheap, and still right if a caller
   * edits its array in place); other policies come from a small cache keyed by their names.
   */
  private policy(block: readonly string[], allow: readonly string[] | undefined): Policy {
    const allowList = allow ?? NO_CATEGORIES;
    const last = this.last;
    if (last !== null && sameList(last.block, block) && sameList(last.allowList, allowList)) return last;
    const key = `${block.join(',')}|${allowList.join(',')}`;
    let p = this.policyByKey.get(key);
    if (!p) {
      p = {
        block: [...block],
        allowList: [...allowList],
        rank: new Int32Array(this.categoryNames.length).fill(-1),
        allow: new Uint8Array(this.categoryNames.length),
      };
      for (let r = block.length - 1; r >= 0; r--) {
        const i = this.index.get(block[r]);
        if (i !== undefined) p.rank[i] = r;
      }
      for (const a of allowList) {
        const i = this.index.get(a);
        if (i !== undefined) p.allow[i] = 1;
      }
      if (this.policyByKey.size > 256) this.policyByKey.clear();
      this.policyByKey.set(key, p);
    }
    this.last = p;
    return p;
  }

  private readonly urlHit = new Int32Array(1);

  /**
   * Domain-entry indexes that list this host (into `hits`, count returned) and the url-list
   * index for its www-stripped host (into `urlHit[0]`, or -1), in one pass.
   */
  private walk(host: string): number {
    const last = host.charCodeAt(host.length - 1);
    // IP addresses match exactly, never by suffix: 2.3.4 is no parent of 1.2.3.4
    if ((last >= 48 && last <= 57 && IPV4.test(host)) || host.includes(':')) {
      const e = this.table.lookup(host);
      if (e >= 0) this.hits[0] = e;
      const u = this.urlHosts.count ? this.urlHosts.lookup(host) : -1;
      this.urlHit[0] = u >= 0 ? this.urlHosts.value(u) : -1;
      return e >= 0 ? 1 : 0;
    }
    const n = walkHost(host, this.table, this.hits, this.urlHosts, host.length - stripWww(host).length, this.urlHit);
    if (this.urlHit[0] >= 0) this.urlHit[0] = this.urlHosts.value(this.urlHit[0]);
    return n;
  }

  classify(url: NormalizedUrl, blockCategories: readonly string[], allowCategories?: readonly string[]): Verdict {
    const { rank, allow } = this.policy(blockCategories, allowCategories);
    // Hot path: keep indexes while searching; strings and Match objects only for the verdict.
    let best = 0x7fffffff;
    let bestCat = -1;
    let bestKind: MatchKind = 'domain';
    let bestRef = -1;
    let allowCat = -1;
    let allowKind: MatchKind = 'domain';
    let allowRef = -1;

    const n = this.walk(url.host);
    const urlIndex = this.urlHit[0];
    if (n > 0) {
      const meta = this.table.data.meta;
      for (let h = 0; h < n; h++) {
        const e = this.hits[h];
        const cats = this.catsets[meta[2 * e + 1]];
        for (let j = 0; j < cats.length; j++) {
          const c = cats[j];
          if (allow[c] === 1) {
            if (allowCat < 0) {
              allowCat = c;
              allowRef = e;
            }
          } else {
            const r = rank[c];
            if (r >= 0 && r < best) {
              best = r;
              bestCat = c;
              bestRef = e;
            }
          }
        }
      }
    }

    let urlList: UrlEntry[] | undefined;
    if (urlIndex >= 0) {
      urlList = this.urlLists[urlIndex];
      const mpath = matchPath(url.path);
      for (let k = 0; k < urlList.length; k++) {
        const u = urlList[k];
        const c = u.category;
        if (allow[c] === 1) {
          if (allowCat < 0 && mpath.startsWith(u.prefix)) {
            allowCat = c;
            allowKind = 'url';
            allowRef = k;
          }
        } else if (rank[c] >= 0 && rank[c] < best && mpath.startsWith(u.prefix)) {
          best = rank[c];
          bestCat = c;
          bestKind = 'url';
          bestRef = k;
        }
      }
    }

    if (allowCat < 0 && this.expressions.length !== 0) {
      let target: string | null = null;
      for (let k = 0; k < this.expressions.length; k++) {
        const x = this.expressions[k];
        const c = x.category;
        const isAllow = allow[c] === 1;
        if (!isAllow && !(rank[c] >= 0 && rank[c] < best)) continue;
        target ??= this.expressionTarget(url);
        if (!x.re.test(target)) continue;
        if (isAllow) {
          allowCat = c;
          allowKind = 'expression';
          allowRef = k;
          break;
        }
        best = rank[c];
        bestCat = c;
        bestKind = 'expression';
        bestRef = k;
      }
    }

    if (allowCat >= 0) {
      const category = this.categoryNames[allowCat];
      return { action: 'pass', category, allowed: true, match: { category, kind: allowKind, entry: this.entryText(url, allowKind, allowRef, urlList) } };
    }
    if (bestCat >= 0) {
      const category = this.categoryNames[bestCat];
      return { action: 'block', category, match: { category, kind: bestKind, entry: this.entryText(url, bestKind, bestRef, urlList) } };
    }
    return { action: 'pass' };
  }

  private entryText(url: NormalizedUrl, kind: MatchKind, ref: number, urlList: UrlEntry[] | undefined): string {
    if (kind === 'domain') return this.table.entry(ref);
    if (kind === 'url') return urlList![ref].entry;
    const x = this.expressions[ref];
    const target = this.expressionTarget(url);
    return x.sources.find((s) => safeTest(s, target)) ?? x.re.source;
  }

  /** What expressions see: host, port if not the default, path and query, unescaped. */
  private expressionTarget(url: NormalizedUrl): string {
    return url.port === null ? url.host + expressionPath(url.path) : `${url.host}:${url.port}${expressionPath(url.path)}`;
  }

  matches(url: NormalizedUrl): Match[] {
    const out: Match[] = [];
    const n = this.walk(url.host);
    const urlIndex = this.urlHit[0];
    for (let h = 0; h < n; h++) {
      const e = this.hits[h];
      for (const c of this.catsets[this.table.value(e)]) {
        out.push({ category: this.categoryNames[c], kind: 'domain', entry: this.table.entry(e) });
      }
    }
    const mpath = matchPath(url.path);
    for (const u of urlIndex >= 0 ? this.urlLists[urlIndex] : []) {
      if (mpath.startsWith(u.prefix)) out.push({ category: this.categoryNames[u.category], kind: 'url', entry: u.entry });
    }
    const target = this.expressionTarget(url);
    for (const x of this.expressions) {
      for (const s of x.sources) {
        if (safeTest(s, target)) out.push({ category: this.categoryNames[x.category], kind: 'expression', entry: s });
      }
    }
    return out;
  }
}

function safeTest(source: string, target: string): boolean {
  try {
    return new RegExp(source, 'i').test(target);
  } catch {
    return false;
  }
}

/** Accumulates entries from every source, then freezes them into a CompiledLists. */
export class ListBuilder {
  private readonly cats: CategoryInfo[] = [];
  private readonly catIndex = new Map<string, number>();
  private readonly table = new TableBuilder();
  private readonly catsets: number[][] = [];
  private readonly catsetIds = new Map<string, number>();
  private readonly urls = new Map<string, UrlEntry[]>();
  private readonly urlSeen = new Set<string>();
  private readonly exprs = new Map<number, string[]>();

  category(name: string, info: Partial<CategoryInfo> = {}): number {
    let i = this.catIndex.get(name);
    if (i === undefined) {
      i = this.cats.length;
      this.cats.push({ name, friendlyName: name, usage: ['black'], domains: 0, urls: 0, expressions: 0 });
      this.catIndex.set(name, i);
      this.singleton(i);
    }
    const c = this.cats[i];
    if (info.friendlyName) c.friendlyName = info.friendlyName;
    if (info.description) c.description = info.description;
    if (info.usage) c.usage = info.usage;
    return i;
  }

  private catsetId(cats: number[]): number {
    const key = cats.join(',');
    let id = this.catsetIds.get(key);
    if (id === undefined) {
      id = this.catsets.length;
      this.catsets.push(cats);
      this.catsetIds.set(key, id);
    }
    return id;
  }

  private readonly singletons: number[] = [];

  private singleton(cat: number): number {
    return (this.singletons[cat] ??= this.catsetId([cat]));
  }

  /** Room for about `bytes` of domain text in `entries` entries (see TableBuilder.reserve). */
  reserve(bytes: number, entries: number): void {
    this.table.reserve(bytes, entries);
  }

  /** `host` already normalised; false when this category already lists it. */
  addDomain(cat: number, host: string): boolean {
    const i = this.table.insert(host, this.singleton(cat));
    if (i >= 0) {
      const set = this.catsets[this.table.valueAt(i)];
      if (set.includes(cat)) return false;
      this.table.setValueAt(i, this.catsetId([...set, cat].sort((a, b) => a - b)));
    }
    this.cats[cat].domains++;
    return true;
  }

  /** `host` normalised and www-stripped, `prefix` as matchPath gives it. */
  addUrl(cat: number, host: string, prefix: string, entry: string): boolean {
    const key = `${cat}\u0000${host}\u0000${prefix}`;
    if (this.urlSeen.has(key)) return false;
    this.urlSeen.add(key);
    let list = this.urls.get(host);
    if (!list) this.urls.set(host, (list = []));
    list.push({ prefix, category: cat, entry });
    this.cats[cat].urls++;
    return true;
  }

  addExpression(cat: number, source: string): boolean {
    let list = this.exprs.get(cat);
    if (!list) this.exprs.set(cat, (list = []));
    if (list.includes(source)) return false;
    list.push(source);
    this.cats[cat].expressions++;
    return true;
  }

  get entries(): number {
    return this.table.count + this.urlSeen.size + [...this.exprs.values()].reduce((n, l) => n + l.length, 0);
  }

  build(): CompiledLists {
    return new CompiledLists({
      categories: this.cats,
      catsets: this.catsets,
      table: this.table.finish().data,
      urls: [...this.urls],
      expressions: [...this.exprs].sort((a, b) => a[0] - b[0]).map(([category, sources]) => ({ category, sources })),
    });
  }
}
