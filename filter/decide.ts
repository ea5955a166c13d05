import type { ListSet, NormalizedUrl, Verdict } from '../blocklists/types';

/**
 * The gateway's policy, kept apart from the interception plumbing: given who asks for what, say
 * what to do. Pure functions over the current lists and settings; no sockets, no I/O.
 */

export interface Policy {
  /** The compiled lists, or null while none are loaded (the gateway then fails closed). */
  lists(): ListSet | null;
  /** Categories blocked for a policy group, in check order. */
  categoriesFor(group: string): readonly string[];
  allowCategories: readonly string[];
  /** Hosts (and their subdomains) tunnelled without decryption. */
  bypassHosts: readonly string[];
}

export type BlockReason = 'category' | 'no_lists' | 'host_mismatch';

export type Decision =
  | { action: 'tunnel' }
  | { action: 'intercept' }
  | { action: 'pass'; verdict?: Verdict }
  | { action: 'block'; reason: BlockReason; category?: string; verdict?: Verdict };

/** True when `host` is one of `suffixes` or a subdomain of one. */
export function hostMatches(host: string, suffixes: readonly string[]): boolean {
  const h = host.toLowerCase();
  for (const s of suffixes) {
    if (h === s || (h.length > s.length && h.endsWith(s) && h.charCodeAt(h.length - s.length - 1) === 46)) return true;
  }
  return false;
}

/**
 * CONNECT, decided from the target alone before any TLS: bypassed hosts (banks, health, pinned
 * services) are never decrypted. One the lists allow for this group is tunnelled unread; one they
 * block, or any while no lists are loaded (fail closed), is refused outright (a 403 to the CONNECT,
 * no block page: showing one would mean decrypting it). Everything else is intercepted.
 */
export function decideConnect(host: string, group: string, policy: Policy): Decision {
  if (!hostMatches(host, policy.bypassHosts)) return { action: 'intercept' };
  const lists = policy.lists();
  if (!lists) return { action: 'block', reason: 'no_lists' };
  const url: NormalizedUrl = { scheme: 'https', host, port: null, path: '/', href: `https://${host}/` };
  const v = lists.classify(url, policy.categoriesFor(group), policy.allowCategories, group);
  return v.action === 'block' ? { action: 'block', reason: 'category', category: v.category, verdict: v } : { action: 'tunnel' };
}

export interface RequestFacts {
  url: NormalizedUrl;
  group: string;
  /** The CONNECT target when the request arrived inside an intercepted tunnel. */
  connectHost?: string;
}

/** One request (plain HTTP, or decrypted from a tunnel): pass or block, and why. */
export function decideRequest(facts: RequestFacts, policy: Policy): Decision {
  // Inside TLS the Host header must name the host the tunnel was opened to: otherwise an allowed
  // CONNECT target could front for any blocked site (domain fronting).
  if (facts.connectHost !== undefined && facts.url.host !== facts.connectHost) {
    return { action: 'block', reason: 'host_mismatch' };
  }
  const lists = policy.lists();
  if (!lists) return { action: 'block', reason: 'no_lists' };
  const verdict = lists.classify(facts.url, policy.categoriesFor(facts.group), policy.allowCategories, facts.group);
  if (verdict.action === 'block') return { action: 'block', reason: 'category', category: verdict.category, verdict };
  return { action: 'pass', verdict };
}

/**
 * Which keyword category (UT1 `expressions`) a search matches, if any. Expressions are regular
 * expressions over URLs, so the terms are put in a URL of their own: that way a term matches
 * however the engine happened to encode it.
 */
export function flagSearch(terms: string, lists: ListSet | null, categories: readonly string[], keywords?: { flag(terms: string, categories: readonly string[]): string | null }): string | null {
  if (terms.trim() === '') return null;
  const byKeyword = keywords?.flag(terms, categories) ?? null;
  if (byKeyword || !lists) return byKeyword;
  const q = terms.toLowerCase().replace(/\s+/g, ' ').trim();
  const path = `/search?q=${q.replace(/[#?&%]/g, ' ').replace(/ /g, '+')}`;
  const url: NormalizedUrl = { scheme: 'http', host: 'search.invalid', port: null, path, href: `http://search.invalid${path}` };
  const wanted = new Set(categories);
  for (const m of lists.matches(url)) {
    if (m.kind === 'expression' && wanted.has(m.category)) return m.category;
  }
  return null;
}
