import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { LRUCache } from 'lru-cache';
import type { NormalizedUrl } from '../blocklists/types';
import type { Logger } from '../core/log';
import { sealReference } from '../incidents/reference';
import type { IncidentSink } from '../incidents/types';
import { PASS, type GatewayHooks, type Identity, type Pass, type Refuse, type Respond } from '../proxy/hooks';
import { renderBlockPage, renderHostMismatchPage, renderNoListsPage } from './blockpage';
import { decideConnect, decideRequest, flagSearch, type Decision, type Policy } from './decide';
import type { ClientIdentifier } from './identify';
import type { SearchKeywords } from './keywords';
import { safeSearchFor, searchTerms } from './safesearch';
import { classifyRequest, tierFor, type SeverityConfig, type Tier } from './safeguarding';

/** What the school's policy needs to answer the gateway's hooks. */
export interface FilterDeps {
  policy: Policy;
  identifier: ClientIdentifier;
  incidents: IncidentSink;
  referenceSecret: Buffer;
  /** The category's friendly name for the block page (UT1 `NAME EN:`), or null. */
  friendlyName: (category: string) => string | null;
  /** Admin base URL: the block page's forms post to `<base>/block/report`. */
  adminBaseUrl: string;
  safeSearch: boolean;
  /** Keyword lists search terms are checked against (UT1 expressions files). */
  keywords?: SearchKeywords;
  /** Keyword categories search terms are checked against, beyond the group's own. */
  flagCategories: readonly string[];
  logger: Logger;
  /** Recorded on incidents: which gateway saw the request. */
  gatewayName?: string;
  /** The school's severity choices over the shipped defaults (tierFor); none: the defaults. */
  severity?: SeverityConfig;
}

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
  const reportAction = `${deps.adminBaseUrl}/block/report`;

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
        severity,
      });
    }
    const reason = decision.action === 'block' ? decision.reason : undefined;
    // Who was blocked is for the safeguarding lead's console, not the service log the network manager reads.
    log.info({ host: url.host, category, reason, severity }, 'blocked');
    if (debug) log.debug({ clientIp: identity.clientIp, user: identity.user, device: identity.device, key }, 'blocked: who');
    // Everything the sealed reference says, so a reused one never says anything else.
    const same = `${identity.clientIp ?? ''}\u0000${identity.user ?? ''}\u0000${identity.group ?? ''}\u0000${category ?? ''}\u0000${url.href}`;
    const before = note === undefined ? shown.get(same) : undefined;
    if (before) return { key: before.key, token: before.token, at };
    const token = sealReference(deps.referenceSecret, {
      k: key, url: url.href, host: url.host, category, clientIp: identity.clientIp, user: identity.user, group: identity.group, t: at.getTime(),
    });
    if (note === undefined) shown.set(same, { key, token });
    return { key, token, at };
  }

  return {
    admit(clientIp) {
      return identifier.isAllowed(clientIp) ? identifier.byAddress(clientIp) : null;
    },

    identify(connection: Identity, req: IncomingMessage) {
      // With proxy authentication off, the address decides and Proxy-Authorization is never read.
      if (!identifier.requiresAuth) return connection;
      const header = req.headers['proxy-authorization'];
      return identifier.identify(connection.clientIp, Array.isArray(header) ? header[0] : header).then((r) =>
        r.ok ? r.identity : { refused: r.code === 'SG_ERR_PROXY_AUTH_LOCKED' ? r.code : 'SG_ERR_PROXY_AUTH' },
      );
    },

    decideConnect(host, identity) {
      return decideConnect(host, identity.group, policy).action === 'tunnel' ? 'tunnel' : 'intercept';
    },

    onRequest(url, path, identity, connectHost, method, headers): Pass | Respond {
      const decision = decideRequest({ url, group: identity.group, connectHost }, policy);
      const terms = searchTerms(url.host, url.path);
      if (decision.action === 'block') {
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
          at, reference: key, token, reportAction,
        });
        return { pass: false, status: 403, code: 'blocked', html, category, blocked: true };
      }
      if (terms) {
        const flagged = flagSearch(terms, policy.lists(), [...policy.categoriesFor(identity.group), ...deps.flagCategories], deps.keywords);
        if (flagged) {
          deps.incidents.record({
            kind: 'flagged_search', user: identity.user, device: identity.device, clientIp: identity.clientIp, gateway: deps.gatewayName ?? null,
            url: url.href, host: url.host, category: flagged, policyGroup: identity.group, searchTerms: terms,
          });
        }
      }
      if (deps.safeSearch) {
        const change = safeSearchFor(url.host, path);
        if (change && (change.path || change.headers)) return { pass: true, path: change.path || undefined, headers: change.headers || undefined };
      }
      return PASS;
    },

    onWebSocket(url, identity, connectHost): Pass | Refuse {
      const decision = decideRequest({ url, group: identity.group, connectHost }, policy);
      if (decision.action !== 'block') return PASS;
      if (decision.reason === 'no_lists') return WS_NOT_READY;
      // A WebSocket is opened by a page's script, never by the person: a sub-resource, no incident.
      if (debug) log.debug({ host: url.host, category: decision.category ?? null }, 'blocked WebSocket');
      return WS_BLOCKED;
    },
  };
}
