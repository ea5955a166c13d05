import type { EventEmitter } from 'node:events';
import type { Config } from '../core/config';
import type { Logger } from '../core/log';
import type { Db } from '../db/types';
import type { IncidentSink } from '../incidents/types';
import type { ListStoreLike, ListSync } from './list-sync';
import type { PhraseSync } from './phrase-sync';

export type { ListStoreLike, OverrideEntry } from './list-sync';

/**
 * What the admin API needs from the incident writer and the list store, written structurally so
 * the real `IncidentWriter` (incidents/writer.ts) and `ListStore` (blocklists/store.ts) fit as they are.
 */
export interface IncidentWriterLike extends IncidentSink, Pick<EventEmitter, 'on' | 'off'> {
  /** Resolves when everything recorded so far is stored (or safely spooled). */
  flush(): Promise<void>;
}

/** The slice of a nodemailer transport the alerts use; tests may pass their own transport. */
export interface Mailer {
  sendMail(message: { from: string; to: string[]; subject: string; text: string }): Promise<unknown>;
}

export interface AdminDeps {
  config: Config;
  db: Db;
  incidents: IncidentWriterLike;
  lists: ListStoreLike;
  /**
   * The list state shared with the process's own list sync (server/start.ts makes both from one).
   * Without it the app makes its own over `lists`, with the config's policy groups: tests that
   * run no sync beside it.
   */
  listSync?: ListSync;
  /**
   * The safeguarding phrases shared with the process's gateway (server/start.ts). Without it the
   * app makes its own over the shipped lists: tests that run no gateway beside it.
   */
  phraseSync?: PhraseSync;
  logger: Logger;
  referenceSecret: Buffer;
  /** The school CA certificate (PEM) served at /ca.crt. */
  caCertPem?: () => string;
  /** Overrides the SMTP transport built from config.smtp. */
  mailer?: Mailer;
  /** The incident writer's counters, for /healthz and /metrics (IncidentWriter.stats). */
  writerStats?: () => import('../incidents/types').WriterStats;
  /** The browsing log's counters for /metrics; absent when the log is off. */
  browsingLogStats?: () => import('../incidents/browsing-log').BrowsingLogStats;
  /** The gateway's counters for /metrics; null until the gateway listens (it starts after the admin API). */
  gatewayStats?: () => GatewayCounters | null;
  /** The RADIUS accounting listener's counters; absent without `radiusAccounting`, null until it listens. */
  radiusStats?: () => RadiusCounters | null;
  /** Login attempts allowed per client IP and email per minute (default 10). */
  loginRateLimit?: number;
  /** Login attempts allowed per client IP per minute, whatever the email (default 100). */
  loginIpRateLimit?: number;
}

export interface AdminContext extends AdminDeps {
  listSync: ListSync;
  phraseSync: PhraseSync;
  /** Emits 'incident' and 'alert' with incident JSON for the server-sent event streams. */
  hub: EventEmitter;
}

/** The RADIUS accounting listener's counters /metrics reads (structurally filter/radius.ts's). */
export interface RadiusCounters {
  accepted: number;
  badSecret: number;
  malformed: number;
  ignored: number;
  sessions: number;
}

/** The gateway's counters /metrics reads (structurally the gateway's own stats). */
export interface GatewayCounters {
  connections: number;
  refused: number;
  requests: number;
  blocked: number;
  tunnels: number;
  intercepts: number;
  upstreamErrors: number;
  destinationDenied: number;
  timedOut: number;
  tooManyConnections: number;
}
