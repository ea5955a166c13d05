import { createHash } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Db } from '../db/types';
import { databaseAnswers } from '../repos/incidents';
import type { WriterStats } from '../incidents/types';
import type { BrowsingLogStats } from '../incidents/browsing-log';
import type { GatewayCounters, ListStoreLike, RadiusCounters } from './deps';

/** The gateway's own counters (proxy/gateway.ts `stats`), read at scrape time. */
export type { GatewayCounters } from './deps';

export interface HealthSources {
  db: Db;
  lists: ListStoreLike;
  /** The writer's counters; absent where the app runs without the real writer. */
  writerStats?: () => WriterStats;
  /** The browsing log's counters; absent when the log is off. */
  browsingLogStats?: () => BrowsingLogStats;
  /** The gateway's counters; null until the gateway is up (it starts after the admin API). */
  gatewayStats?: () => GatewayCounters | null;
  /** The RADIUS accounting listener's counters; absent without `radiusAccounting`. */
  radiusStats?: () => RadiusCounters | null;
}

const PING_MS = 5_000;

/**
 * Whether the database answers a trivial query in time. A hung server (or an embedded database
 * busy for longer than a scrape) counts as unreachable: the question is "would an incident be
 * stored now", not "is a socket open".
 */
export async function databaseReachable(db: Db): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      databaseAnswers(db),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), PING_MS);
      }),
    ]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A short digest naming the lists now serving, so a monitoring query can tell whether every
 * gateway runs the same lists and when they changed. Built from categories and entry counts,
 * never from list text.
 */
export function listVersion(lists: ListStoreLike): string {
  const r = lists.report;
  const h = createHash('sha256');
  h.update(String(r.entries));
  for (const c of r.categories) h.update(`\0${c.name}:${c.domains}:${c.urls}:${c.expressions}`);
  return h.digest('hex').slice(0, 12);
}

/**
 * One Prometheus registry per admin app (tests build several in one process, and the global
 * registry would make their metric names collide). Everything is read from counters that
 * already exist, in collect callbacks at scrape time: nothing is added to the request path.
 */
export function createMetrics(src: HealthSources): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'schoolgate_' });

  // Counters kept elsewhere are mirrored: reset then set to the source's running total.
  const mirror = (name: string, help: string, read: () => number | undefined) =>
    new Counter({
      name, help, registers: [registry],
      collect() {
        const v = read();
        this.reset();
        if (v !== undefined) this.inc(v);
      },
    });
  const gauge = (name: string, help: string, read: () => number | undefined | Promise<number | undefined>) =>
    new Gauge({
      name, help, registers: [registry],
      async collect() {
        const v = await read();
        if (v !== undefined) this.set(v);
      },
    });

  const gw = () => src.gatewayStats?.() ?? undefined;
  mirror('schoolgate_proxy_connections_total', 'Client connections accepted by the gateway', () => gw()?.connections);
  mirror('schoolgate_proxy_clients_refused_total', 'Client connections refused (address not in allowedClients)', () => gw()?.refused);
  mirror('schoolgate_proxy_requests_total', 'HTTP requests the gateway handled (plain and inside intercepted TLS)', () => gw()?.requests);
  mirror('schoolgate_proxy_blocked_total', 'Requests answered with a block page', () => gw()?.blocked);
  mirror('schoolgate_proxy_tunnels_total', 'CONNECTs tunnelled without decryption (bypass hosts)', () => gw()?.tunnels);
  mirror('schoolgate_proxy_intercepts_total', 'CONNECTs intercepted with a school-CA certificate', () => gw()?.intercepts);
  mirror('schoolgate_proxy_upstream_errors_total', 'Requests or tunnels whose upstream could not be reached', () => gw()?.upstreamErrors);
  mirror('schoolgate_proxy_destination_denied_total', 'Requests or CONNECTs refused for their destination (loopback, link-local, the gateway itself, a closed range or port)', () => gw()?.destinationDenied);
  mirror('schoolgate_proxy_timed_out_total', 'Client connections cut for slowness (headers, idle, TLS handshake)', () => gw()?.timedOut);
  mirror('schoolgate_proxy_too_many_connections_total', 'Client connections refused over the per-address cap', () => gw()?.tooManyConnections);

  const ws = () => src.writerStats?.();
  gauge('schoolgate_incidents_queued', 'Incidents in memory, not yet in the database or the spool', () => ws()?.queued);
  gauge('schoolgate_incidents_spooled', 'Incidents in the spool folder waiting for the database', () => ws()?.spooled);
  mirror('schoolgate_incidents_stored_total', 'Incidents (repeats included) the database accepted since start', () => ws()?.stored);
  mirror('schoolgate_incidents_dropped_total', 'Incidents lost: database and spool unavailable and the memory queue full', () => ws()?.dropped);
  mirror('schoolgate_incidents_rejected_total', 'Incidents the database refused (kept in spool/rejected.ndjson)', () => ws()?.rejected);
  mirror('schoolgate_incident_write_failures_total', 'Database writes that failed (each batch went to the spool)', () => ws()?.failures);
  mirror('schoolgate_incident_journal_failures_total', 'Journal appends that failed: those incidents were in memory only until stored', () => ws()?.journalFailures);

  const bl = () => src.browsingLogStats?.();
  gauge('schoolgate_browsing_log_pending', 'Browsing-log rows in memory, not yet stored', () => bl()?.pending);
  mirror('schoolgate_browsing_log_rows_stored_total', 'Browsing-log rows written (each an upsert of one person, host and minute)', () => bl()?.storedRows);
  mirror('schoolgate_browsing_log_requests_stored_total', 'Requests counted into stored browsing-log rows', () => bl()?.storedRequests);
  mirror('schoolgate_browsing_log_requests_dropped_total', 'Requests left out of the browsing log: memory full while the database was away', () => bl()?.droppedRequests);
  mirror('schoolgate_browsing_log_write_failures_total', 'Browsing-log flushes that failed (rows kept and retried)', () => bl()?.failures);

  // A controller sending with the wrong secret names nobody and logs at most once a minute: this is where it shows.
  if (src.radiusStats) {
    const rs = () => src.radiusStats?.() ?? undefined;
    gauge('schoolgate_radius_sessions', 'Addresses RADIUS accounting names a person for now', () => rs()?.sessions);
    mirror('schoolgate_radius_packets_accepted_total', 'RADIUS accounting packets verified with the shared secret and answered', () => rs()?.accepted);
    mirror('schoolgate_radius_packets_bad_secret_total', 'RADIUS packets dropped unanswered: the authenticator did not check out with the shared secret', () => rs()?.badSecret);
    mirror('schoolgate_radius_packets_malformed_total', 'UDP packets on the RADIUS port that were not RADIUS', () => rs()?.malformed);
    mirror('schoolgate_radius_packets_ignored_total', 'Verified RADIUS packets that were not accounting requests', () => rs()?.ignored);
  }

  gauge('schoolgate_database_up', '1 when the incident database answers, else 0', async () => ((await databaseReachable(src.db)) ? 1 : 0));

  gauge('schoolgate_lists_loaded', '1 when lists are loaded, 0 when the gateway is fail-closed', () => (src.lists.loaded ? 1 : 0));
  gauge('schoolgate_list_entries', 'Entries in the lists now serving', () => src.lists.report.entries);
  gauge('schoolgate_list_categories', 'Categories in the lists now serving', () => src.lists.report.categories.length);
  gauge('schoolgate_list_skipped_lines', 'List lines skipped as invalid in the last load', () =>
    src.lists.report.sources.reduce((n, s) => n + s.skippedCount, 0));
  let lastReload = Date.now() / 1000;
  (src.lists as Partial<Pick<EventEmitter, 'on'>>).on?.('reload', () => {
    lastReload = Date.now() / 1000;
  });
  gauge('schoolgate_lists_last_reload_timestamp_seconds', 'When the lists now serving were loaded (Unix time)', () => lastReload);
  new Gauge({
    name: 'schoolgate_list_version_info', help: 'Always 1; the version label names the lists now serving', labelNames: ['version'], registers: [registry],
    collect() {
      this.reset();
      this.set({ version: listVersion(src.lists) }, 1);
    },
  });
  return registry;
}
