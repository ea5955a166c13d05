import type { CategoryInfo, ListSet, Match, MatchKind, NormalizedUrl, Verdict } from './types';
import { CompiledTable, TableBuilder, walkHost, type TableData } from './table';
import { expressionPath, matchPath, wwwLength } from './normalize';
import { mayContain, requiredLiterals, urlLiterals, type UrlLiteral } from './literals';

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
  /** One of these is in every URL `re` matches (see literals.ts); null when they cannot be named. */
  literals: string[] | null;
}

/** What a compiled set is made of; also what the cache file stores. */
export interface CompiledParts {
  categories: CategoryInfo[];
  /** Category-set id -> category indexes (a domain may be listed in several categories). */
  catsets: number[][];
  /**
   * Domain entries, and the hosts of url entries too: a url host's entry has the empty category
   * set unless it is also a domain entry, and its second value is 1 + its index in `urls`.
   */
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
  /** The expression sets this policy can use, in list order, and the best rank among them (-1: an allow set). */
  exprs: Array<ExpressionSet & { index: number }>;
  exprMinRank: number;
  /**
   * All of `exprs` in one alternation: most URLs match none, and one regex run says so where a
   * run per category would not. null when joining could change a pattern's meaning.
   */
  anyExpr: RegExp | null;
  /**
   * Every URL (without a port) that any of `exprs` matches holds one of these: when it holds none,
   * neither the expression target nor any regex run is needed. null when some expression has none.
   */
  literals: UrlLiteral[] | null;
}

/** Numbered or named back-references and named groups: their numbering breaks when patterns are joined. */
const JOIN_UNSAFE = /\\[1-9]|\\k<|\(\?<[^=!]/;

/** One regex matching wherever any of `res` (all flag 'i') does, or null if that cannot be built safely. */
function alternation(res: readonly RegExp[]): RegExp | null {
  if (res.length < 2 || res.some((r) => JOIN_UNSAFE.test(r.source))) return null;
  try {
    return new RegExp(res.map((r) => `(?:${r.source})`).join('|'), 'i');
  } catch {
    return null;
  }
}

/** The verdict of most lookups: shared, so the common case allocates nothing. */
const PASS: Verdict = Object.freeze({ action: 'pass' }) as Verdict;

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
  /** Table entries that are url hosts only, not domain entries. */
  private readonly urlOnlyHosts: number;
  /** url entries grouped by www-stripped host; the table entry of the host names its list. */
  private readonly urlLists: UrlEntry[][];
  /**
   * The same url entries flat, for the hot path: host list i holds flat entries urlSpan[2i] to
   * urlSpan[2i+1]-1; entry g has its prefix at urlText[urlEnt[4g], urlEnt[4g+4]), category
   * urlEnt[4g+1], and its list text at urlEntryText[urlEntryOff[g], urlEntryOff[g+1]).
   * urlEnt[4g+2] holds the prefix's characters 1 to 4 packed a byte each (see headKey) and
   * urlEnt[4g+3] which of those bytes count: a path whose packed characters differ there cannot
   * start with the prefix, which the scan of a host's list rules out without reading the prefix.
   * Contiguous arrays and one string instead of an object and strings per entry: a lookup
   * touches a few cache lines, not two or three per entry.
   */
  private readonly urlSpan: Int32Array;
  private readonly urlEnt: Int32Array;
  private readonly urlText: string;
  private readonly urlEntryOff: Int32Array;
  private readonly urlEntryText: string;
  /** Prefix indexes of the long url lists (docs.google.com has ~1,000 entries), by list. */
  private readonly urlIndexes = new Map<number, PrefixIndex>();
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
    this.urlLists = parts.urls.map(([, list]) => list);
    let urlOnly = 0;
    for (const [host] of parts.urls) {
      const e = this.table.lookup(host);
      if (e >= 0 && this.catsets[this.table.value(e)].length === 0) urlOnly++;
    }
    this.urlOnlyHosts = urlOnly;
    let total = 0;
    for (const list of this.urlLists) total += list.length;
    this.urlSpan = new Int32Array(2 * this.urlLists.length);
    this.urlEnt = new Int32Array(4 * total + 4);
    this.urlEntryOff = new Int32Array(total + 1);
    const text: string[] = [];
    const entryText: string[] = [];
    let g = 0;
    let pos = 0;
    let epos = 0;
    for (let i = 0; i < this.urlLists.length; i++) {
      const list = this.urlLists[i];
      this.urlSpan[2 * i] = g;
      if (list.length > PREFIX_INDEX_MIN) this.urlIndexes.set(i, new PrefixIndex(list, g));
      for (const u of list) {
        const mask = headMask(u.prefix);
        this.urlEnt[4 * g] = pos;
        this.urlEnt[4 * g + 1] = u.category;
        this.urlEnt[4 * g + 2] = headKey(u.prefix) & mask;
        this.urlEnt[4 * g + 3] = mask;
        this.urlEntryOff[g] = epos;
        pos += u.prefix.length;
        epos += u.entry.length;
        text.push(u.prefix);
        entryText.push(u.entry);
        g++;
      }
      this.urlSpan[2 * i + 1] = g;
    }
    this.urlEnt[4 * g] = pos;
    this.urlEntryOff[g] = epos;
    this.urlText = text.join('');
    this.urlEntryText = entryText.join('');
    this.expressions = parts.expressions.map((e) => {
      const lits = e.sources.map(requiredLiterals);
      return { ...e, re: compileExpressions(e.sources), literals: lits.some((l) => l === null) ? null : (lits as string[][]).flat() };
    });
  }

  get entries(): number {
    let urls = 0;
    for (const list of this.urlLists) urls += list.length;
    let exprs = 0;
    for (const e of this.expressions) exprs += e.sources.length;
    return this.table.count - this.urlOnlyHosts + urls + exprs;
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
        exprs: [],
        exprMinRank: 0x7fffffff,
        anyExpr: null,
        literals: null,
      };
      for (let r = block.length - 1; r >= 0; r--) {
        const i = this.index.get(block[r]);
        if (i !== undefined) p.rank[i] = r;
      }
      for (const a of allowList) {
        const i = this.index.get(a);
        if (i !== undefined) p.allow[i] = 1;
      }
      for (let k = 0; k < this.expressions.length; k++) {
        const x = this.expressions[k];
        const r = p.allow[x.category] === 1 ? -1 : p.rank[x.category];
        if (p.allow[x.category] !== 1 && r < 0) continue;
        p.exprs.push({ ...x, index: k });
        if (r < p.exprMinRank) p.exprMinRank = r;
      }
      p.anyExpr = alternation(p.exprs.map((x) => x.re));
      if (p.exprs.every((x) => x.literals !== null)) p.literals = urlLiterals(p.exprs.flatMap((x) => x.literals!));
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
    // IP addresses match exactly, never by suffix: 2.3.4 is no parent of 1.2.3.4. An IPv6
    // address ends in a hex digit or ':', so most names (ending in g-z) skip the search for ':'.
    const digit = last >= 48 && last <= 57;
    if ((digit && IPV4.test(host)) || ((digit || (last >= 97 && last <= 102) || last === 58) && host.includes(':'))) {
      const e = this.table.lookup(host);
      if (e >= 0) this.hits[0] = e;
      this.urlHit[0] = (e >= 0 ? this.table.extra(e) : 0) - 1;
      return e >= 0 ? 1 : 0;
    }
    const n = walkHost(host, this.table, this.hits, wwwLength(host), this.urlHit);
    this.urlHit[0]--;
    return n;
  }

  classify(url: NormalizedUrl, blockCategories: readonly string[], allowCategories?: readonly string[]): Verdict {
    const p = this.policy(blockCategories, allowCategories);
    const rank = p.rank;
    const allow = p.allow;
    // Hot path: keep indexes while searching; strings and Match objects only for the verdict.
    let best = 0x7fffffff;
    let bestCat = -1;
    let bestKind = KIND_DOMAIN;
    let bestRef = -1;
    let allowCat = -1;
    let allowKind = KIND_DOMAIN;
    let allowRef = -1;

    const host = url.host;
    const n = this.walk(host);
    const urlIndex = this.urlHit[0];
    if (n > 0) {
      const recs = this.table.data.recs;
      const catsets = this.catsets;
      const hits = this.hits;
      for (let h = 0; h < n; h++) {
        const e = hits[h];
        const cats = catsets[recs[e]];
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

    let mpath: string | null = null;
    if (urlIndex >= 0) {
      mpath = matchPath(url.path);
      const first = this.urlSpan[2 * urlIndex];
      const end = this.urlSpan[2 * urlIndex + 1];
      const ent = this.urlEnt;
      const text = this.urlText;
      if (end - first <= PREFIX_INDEX_MIN) {
        const head = headKey(mpath);
        for (let g = first; g < end; g++) {
          if ((head & ent[4 * g + 3]) !== ent[4 * g + 2]) continue;
          const c = ent[4 * g + 1];
          if (allow[c] === 1) {
            if (allowCat < 0 && prefixOf(text, ent[4 * g], ent[4 * g + 4], mpath)) {
              allowCat = c;
              allowKind = KIND_URL;
              allowRef = g;
            }
          } else if (rank[c] >= 0 && rank[c] < best && prefixOf(text, ent[4 * g], ent[4 * g + 4], mpath)) {
            best = rank[c];
            bestCat = c;
            bestKind = KIND_URL;
            bestRef = g;
          }
        }
      } else {
        // Candidates come by prefix length, not list order: pick what the in-order scan above
        // would (first allow entry; lowest rank, then first in the list; a domain hit wins ties).
        const index = this.urlIndexes.get(urlIndex)!;
        const domainAllow = allowCat >= 0;
        const lens = index.lens;
        const byHash = index.byHash;
        let h = PREFIX_SEED;
        let pos = 0;
        for (let li = 0; li < lens.length; li++) {
          const len = lens[li];
          if (len > mpath.length) break;
          while (pos < len) h = Math.imul(h ^ mpath.charCodeAt(pos++), PREFIX_PRIME);
          const ks = byHash.get(prefixKey(h, len));
          if (ks === undefined) continue;
          for (let j = 0; j < ks.length; j++) {
            const g = ks[j];
            if (ent[4 * g + 4] - ent[4 * g] !== len || !prefixOf(text, ent[4 * g], ent[4 * g + 4], mpath)) continue;
            const c = ent[4 * g + 1];
            if (allow[c] === 1) {
              if (!domainAllow && (allowCat < 0 || g < allowRef)) {
                allowCat = c;
                allowKind = KIND_URL;
                allowRef = g;
              }
            } else {
              const r = rank[c];
              if (r >= 0 && (r < best || (r === best && bestKind === KIND_URL && g < bestRef))) {
                best = r;
                bestCat = c;
                bestKind = KIND_URL;
                bestRef = g;
              }
            }
          }
        }
      }
    }

    // Expressions run only while one of theirs could still change the verdict: an allow
    // category, or a block category ranked before the best match so far.
    if (allowCat < 0 && p.exprMinRank < best) {
      const xs = p.exprs;
      let target: string | null = null;
      // when no expression of the policy matches, the loop below could match nothing either
      const tries =
        p.literals !== null && url.port === null && !mayContain(p.literals, host, mpath ?? matchPath(url.path)) ? 0
        : p.anyExpr === null || p.anyExpr.test((target = expressionTarget(url))) ? xs.length
        : 0;
      for (let k = 0; k < tries; k++) {
        const x = xs[k];
        const c = x.category;
        const isAllow = allow[c] === 1;
        if (!isAllow && rank[c] >= best) continue;
        target ??= expressionTarget(url);
        if (!x.re.test(target)) continue;
        if (isAllow) {
          allowCat = c;
          allowKind = KIND_EXPRESSION;
          allowRef = x.index;
          break;
        }
        best = rank[c];
        bestCat = c;
        bestKind = KIND_EXPRESSION;
        bestRef = x.index;
      }
    }

    if (allowCat >= 0) {
      const category = this.categoryNames[allowCat];
      return { action: 'pass', category, allowed: true, match: { category, kind: KINDS[allowKind], entry: this.entryText(url, allowKind, allowRef) } };
    }
    if (bestCat >= 0) {
      const category = this.categoryNames[bestCat];
      return { action: 'block', category, match: { category, kind: KINDS[bestKind], entry: this.entryText(url, bestKind, bestRef) } };
    }
    return PASS;
  }

  private entryText(url: NormalizedUrl, kind: number, ref: number): string {
    if (kind === KIND_DOMAIN) {
      // the entry is a label suffix of the host (or the whole host): slicing it costs no copy
      const len = this.table.length(ref);
      const host = url.host;
      return len === host.length ? host : host.slice(host.length - len);
    }
    if (kind === KIND_URL) return this.urlEntryText.slice(this.urlEntryOff[ref], this.urlEntryOff[ref + 1]);
    const x = this.expressions[ref];
    const target = expressionTarget(url);
    return x.sources.find((s) => safeTest(s, target)) ?? x.re.source;
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
    const target = expressionTarget(url);
    for (const x of this.expressions) {
      for (const s of x.sources) {
        if (safeTest(s, target)) out.push({ category: this.categoryNames[x.category], kind: 'expression', entry: s });
      }
    }
    return out;
  }
}

/** Lists longer than this get a PrefixIndex; a short list is scanned faster than it is hashed. */
const PREFIX_INDEX_MIN = 128;
const PREFIX_SEED = 0x811c9dc5 | 0;
const PREFIX_PRIME = 0x01000193;
/** Small-integer key (V8 keeps it unboxed) for a prefix's running hash and length. */
const prefixKey = (h: number, len: number) => (Math.imul(h ^ len, 0x85ebca6b) >>> 2) & 0x3fffffff;

/**
 * The url entries of one host by hash of their prefix, so a lookup hashes the path once, left
 * to right, and probes only at the lengths entries have: O(path length), not O(entries).
 */
class PrefixIndex {
  /** Distinct prefix lengths, ascending. */
  readonly lens: Int32Array;
  /** prefixKey -> flat entry indexes (first + index in the host's list), ascending. */
  readonly byHash = new Map<number, number[]>();

  constructor(list: UrlEntry[], first: number) {
    const lens = new Set<number>();
    for (let k = 0; k < list.length; k++) {
      const p = list[k].prefix;
      lens.add(p.length);
      let h = PREFIX_SEED;
      for (let i = 0; i < p.length; i++) h = Math.imul(h ^ p.charCodeAt(i), PREFIX_PRIME);
      const key = prefixKey(h, p.length);
      const ks = this.byHash.get(key);
      if (ks) ks.push(first + k);
      else this.byHash.set(key, [first + k]);
    }
    this.lens = Int32Array.from([...lens].sort((a, b) => a - b));
  }
}

/**
 * Characters 1 to 4 of `s` (the first is nearly always '/') packed a byte each, low byte first;
 * 0 past the end. Only the low byte of a character is kept: equal characters give equal bytes,
 * which is all the filter needs (headMask leaves out a prefix's wider characters).
 */
function headKey(s: string): number {
  const n = s.length;
  let k = 0;
  for (let i = Math.min(n, 5) - 1; i >= 1; i--) k = (k << 8) | (s.charCodeAt(i) & 255);
  return k | 0;
}

/** The bytes of headKey(prefix) that a path starting with `prefix` must share: its characters 1 to 4 up to the first above 255. */
function headMask(prefix: string): number {
  let m = 0;
  for (let i = 1; i < Math.min(prefix.length, 5); i++) {
    if (prefix.charCodeAt(i) > 255) break;
    m |= 255 << (8 * (i - 1));
  }
  return m | 0;
}

/** Whether text[start, end) is a prefix of s (startsWith without a string per entry). */
function prefixOf(text: string, start: number, end: number, s: string): boolean {
  const len = end - start;
  if (len > s.length) return false;
  for (let i = 0; i < len; i++) if (text.charCodeAt(start + i) !== s.charCodeAt(i)) return false;
  return true;
}

const KIND_DOMAIN = 0;
const KIND_URL = 1;
const KIND_EXPRESSION = 2;
const KINDS: readonly MatchKind[] = ['domain', 'url', 'expression'];

/** What expressions see: host, port if not the default, path and query, unescaped. */
export function expressionTarget(url: NormalizedUrl): string {
  return url.port === null ? url.host + expressionPath(url.path) : `${url.host}:${url.port}${expressionPath(url.path)}`;
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
    const urls = [...this.urls];
    const none = this.catsetId([]);
    for (let k = 0; k < urls.length; k++) {
      const i = this.table.insert(urls[k][0], none);
      this.table.setExtraAt(i >= 0 ? i : this.table.lastAdded, k + 1);
    }
    return new CompiledLists({
      categories: this.cats,
      catsets: this.catsets,
      table: this.table.finish().data,
      urls,
      expressions: [...this.exprs].sort((a, b) => a[0] - b[0]).map(([category, sources]) => ({ category, sources })),
    });
  }
}
