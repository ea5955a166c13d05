import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { LRUCache } from 'lru-cache';
import type { NormalizedUrl } from '../blocklists/types';
import type { Logger } from '../core/log';
import type { BrowsingLogSink } from '../incidents/browsing-log';
import { sealReference } from '../incidents/reference';
import type { IncidentSink } from '../incidents/types';
import { PASS, type GatewayHooks, type Identity, type Pass, type Refuse, type Respond } from '../proxy/hooks';
import { renderBlockPage, renderHostMismatchPage, renderNoListsPage, renderSupportPage } from './blockpage';
import { decideConnect, decideRequest, flagSearch, type Decision, type Policy } from './decide';
import type { ClientIdentifier } from './identify';
import type { SearchKeywords } from './keywords';
import { PhraseBook } from './phrase-book';
import { classifyRequest, EMPTY_SEVERITY, extractSearch, TIER_RANK, tierFor, wantsSupport, type SearchQuery, type SeverityConfig, type SignalMatch, type Tier } from './safeguarding';
import { safeSearchFor } from './safesearch';
import { checkContinue, sealContinue, takeContinue, withContinue } from './support-continue';

/** What the school's policy needs to answer the gateway's hooks. */
export interface FilterDeps {
  policy: Policy;
  identifier: ClientIdentifier;
  incidents: IncidentSink;
  referenceSecret: Buffer;
  /** The category's friendly name for the block page (the shipped profile's, else UT1 `NAME EN:`), or null. */
  friendlyName: (category: string) => string | null;
  /** Lists of content illegal to view (IWF, CTIRU): only their block page says so (default: none). */
  illegalCategories?: readonly string[];
  /** The console's address, for the network manager on the "not ready" page. */
  adminBaseUrl: string;
  /**
   * The name only the gateway answers (config pagesHost): the block page's forms post to
   * `<scheme>://<pagesHost>/block/report`, the blocked request's own scheme.
   */
  pagesHost: string;
  safeSearch: boolean;
  /** Keyword lists search terms are checked against (UT1 expressions files). */
  keywords?: SearchKeywords;
  /** Keyword categories search terms are checked against, beyond the group's own. */
  flagCategories: readonly string[];
  logger: Logger;
  /** Recorded on incidents: which gateway saw the request. */
  gatewayName?: string;
  /** Every request, allowed or blocked, counted for the browsing log (absent: no log). */
  browsingLog?: BrowsingLogSink | null;
  /** The safeguarding phrase lists searches are matched against, live (default: the shipped lists, unchanged). */
  phrases?: PhraseBook;
  /** The school's severity per category and group (default: the shipped tiers). */
  severity?: SeverityConfig;
  /** The school's time zone, for the block page's time (default Europe/London). */
  timeZone?: string;
}

/**
 * Type-ahead requests come one per keystroke, each a different URL the writer cannot fold: the
 * same phrase from the same person within this window is one incident, not one per letter typed.
 */
const SUGGEST_REPEAT_MS = 60_000;

/**
 * How long a blocked page's reference is shown again for the same person, URL and category. A
 * reload, a browser's retry or a page asking for the same blocked address again is one thing the
 * person did: the writer folds those repeats into the first one's incident row (same person and
 * site within the fold window, at least a minute: incidentFoldMinutes), so their pages carry that
 * row's reference, sealed once. Sealing (AES-GCM, a cipher object per call) was the largest single
 * cost of a blocked request. Half the shortest fold window, so a reference is never shown for a
 * repeat that can no longer fold into its row. Another page of the same site gets its own
 * reference (its attempt, folded into the same incident: repos/incidents.ts getIncidentByKey).
 */
const REFERENCE_REUSE_MS = 30_000;
/** Bounds the memory the reuse takes: one entry per person and blocked URL in the last 30 s, URLs being up to 16 KiB. */
const REFERENCE_REUSE_MAX = 20_000;
const REFERENCE_REUSE_CHARS = 8 * 1024 * 1024;

interface Shown {
  key: string;
  token: string;
}

/**
 * What a blocked sub-resource (image, script, favicon, XHR, beacon) gets: nobody reads it, so no
 * report forms, no sealed reference and no incident; the page that fetched it was judged on its own.
 */
const SUBRESOURCE_HTML = '<!doctype html><meta charset="utf-8"><title>Blocked</title><p>Blocked by the school web filter.</p>\n';

// Made once: a refused WebSocket needs no object of its own.
const WS_BLOCKED: Refuse = Object.freeze({ pass: false, reason: 'blocked by the school web filter', blocked: true });
const WS_NOT_READY: Refuse = Object.freeze({ pass: false, reason: 'blocked by the school web filter', blocked: false });

/**
 * The school's policy as the gateway's hooks: who the client is, what it may reach, and what
 * follows a decision (the incident recorded, the reference sealed, the block page, search
 * flagging, safe search). The decisions themselves are decide.ts's pure functions.
 */
export function createFilterHooks(deps: FilterDeps): GatewayHooks {
  const log = deps.logger;
  const debug = log.isLevelEnabled('debug');
  const identifier = deps.identifier;
  const policy = deps.policy;
  // Through the proxy every client already uses, so the buttons work without a console address;
  // https inside an intercepted tunnel, so a form on an https page posts to https (no "not secure"
  // warning); and on another origin than the blocked site, whose scripts cannot read the answer.
  const reportAction = { http: `http://${deps.pagesHost}/block/report`, https: `https://${deps.pagesHost}/block/report` };
  const browsing = deps.browsingLog ?? null;

  const phrases = deps.phrases ?? new PhraseBook();
  const severity = deps.severity ?? EMPTY_SEVERITY;
  const suggested = new LRUCache<string, true>({ max: 10_000, ttl: SUGGEST_REPEAT_MS });

  /** The phrase's own tier, else the school's for its list and this person's group. */
  const tierOf = (m: SignalMatch, group: string): Tier => m.phraseSeverity ?? tierFor(m.category, group, severity);

  /**
   * A search on an allowed request: matched against the safeguarding phrases (then UT1's keyword
   * expressions), an incident raised for a match, and for a self-harm, suicide or eating-disorder
   * search the support page instead of the results.
   *
   * The support page, not a banner injected into the results: injecting means decompressing and
   * rewriting each engine's HTML (and their results arrive by script as often as in the page),
   * which breaks with every redesign; a page of our own before the results is the same for every
   * engine and cannot be hidden by the engine's styles. It blocks nothing: "Continue to your
   * results" is the same search with a sealed marker (support-continue.ts) that the gateway
   * checks and strips, so the engine never sees it and the continuation raises no second incident.
   * Type-ahead requests and other sub-resources are never answered with the page (a script asked,
   * nobody would see it).
   * Other lists' matches pass silently: a lesson on drugs or extremism is never interrupted.
   */
  function onSearch(url: NormalizedUrl, path: string, search: SearchQuery, identity: Identity, navigation: boolean): { respond?: Respond; path?: string } {
    const marked = takeContinue(path);
    const subject = { clientIp: identity.clientIp, user: identity.user, host: url.host, terms: search.terms };
    // Already flagged and shown the page: on to the results, the marker removed.
    if (marked && checkContinue(deps.referenceSecret, marked.token, subject)) return { path: marked.path };
    const forward = marked?.path;
    const matches = phrases.matcher.matchAll(search.terms);
    if (matches.length) {
      phrases.hit(matches);
      let top = matches[0]!;
      let tier = tierOf(top, identity.group);
      for (const m of matches) {
        const t = tierOf(m, identity.group);
        if (TIER_RANK[t] > TIER_RANK[tier]) [top, tier] = [m, t];
      }
      const person = identity.user ?? identity.clientIp ?? '';
      const repeat = search.kind === 'suggest' && suggested.has(`${person}\u0000${top.category}\u0000${top.phrase}`);
      if (search.kind === 'suggest') suggested.set(`${person}\u0000${top.category}\u0000${top.phrase}`, true);
      if (!repeat) {
        deps.incidents.record({
          kind: 'flagged_search', user: identity.user, device: identity.device, clientIp: identity.clientIp, gateway: deps.gatewayName ?? null,
          url: url.href, host: url.host, category: top.category, policyGroup: identity.group, searchTerms: search.terms,
          severity: tier, matchedPhrase: top.phrase, identitySource: identity.source,
        });
        // Which list fired is for the network manager's log; who searched, and what, is for the DSL's console.
        log.info({ host: url.host, category: top.category, severity: tier }, 'search flagged');
        if (debug) log.debug({ clientIp: identity.clientIp, user: identity.user, device: identity.device }, 'search flagged: who');
      }
      // Only a page the person opened: the engine's own scripts fetch results too, and the page would reach no one.
      if (search.kind !== 'suggest' && navigation && wantsSupport(matches)) {
        const token = sealContinue(deps.referenceSecret, subject);
        const respond: Respond = { pass: false, status: 200, code: 'support_offered', html: renderSupportPage({ continueHref: withContinue(path, token) }), category: top.category, blocked: false };
        return { respond };
      }
      return { path: forward };
    }
    const flagged = flagSearch(search.terms, policy.lists(), [...policy.categoriesFor(identity.group), ...deps.flagCategories], deps.keywords);
    if (flagged) {
      deps.incidents.record({
        kind: 'flagged_search', user: identity.user, device: identity.device, clientIp: identity.clientIp, gateway: deps.gatewayName ?? null,
        url: url.href, host: url.host, category: flagged, policyGroup: identity.group, searchTerms: search.terms, severity: tierFor(flagged, identity.group, severity),
        identitySource: identity.source,
      });
    }
    return { path: forward };
  }

  const shown = new LRUCache<string, Shown>({
    max: REFERENCE_REUSE_MAX, ttl: REFERENCE_REUSE_MS, maxSize: REFERENCE_REUSE_CHARS, sizeCalculation: (v, k) => k.length + v.token.length,
  });

  /**
   * Records a blocked navigation as an incident at its tier (synchronous, never throws; a `log`
   * tier raises none) and gives the reference its page carries: a new one sealed for this block,
   * or the one shown for the same block moments ago. Every block of the incident tiers is recorded
   * either way (the repeats are what the incident's count and timeline are made of).
   */
  function recordBlock(url: NormalizedUrl, identity: Identity, decision: Decision, severity: Tier, terms?: string | null, note?: string) {
    const key = randomUUID();
    const at = new Date();
    const category = decision.action === 'block' ? decision.category ?? null : null;
    if (severity !== 'log') {
      deps.incidents.record({
        idempotencyKey: key, occurredAt: at, kind: 'blocked', user: identity.user, device: identity.device, clientIp: identity.clientIp,
        gateway: deps.gatewayName ?? null, url: url.href, host: url.host, category, policyGroup: identity.group, searchTerms: terms ?? null, note: note ?? null,
        severity, identitySource: identity.source,
      });
    }
    const reason = decision.action === 'block' ? decision.reason : undefined;
    // Who was blocked is for the safeguarding lead's console, not the service log the network manager reads.
    log.info({ host: url.host, category, reason, severity }, 'blocked');
    if (debug) log.debug({ clientIp: identity.clientIp, user: identity.user, device: identity.device, key }, 'blocked: who');
    // Everything the sealed reference says, so a reused one never says anything else.
    const same = `${identity.clientIp ?? ''}\u0000${identity.user ?? ''}\u0000${identity.group ?? ''}\u0000${identity.source}\u0000${category ?? ''}\u0000${url.href}`;
    const before = note === undefined ? shown.get(same) : undefined;
    if (before) return { key: before.key, token: before.token, at };
    const token = sealReference(deps.referenceSecret, {
      k: key, url: url.href, host: url.host, category, clientIp: identity.clientIp, user: identity.user, group: identity.group, t: at.getTime(),
      src: identity.source,
    });
    if (note === undefined) shown.set(same, { key, token });
    return { key, token, at };
  }

  return {
    admit(clientIp) {
      return identifier.isAllowed(clientIp) ? identifier.byAddress(clientIp) : null;
    },

    identify(connection: Identity, req: IncomingMessage) {
      // The precedence (RADIUS, proxy sign-in, clients map, nobody) is identify.ts's `who`; with
      // proxy authentication off, Proxy-Authorization is not even read.
      const header = identifier.requiresAuth ? req.headers['proxy-authorization'] : undefined;
      return identifier.who(connection, Array.isArray(header) ? header[0] : header);
    },

    decideConnect(host, identity) {
      const d = decideConnect(host, identity.group, policy);
      if (d.action !== 'block') return d.action === 'tunnel' ? 'tunnel' : 'intercept';
      // A bypassed host is never decrypted, so no page can be shown: the CONNECT is refused.
      const category = d.category ?? null;
      if (browsing) browsing.blocked(identity, host, category, null);
      log.info({ host, category, reason: d.reason }, 'blocked: bypassed host refused');
      return 'refuse';
    },

    onRequest(url, path, identity, connectHost, method, headers): Pass | Respond {
      const decision = decideRequest({ url, group: identity.group, connectHost }, policy);
      const search = extractSearch(url.host, url.path);
      const terms = search?.terms ?? null;
      if (decision.action === 'block') {
        // Every refusal is in the browsing log, sub-resources and "not ready" pages included.
        if (browsing) browsing.blocked(identity, url.host, decision.category ?? null, terms);
        if (decision.reason === 'no_lists') {
          return { pass: false, status: 403, code: 'SG_ERR_LIST_EMPTY', html: renderNoListsPage({ url: url.href, consoleUrl: deps.adminBaseUrl }), blocked: false };
        }
        // Only what the person did is theirs to answer for: a blocked advert, favicon or script on
        // a page they opened is counted in the gateway's stats and nothing more.
        const navigation = classifyRequest(method, headers, url) === 'navigation';
        if (decision.reason === 'host_mismatch') {
          if (navigation) recordBlock(url, identity, decision, 'incident', terms, `Host header named ${url.host}, tunnel opened to ${connectHost}`);
          else if (debug) log.debug({ host: url.host, connectHost }, 'host mismatch on a sub-resource');
          return { pass: false, status: 403, code: 'SG_ERR_HOST_MISMATCH', html: renderHostMismatchPage({ tunnelHost: connectHost!, hostHeader: url.host }), blocked: true };
        }
        const category = decision.category ?? null;
        if (!navigation) {
          if (debug) log.debug({ host: url.host, category }, 'blocked sub-resource');
          return { pass: false, status: 403, code: 'blocked', html: SUBRESOURCE_HTML, category, blocked: true };
        }
        const { key, token, at } = recordBlock(url, identity, decision, tierFor(category, identity.group, deps.severity), terms);
        const html = renderBlockPage({
          url: url.href, host: url.host, categoryName: category ? deps.friendlyName(category) ?? category : null,
          at, timeZone: deps.timeZone, reference: key, token, reportAction: url.scheme === 'https' ? reportAction.https : reportAction.http,
          illegal: category !== null && (deps.illegalCategories?.includes(category) ?? false),
        });
        return { pass: false, status: 403, code: 'blocked', html, category, blocked: true };
      }
      let forward: string | undefined;
      if (search) {
        // The request is counted when its response is done (onResponseDone); what it searched is known now.
        if (browsing) browsing.search(identity, url.host, search.terms);
        const outcome = onSearch(url, path, search, identity, classifyRequest(method, headers, url) === 'navigation');
        if (outcome.respond) return outcome.respond;
        forward = outcome.path;
      }
      if (deps.safeSearch) {
        const change = safeSearchFor(url.host, forward ?? path);
        if (change && (change.path || change.headers)) return { pass: true, path: change.path || forward, headers: change.headers || undefined };
      }
      return forward === undefined ? PASS : { pass: true, path: forward };
    },

    onWebSocket(url, identity, connectHost): Pass | Refuse {
      const decision = decideRequest({ url, group: identity.group, connectHost }, policy);
      if (decision.action !== 'block') {
        if (browsing) browsing.allowed(identity, url.host, 0);
        return PASS;
      }
      if (browsing) browsing.blocked(identity, url.host, decision.category ?? null, null);
      if (decision.reason === 'no_lists') return WS_NOT_READY;
      // A WebSocket is opened by a page's script, never by the person: a sub-resource, no incident.
      if (debug) log.debug({ host: url.host, category: decision.category ?? null }, 'blocked WebSocket');
      return WS_BLOCKED;
    },

    // Absent without a log, so the gateway keeps no count for it.
    onResponseDone: browsing ? (url, identity, _status, bytes) => browsing.allowed(identity, url.host, bytes) : undefined,
  };
}
