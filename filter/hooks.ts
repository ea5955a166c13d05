import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { LRUCache } from 'lru-cache';
import type { NormalizedUrl } from '../blocklists/types';
import type { Logger } from '../core/log';
import type { BrowsingLogSink } from '../incidents/browsing-log';
import { sealReference } from '../incidents/reference';
import { REPEAT_WINDOW_MS, type IncidentSink } from '../incidents/types';
import { PASS, type GatewayHooks, type Identity, type Pass, type Refuse, type Respond } from '../proxy/hooks';
import { renderBlockPage, renderHostMismatchPage, renderNoListsPage } from './blockpage';
import { decideConnect, decideRequest, flagSearch, type Decision, type Policy } from './decide';
import type { ClientIdentifier } from './identify';
import type { SearchKeywords } from './keywords';
import { extractSearch } from './safeguarding';
import { safeSearchFor } from './safesearch';

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
  /** Every request, allowed or blocked, counted for the browsing log (absent: no log). */
  browsingLog?: BrowsingLogSink | null;
}

/**
 * How long a blocked page's reference is shown again for the same person, URL and category. A
 * reload, a browser's retry or a page asking for the same blocked address again is one thing the
 * person did: the writer folds those repeats into the first one's incident row within
 * REPEAT_WINDOW_MS, so their pages carry that row's reference, sealed once. Sealing (AES-GCM, a
 * cipher object per call) was the largest single cost of a blocked request. Half the fold window,
 * so a reference is never shown for a repeat that can no longer fold into its row.
 */
const REFERENCE_REUSE_MS = REPEAT_WINDOW_MS / 2;
/** Bounds the memory the reuse takes: one entry per person and blocked URL in the last 30 s, URLs being up to 16 KiB. */
const REFERENCE_REUSE_MAX = 20_000;
const REFERENCE_REUSE_CHARS = 8 * 1024 * 1024;

interface Shown {
  key: string;
  token: string;
}

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
  const browsing = deps.browsingLog ?? null;

  const shown = new LRUCache<string, Shown>({
    max: REFERENCE_REUSE_MAX, ttl: REFERENCE_REUSE_MS, maxSize: REFERENCE_REUSE_CHARS, sizeCalculation: (v, k) => k.length + v.token.length,
  });

  /**
   * Records the block as an incident (synchronous, never throws) and gives the reference its page
   * carries: a new one sealed for this block, or the one shown for the same block moments ago.
   * Every block is recorded either way (the repeats are what the incident's count is made of).
   */
  function recordBlock(url: NormalizedUrl, identity: Identity, decision: Decision, terms?: string | null, note?: string) {
    const key = randomUUID();
    const at = new Date();
    const category = decision.action === 'block' ? decision.category ?? null : null;
    deps.incidents.record({
      idempotencyKey: key, occurredAt: at, kind: 'blocked', user: identity.user, device: identity.device, clientIp: identity.clientIp,
      gateway: deps.gatewayName ?? null, url: url.href, host: url.host, category, policyGroup: identity.group, searchTerms: terms ?? null, note: note ?? null,
    });
    const reason = decision.action === 'block' ? decision.reason : undefined;
    // Who was blocked is for the safeguarding lead's console, not the service log the network manager reads.
    log.info({ host: url.host, category, reason }, 'blocked');
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

    onRequest(url, path, identity, connectHost): Pass | Respond {
      const decision = decideRequest({ url, group: identity.group, connectHost }, policy);
      const terms = extractSearch(url.host, url.path)?.terms ?? null;
      if (decision.action === 'block') {
        // Every refusal is in the browsing log, sub-resources and "not ready" pages included.
        if (browsing) browsing.blocked(identity, url.host, decision.category ?? null, terms);
        if (decision.reason === 'no_lists') {
          return { pass: false, status: 403, code: 'SG_ERR_LIST_EMPTY', html: renderNoListsPage({ url: url.href, consoleUrl: deps.adminBaseUrl }), blocked: false };
        }
        if (decision.reason === 'host_mismatch') {
          recordBlock(url, identity, decision, terms, `Host header named ${url.host}, tunnel opened to ${connectHost}`);
          return { pass: false, status: 403, code: 'SG_ERR_HOST_MISMATCH', html: renderHostMismatchPage({ tunnelHost: connectHost!, hostHeader: url.host }), blocked: true };
        }
        const { key, token, at } = recordBlock(url, identity, decision, terms);
        const category = decision.category ?? null;
        const html = renderBlockPage({
          url: url.href, host: url.host, categoryName: category ? deps.friendlyName(category) ?? category : null,
          at, reference: key, token, reportAction,
        });
        return { pass: false, status: 403, code: 'blocked', html, category, blocked: true };
      }
      if (terms) {
        // The request is counted when its response is done (onResponseDone); what it searched is known now.
        if (browsing) browsing.search(identity, url.host, terms);
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
      if (decision.action !== 'block') {
        if (browsing) browsing.allowed(identity, url.host, 0);
        return PASS;
      }
      if (browsing) browsing.blocked(identity, url.host, decision.category ?? null, null);
      if (decision.reason === 'no_lists') return WS_NOT_READY;
      recordBlock(url, identity, decision);
      return WS_BLOCKED;
    },

    // Absent without a log, so the gateway keeps no count for it.
    onResponseDone: browsing ? (url, identity, _status, bytes) => browsing.allowed(identity, url.host, bytes) : undefined,
  };
}
