/**
 * The browsing log's writer (issue 13, point 3): every request the gateway answers, allowed or
 * blocked, counted in memory per person × device × host × verdict × minute and written every
 * `flushMs` in one upsert (repos/browsing.ts), off the request path.
 *
 * It is not the incident record, and it is not made durable the way incidents are. A crash or a
 * kill loses what was counted since the last flush (at most one flush interval, a few seconds);
 * a database outage longer than memory allows loses the rows beyond `maxPending` (counted, and
 * logged once a minute). That is acceptable because nothing a safeguarding lead must act on lives
 * only here: every block and flagged search that matters is an incident, written to the journal
 * before its page is sent. The log is the DfE "websites visited" record and the context around an
 * incident; a few seconds missing from it hides nothing that was not also recorded as an incident.
 * Journalling every request instead would put a synchronous write on every page load in school.
 *
 * The request path costs two Map lookups and a few additions: no string is built, no promise
 * made; a new object only for the first request of a person to a host in a flush interval.
 */
import { silentLogger, type Logger } from '../core/log';
import type { Db } from '../db/types';
import { MAX_TERMS_PER_ROW, upsertBrowsingRows, type BrowsingRowInput } from '../repos/browsing';

/** Who made a request, as the gateway's hooks know them (structurally proxy/hooks.ts's Identity). */
export interface BrowsingIdentity {
  clientIp: string;
  user: string | null;
  device: string | null;
}

/** What the filter calls on the request path: synchronous, never throws. */
export interface BrowsingLogSink {
  /** A forwarded request, once its response is finished: `bytes` of response body. */
  allowed(who: BrowsingIdentity, host: string, bytes: number): void;
  /** A request answered with a block page (or refused WebSocket). */
  blocked(who: BrowsingIdentity, host: string, category: string | null, terms: string | null): void;
  /** The search terms of an allowed request, noted when it is decided (its bytes come later). */
  search(who: BrowsingIdentity, host: string, terms: string): void;
}

export interface BrowsingLogStats {
  /** Rows counted in memory, not yet stored. */
  pending: number;
  /** Rows (upserts) and requests the database accepted since start. */
  storedRows: number;
  storedRequests: number;
  /** Requests not logged: memory full while the database was away. */
  droppedRequests: number;
  /** Flushes that failed (their rows were kept, up to maxPending). */
  failures: number;
}

export interface BrowsingLogOptions {
  db: Db;
  logger?: Logger;
  /** Milliseconds between flushes (default 5000). */
  flushMs?: number;
  /** Rows held in memory at most (counted and waiting, or kept after a failed flush); beyond, requests are dropped and counted. */
  maxPending?: number;
  /** Clock, for tests. */
  now?: () => number;
}

const MINUTE_MS = 60_000;
const MAX_TERM_CHARS = 200;
const LOG_EVERY_MS = 60_000;

/** Counts for one person, device and host in one minute; `next` chains the same user on another device. */
interface Entry {
  clientIp: string;
  user: string | null;
  device: string | null;
  allowed: number;
  bytes: number;
  blocked: number;
  category: string | null;
  terms: string[] | null;
  next: Entry | null;
}

/** One minute's counts: person (user, else address) → host → entry. */
interface Bucket {
  minute: number;
  people: Map<string, Map<string, Entry>>;
}

export class BrowsingLog implements BrowsingLogSink {
  private readonly db: Db;
  private readonly log: Logger;
  private readonly flushMs: number;
  private readonly maxPending: number;
  private readonly now: () => number;
  private current: Bucket;
  /** Buckets whose minute has passed, waiting for the next flush. */
  private sealed: Bucket[] = [];
  /** Rows a failed flush kept, merged with the next one. */
  private retry = new Map<string, BrowsingRowInput>();
  /** Entries in the current and sealed buckets. */
  private entries = 0;
  /** Rows of the write in progress. */
  private inFlight = 0;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private lastWarn = 0;
  private closed = false;
  private readonly counters: Omit<BrowsingLogStats, 'pending'> = { storedRows: 0, storedRequests: 0, droppedRequests: 0, failures: 0 };

  constructor(opts: BrowsingLogOptions) {
    this.db = opts.db;
    this.log = opts.logger ?? silentLogger;
    this.flushMs = opts.flushMs ?? 5000;
    this.maxPending = opts.maxPending ?? 200_000;
    this.now = opts.now ?? Date.now;
    this.current = { minute: this.minuteOf(this.now()), people: new Map() };
  }

  start(): this {
    if (!this.timer && !this.closed) {
      this.timer = setInterval(() => void this.flush(), this.flushMs);
      this.timer.unref();
    }
    return this;
  }

  stats(): BrowsingLogStats {
    return { pending: this.pending(), ...this.counters };
  }

  /** What memory holds: counted entries, the write in progress, and rows kept from a failed one. */
  private pending(): number {
    return this.entries + this.inFlight + this.retry.size;
  }

  allowed(who: BrowsingIdentity, host: string, bytes: number): void {
    const e = this.entry(who, host);
    if (e === null) return;
    e.allowed++;
    e.bytes += bytes;
  }

  blocked(who: BrowsingIdentity, host: string, category: string | null, terms: string | null): void {
    const e = this.entry(who, host);
    if (e === null) return;
    e.blocked++;
    if (category !== null) e.category = category;
    if (terms !== null) this.addTerms(e, terms);
  }

  search(who: BrowsingIdentity, host: string, terms: string): void {
    // The request itself is counted when its response is done; this only keeps what was searched.
    const e = this.entry(who, host, false);
    if (e !== null) this.addTerms(e, terms);
  }

  private addTerms(e: Entry, terms: string): void {
    const t = terms.length > MAX_TERM_CHARS ? terms.slice(0, MAX_TERM_CHARS) : terms;
    if (e.terms === null) {
      e.terms = [t];
      return;
    }
    // Type-ahead sends "sel", "self", "self h"...: the longer search replaces the one it extends.
    const last = e.terms.length - 1;
    if (t.startsWith(e.terms[last])) e.terms[last] = t;
    else if (e.terms.length < MAX_TERMS_PER_ROW && !e.terms.includes(t)) e.terms.push(t);
  }

  private minuteOf(ms: number): number {
    return ms - (ms % MINUTE_MS);
  }

  /** The entry for this request's person, device and host this minute, or null when memory is full (the request is counted as dropped). */
  private entry(who: BrowsingIdentity, host: string, counts = true): Entry | null {
    const minute = this.minuteOf(this.now());
    if (minute !== this.current.minute) this.rotate(minute);
    const person = who.user ?? who.clientIp;
    let hosts = this.current.people.get(person);
    if (hosts === undefined) {
      if (this.pending() >= this.maxPending) return this.drop(counts);
      hosts = new Map();
      this.current.people.set(person, hosts);
    }
    const first = hosts.get(host) ?? null;
    let e = first;
    while (e !== null && e.device !== who.device) e = e.next;
    if (e !== null) {
      e.clientIp = who.clientIp;
      return e;
    }
    if (this.pending() >= this.maxPending) return this.drop(counts);
    this.entries++;
    const made: Entry = { clientIp: who.clientIp, user: who.user, device: who.device, allowed: 0, bytes: 0, blocked: 0, category: null, terms: null, next: first };
    hosts.set(host, made);
    return made;
  }

  private drop(counts: boolean): null {
    if (counts) this.counters.droppedRequests++;
    return null;
  }

  private rotate(minute: number): void {
    if (this.current.people.size) this.sealed.push(this.current);
    this.current = { minute, people: new Map() };
  }

  /**
   * Writes everything counted so far in one statement. Concurrent calls share one write; a failed
   * write keeps its rows for the next (bounded by maxPending) and never throws.
   */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => this.flushOnce());
    return this.flushOnce();
  }

  private flushOnce(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.rotate(this.minuteOf(this.now()));
    const buckets = this.sealed;
    this.sealed = [];
    if (!buckets.length && !this.retry.size) return Promise.resolve();
    const rows = this.retry;
    this.retry = new Map();
    for (const b of buckets) {
      for (const hosts of b.people.values()) {
        for (const [host, first] of hosts) {
          for (let e: Entry | null = first; e !== null; e = e.next) {
            if (e.allowed > 0 || (e.blocked === 0 && e.terms !== null)) merge(rows, b.minute, host, e, 'allowed');
            if (e.blocked > 0) merge(rows, b.minute, host, e, 'blocked');
          }
        }
      }
    }
    // From here the merged rows are what memory holds of these entries.
    const batch = [...rows.values()];
    this.entries -= countEntries(buckets);
    this.inFlight = batch.length;
    this.flushing = upsertBrowsingRows(this.db, batch).then(
      () => {
        this.inFlight = 0;
        this.counters.storedRows += batch.length;
        for (const r of batch) this.counters.storedRequests += r.requests;
      },
      (err) => {
        this.counters.failures++;
        this.inFlight = 0;
        // Keep what fits beside what was counted meanwhile; the newest minutes first, as the
        // timeline being read now needs those more than the oldest.
        let room = Math.max(0, this.maxPending - this.entries - this.retry.size);
        for (let i = batch.length - 1; i >= 0; i--) {
          const r = batch[i];
          if (room > 0) {
            this.retry.set(rowKey(r), r);
            room--;
          } else this.counters.droppedRequests += r.requests;
        }
        const now = this.now();
        if (now - this.lastWarn >= LOG_EVERY_MS) {
          this.lastWarn = now;
          this.log.warn(
            { code: 'SG_ERR_BROWSING_LOG', err: (err as Error).message, kept: this.retry.size, dropped: this.counters.droppedRequests },
            'browsing log not written; rows kept in memory and retried',
          );
        }
      },
    ).finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  /** Stops the timer and writes what is left (once; a database still away loses it, as a crash would). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }
}

const rowKey = (r: BrowsingRowInput) => `${r.minute.getTime()}\u0000${r.person}\u0000${r.device}\u0000${r.host}\u0000${r.verdict}`;

function countEntries(buckets: Bucket[]): number {
  let n = 0;
  for (const b of buckets) for (const hosts of b.people.values()) for (const first of hosts.values()) for (let e: Entry | null = first; e !== null; e = e.next) n++;
  return n;
}

/** Adds one entry's counts to the row for its key (different Identity objects, or a retried row, may share one). */
function merge(rows: Map<string, BrowsingRowInput>, minute: number, host: string, e: Entry, verdict: 'allowed' | 'blocked'): void {
  const person = (e.user ?? e.clientIp).toLowerCase();
  const device = e.device ?? '';
  const key = `${minute}\u0000${person}\u0000${device}\u0000${host}\u0000${verdict}`;
  const requests = verdict === 'allowed' ? e.allowed : e.blocked;
  const bytes = verdict === 'allowed' ? e.bytes : 0;
  const category = verdict === 'blocked' ? e.category : null;
  const row = rows.get(key);
  if (row === undefined) {
    rows.set(key, { minute: new Date(minute), person, device, host, verdict, clientIp: e.clientIp, category, requests, bytes, searchTerms: e.terms ? [...e.terms] : null });
    return;
  }
  row.requests += requests;
  row.bytes += bytes;
  row.clientIp = e.clientIp;
  if (category !== null) row.category = category;
  if (e.terms) {
    row.searchTerms ??= [];
    for (const t of e.terms) if (row.searchTerms.length < MAX_TERMS_PER_ROW && !row.searchTerms.includes(t)) row.searchTerms.push(t);
  }
}
