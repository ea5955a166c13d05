/**
 * The contract between the blocklist engine and everyone who asks it (CLI, proxy, admin API).
 * The proxy holds no rules: it normalises, then asks a compiled ListSet.
 */

/** A URL after normalisation (see normalize.ts): what every list entry and lookup is compared on. */
export interface NormalizedUrl {
  scheme: string;
  /** Lower-case, punycode, no trailing dot, IPv4 in dotted decimal, IPv6 without brackets. */
  host: string;
  /** null when it is the scheme's default port. */
  port: number | null;
  /** Path and query, dot-segments resolved, unreserved characters percent-decoded; starts with '/'. */
  path: string;
  /** The whole normalised URL. */
  href: string;
}

export type MatchKind = 'domain' | 'url' | 'expression';

export interface Match {
  category: string;
  kind: MatchKind;
  /** The list entry that matched, as stored after normalisation. */
  entry: string;
}

export interface Verdict {
  action: 'block' | 'pass';
  /** Category that decided: the first matching block category, or the allow category that won. */
  category?: string;
  match?: Match;
  /** True when an allow-list category or allow override decided. */
  allowed?: boolean;
}

export interface CategoryInfo {
  name: string;
  /** UT1 global_usage `NAME EN:`, else the folder name. */
  friendlyName: string;
  description?: string;
  /** From the category's `usage` file (or DEFAULT_TYPE): black and/or white. */
  usage: Array<'black' | 'white'>;
  domains: number;
  urls: number;
  expressions: number;
}

export interface SourceReport {
  source: string;
  category?: string;
  loaded: number;
  duplicates: number;
  skipped: Array<{ line: number; reason: string; text: string }>;
  /** Total skipped; `skipped` may hold only the first few per source. */
  skippedCount: number;
}

export interface LoadReport {
  sources: SourceReport[];
  categories: CategoryInfo[];
  entries: number;
  millis: number;
  fromCache?: boolean;
}

/** A compiled, immutable set of lists. Reload builds a new one and swaps it in whole. */
export interface ListSet {
  readonly categories: ReadonlyMap<string, CategoryInfo>;
  /**
   * First match over `blockCategories` in the given order; an allow category in `allowCategories`
   * that matches wins over every block. `group`, the person's policy group, picks the school's
   * overrides scoped to it (a set without overrides ignores it).
   */
  classify(url: NormalizedUrl, blockCategories: readonly string[], allowCategories?: readonly string[], group?: string): Verdict;
  /** Every category that lists this URL, for "why is this blocked?" */
  matches(url: NormalizedUrl): Match[];
}
