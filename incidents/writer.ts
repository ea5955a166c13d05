import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { SchoolgateError } from '../core/errors';
import { siteOf } from '../core/host';
import { silentLogger, type Logger } from '../core/log';
import { classifyDbError } from '../db/errors';
import { Journal } from './journal';
import { Spool, type SpoolSegment } from './spool';
import type { Db } from '../db/types';
import { ConcurrentKeyError, foldKeyOf, writeBatch, type IncidentRecord } from '../repos/incidents';
import { IDENTITY_SOURCES, INCIDENT_KINDS, REPEAT_WINDOW_MS, TIERS, type IncidentInput, type IncidentKind, type IncidentRow, type IncidentSink, type Tier, type WriterStats } from './types';

/**
 * The incident writer: what the gateway and the admin API hand incidents to.
 *
 * `record()` only validates and queues (no I/O, no await, no throw). A single pump writes queued
 * incidents in batches, one transaction each; when the database fails, the batch goes to an
 * fsync'd spool file instead and the pump replays the spool once the database answers again —
 * after a crash and restart too. Every incident carries an idempotency key, and the keys of
 * repeats folded into another row are kept in `incident_folds`, so a batch that is written twice
 * (sent, connection lost before the COMMIT reply, spooled, replayed) is counted exactly once, and
 * announced once: by the retry that finds its keys already stored (see `Rec.u`).
 *
 * Events: 'stored' (rows: IncidentRow[]) for new incidents, 'repeated' (rows: IncidentRow[]) for
 * existing incidents whose count went up, 'rejected' (count) for incidents the database refused.
 *
 * Where an incident is, and the rules that move it (#11 points 9 and 10):
 *   1. record(): validated, queued, and appended to the journal (journal.ts) with a synchronous
 *      write before it returns, so the gateway's block page goes out only once the incident is in
 *      the operating system's hands. The journal is fsync'd in groups (journalFsyncMs).
 *   2. The pump takes batches from the queue in order. HEALTHY: a batch goes to the database.
 *      A write that fails for want of the database (or times out) makes the writer DEGRADED and
 *      backs off (100 ms doubling to retryMaxMs), and the batch goes to the fsync'd spool.
 *   3. DEGRADED: batches go to the spool, except that once the backoff is over the next batch is
 *      tried on the database first; success makes the writer HEALTHY again. The database is
 *      retried this way whether or not the spool works, so a spool that cannot be written
 *      (full disk, permissions) never keeps incidents from a database that is back.
 *   4. A batch neither the database nor the spool takes goes back to the head of the queue (at most
 *      maxQueued held; beyond that new incidents are dropped, counted and logged) and waits for
 *      the next retry; it is still in the journal. Repeating failures are logged once per 10 s.
 *   5. Once every incident up to sequence N is in the database or the spool, the journal drops
 *      its segments up to N (durableSeq). The spool replays its segments (its own, those of
 *      writers that are gone, and journal segments of writers that are gone, which the journal
 *      hands to it at start) interleaved with new batches, and deletes each once stored.
 *   6. Replays are exactly-once by idempotency key (ON CONFLICT DO NOTHING, incident_folds). A
 *      torn spool line (crash or full disk mid-append) is reported in spool/rejected.ndjson and
 *      never takes a whole record with it (spool.ts).
 *
 * This file is the queue and the pump only; the SQL of a batch (dedup by key, folding repeats,
 * the insert) is repos/incidents.ts `writeBatch`. The pump's state machine, in its fields:
 *
 *   Pump       IDLE        pumping = null, no timer, no retryTimer
 *              SCHEDULED   timer set: a kick(flushMs) waits for company for the queued records
 *              PUMPING     pumping = the running pump(); rerun = true when kicked meanwhile
 *              RETRYING    retryTimer set: nothing can progress before retryAt
 *              CLOSED      closed = true (after close()): no timer, no new pump
 *   Database   HEALTHY     degraded = false: batches go to the database
 *              DEGRADED    degraded = true: batches go to the spool until retryAt, then the next
 *                          batch (or replay chunk) tries the database; retryMs doubles to retryMaxMs
 *   Replay     replay = null, or the spool segment being replayed and the position reached in it
 *
 *   What moves it:
 *     record()          queues, journals, kick(0 when a full batch is queued, else flushMs):
 *                       IDLE -> SCHEDULED or PUMPING; PUMPING: rerun = true
 *     timer fires       SCHEDULED -> PUMPING (or rerun, if a pump started meanwhile)
 *     pump() loop       takes a batch: stored -> HEALTHY; database failed -> DEGRADED + backoff,
 *                       batch spooled; spool failed too -> batch back at the queue's head, RETRYING.
 *                       Then one replay step if there is spool work and the backoff allows.
 *                       Loops while either made progress or rerun is set; leaves RETRYING when
 *                       degraded or spool work remains, and finally IDLE/SCHEDULED (queued work
 *                       with no retry pending is kicked again).
 *     retryTimer fires  RETRYING -> kick(0) -> PUMPING
 *     drained()         retryAt = 0 and kick(0): a caller waiting for the database skips the backoff
 *     close()           flush (bounded), CLOSED, waits for the pump, spools what is left
 *                       synchronously; record() after that appends straight to the spool
 *
 *   Invariants:
 *     - At most one pump() runs (pumping); a kick while it runs only sets rerun.
 *     - durableSeq <= recordedSeq; every record up to durableSeq is in the database or the fsync'd
 *       spool, and the journal holds every record after it. flush() waiters resolve on durableSeq.
 *     - Order is kept: a batch nobody took goes back to the head of the queue, never the tail.
 *     - queued + inFlight <= maxQueued: beyond it the newest record is dropped and counted.
 *     - DEGRADED never stops the database being tried: once retryAt passes, the next write goes
 *       to it whether or not the spool works.
 *     - drained() is true exactly when nothing is queued, nothing is spooled and HEALTHY.
 */

/** The queue's wire form; also one line of the spool (the repository's batch record). */
export type Rec = IncidentRecord;

const KINDS = new Set<IncidentKind>(INCIDENT_KINDS);
const SEVERITIES = new Set<string>(TIERS);
const SOURCES = new Set<string>(IDENTITY_SOURCES);

/** Limits keep one absurd URL from breaking an index row (btree rows max out near 2.7 kB). */
const LIMITS = { url: 2000, search: 1000, note: 8000, short: 255 };

function clean(v: unknown, max: number): string | null {
  if (v === undefined || v === null) return null;
  let s = typeof v === 'string' ? v : String(v);
  // PostgreSQL text cannot hold NUL; one such byte would make the whole batch fail forever.
  if (s.includes('\u0000')) s = s.replaceAll('\u0000', '');
  if (s.length > max) s = s.slice(0, max);
  return s.length ? s : null;
}

export interface IncidentWriterOptions {
  db: Db;
  dataDir: string;
  logger?: Logger;
  /** Default `gateway` for incidents that name none. */
  gateway?: string;
  /** Most incidents taken from the queue at once (default 4000), split across the lanes. */
  batchSize?: number;
  /** How long a lone incident waits for company before it is written (default 5 ms). */
  flushMs?: number;
  /** Repeats (foldKeyOf: same kind, severity, person and site or search) within this window of the last fold into one incident (default 30 minutes). */
  repeatWindowMs?: number;
  /** Longest wait between attempts to reach a database that is down (default 5 s). */
  retryMaxMs?: number;
  /** A write that takes longer than this is treated as a lost connection (default 30 s). */
  writeTimeoutMs?: number;
  /** Transactions a large batch is split across, in parallel (default 4; PGlite runs them in turn). */
  lanes?: number;
  /**
   * Most incidents held in memory (queued or in a write under way) while neither the database
   * nor the spool takes them (default 100,000, some tens of MB); what comes beyond is dropped,
   * counted and logged, rather than growing until the process runs out of memory.
   */
  maxQueued?: number;
  /**
   * Milliseconds between group fsyncs of the incident journal (default 50; 0: fsync every
   * incident). Every incident is written to the journal before record() returns either way.
   */
  journalFsyncMs?: number;
}

type Failure = 'unavailable' | 'retry' | 'data';

/**
 * What a failed write means to the writer, from db/errors.ts's classification. 'data': this batch
 * holds a record the database refuses ('refused'): isolate it. 'retry': a race lost, try again at
 * once. 'unavailable': the database cannot be reached, or the statement fails whatever the data
 * (a missing table after a bad deploy) — spool and wait, because retrying later can succeed and
 * nothing is set aside for a human.
 */
export function classifyError(err: unknown): Failure {
  if (err instanceof ConcurrentKeyError) return 'retry';
  const kind = classifyDbError(err);
  return kind === 'retry' ? 'retry' : kind === 'refused' ? 'data' : 'unavailable';
}

/** A failure that repeats (database down, spool not writable) is logged at most this often. */
const LOG_EVERY_MS = 10_000;

/** Below this, a batch is not worth a second transaction. */
const MIN_LANE_BATCH = 200;

function laneOf(key: string, lanes: number): number {
  let h = 0x811c9dc5; // FNV-1a: cheap and evenly spread, nothing here needs more
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) % lanes;
}

/** A spool line written by this code; anything else is set aside rather than sent to the database. */
function isRec(v: unknown): v is Rec {
  const r = v as Rec;
  return typeof v === 'object' && v !== null && typeof r.k === 'string' && r.k.length > 0 && typeof r.t === 'number' && Number.isFinite(r.t) && KINDS.has(r.kind);
}

/** A write given up on: the database may still commit it, so its outcome is unknown. */
class WriteTimeout extends SchoolgateError {
  constructor(ms: number) {
    super('SG_ERR_DB_UNAVAILABLE', `write took longer than ${ms} ms`);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new WriteTimeout(ms)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export class IncidentWriter extends EventEmitter implements IncidentSink {
  private readonly db: Db;
  private readonly logger: Logger;
  private readonly gateway: string | null;
  private readonly batchSize: number;
  private readonly flushMs: number;
  private readonly windowMs: number;
  private readonly retryMaxMs: number;
  private readonly writeTimeoutMs: number;
  private readonly lanes: number;
  private readonly maxQueued: number;
  private readonly spool: Spool;
  private readonly journal: Journal;

  /** Records not yet taken start at `head`: taking a batch must not copy a long backlog each time. */
  private queue: Rec[] = [];
  private head = 0;
  /** Records taken from the queue by a write under way: they go back to it if nothing takes them. */
  private inFlight = 0;
  /** When the last SG_ERR_INCIDENT_DROPPED line was logged: one a while, not one per incident. */
  private droppedLoggedAt = 0;
  /** Records with a key made here and not yet sent to the database: no need to look them up. */
  private readonly neverSent = new WeakSet<Rec>();
  /** Sequence numbers: everything up to `durableSeq` is in the database or the fsync'd spool. */
  private recordedSeq = 0;
  private durableSeq = 0;
  private waiters: Array<{ seq: number; resolve: () => void }> = [];
  private drainWaiters: Array<() => void> = [];

  private timer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private pumping: Promise<void> | null = null;
  private rerun = false;
  /** The database failed the last write: new batches go to the spool until a write succeeds. */
  private degraded = false;
  private retryMs = 100;
  private retryAt = 0;
  private started = false;
  private closing: Promise<void> | null = null;
  private closed = false;
  /** Position inside the segment being replayed, so a failure resumes instead of restarting. */
  private replay: { seg: SpoolSegment; recs: Rec[]; pos: number } | null = null;

  private counters = { stored: 0, failures: 0, rejected: 0, dropped: 0 };
  /** When each rate-limited failure was last logged (see logLimited). */
  private readonly loggedAt = new Map<string, number>();

  constructor(opts: IncidentWriterOptions) {
    super();
    this.db = opts.db;
    this.logger = opts.logger ?? silentLogger;
    this.gateway = opts.gateway ?? null;
    this.batchSize = Math.max(1, opts.batchSize ?? 4000);
    this.flushMs = Math.max(0, opts.flushMs ?? 5);
    this.windowMs = opts.repeatWindowMs ?? REPEAT_WINDOW_MS;
    this.retryMaxMs = opts.retryMaxMs ?? 5000;
    this.writeTimeoutMs = opts.writeTimeoutMs ?? 30_000;
    this.lanes = Math.max(1, Math.min(8, opts.lanes ?? 4));
    this.maxQueued = Math.max(1, opts.maxQueued ?? 100_000);
    this.spool = new Spool(opts.dataDir, this.logger);
    this.journal = new Journal(opts.dataDir, this.logger, { fsyncMs: opts.journalFsyncMs });
  }

  /**
   * Opens the journal and the spool, and replays whatever a previous run left in either (the
   * journal's segments are handed to the spool first). Called by record() if needed.
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    try {
      this.journal.open();
      this.journal.handOver(this.spool.dir);
    } catch (err) {
      // Without a journal incidents still reach the database and the spool; only a crash can lose them.
      this.logger.error({ err: (err as Error).message, code: 'SG_ERR_JOURNAL' }, 'incident journal unavailable');
    }
    if (this.spool.open() > 0) this.kick(0);
  }

  record(input: IncidentInput): string {
    const given = clean(input?.idempotencyKey, LIMITS.short);
    const key = given ?? randomUUID();
    if (!this.started) {
      try {
        this.start();
      } catch (err) {
        // No spool (data folder not writable): keep recording straight to the database.
        this.logger.error({ err, code: 'SG_ERR_SPOOL' }, 'incident spool unavailable');
      }
    }
    try {
      const at = input.occurredAt instanceof Date && !Number.isNaN(input.occurredAt.getTime()) ? input.occurredAt.getTime() : Date.now();
      let kind = input.kind;
      let note = clean(input.note, LIMITS.note);
      if (!KINDS.has(kind)) {
        // Losing an incident is worse than filing it under the wrong heading: keep it, say why.
        this.logger.error({ code: 'SG_ERR_VALIDATION', kind }, 'incident with unknown kind recorded as blocked');
        note = clean(`[unknown kind ${String(kind)}] ${note ?? ''}`, LIMITS.note);
        kind = 'blocked';
      }
      // An unknown tier is queued as 'incident': the DSL sees it, and the database's CHECK never refuses it.
      const sev: Tier = typeof input.severity === 'string' && SEVERITIES.has(input.severity) ? input.severity : 'incident';
      const host = clean(input.host, LIMITS.short);
      const rec: Rec = {
        k: key,
        t: at,
        kind,
        user: clean(input.user, LIMITS.short),
        device: clean(input.device, LIMITS.short),
        ip: clean(input.clientIp, LIMITS.short),
        gw: clean(input.gateway, LIMITS.short) ?? this.gateway,
        url: clean(input.url, LIMITS.url),
        host,
        cat: clean(input.category, LIMITS.short),
        group: clean(input.policyGroup, LIMITS.short),
        search: clean(input.searchTerms, LIMITS.search),
        note,
        rel: clean(input.relatedKey, LIMITS.short),
        sev,
        site: kind === 'blocked' && host ? siteOf(host) : null,
      };
      // Only when there is one: journal and spool lines stay as short as before for every block.
      const phrase = clean(input.matchedPhrase, LIMITS.short);
      if (phrase) rec.ph = phrase;
      // A value outside the vocabulary is left out rather than refused by the column's CHECK with its incident.
      if (typeof input.identitySource === 'string' && SOURCES.has(input.identitySource)) rec.src = input.identitySource;
      if (this.closed) {
        this.spool.appendSync([JSON.stringify(rec)]);
        return key;
      }
      if (this.queued + this.inFlight >= this.maxQueued) {
        // The newest is dropped: what is kept runs unbroken from the start of the outage.
        this.dropped(key);
        return key;
      }
      if (!given) this.neverSent.add(rec);
      this.queue.push(rec);
      this.recordedSeq++;
      // Before returning: the caller answers (sends the block page) once record() is done.
      this.journal.append(JSON.stringify(rec), this.recordedSeq);
      this.kick(this.queued >= this.batchSize ? 0 : this.flushMs);
    } catch (err) {
      this.logger.error({ err, key }, 'incident could not be queued');
    }
    return key;
  }

  /** Resolves when everything recorded before the call is in the database or fsync'd in the spool. */
  flush(): Promise<void> {
    const seq = this.recordedSeq;
    if (this.durableSeq >= seq) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.push({ seq, resolve });
      this.kick(0);
    });
  }

  /** Resolves when nothing is queued or spooled: everything recorded is in the database. */
  drained(timeoutMs = 60_000): Promise<boolean> {
    if (this.isDrained()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.drainWaiters = this.drainWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(t);
        resolve(true);
      };
      this.drainWaiters.push(done);
      this.retryAt = 0;
      this.kick(0);
    });
  }

  stats(): WriterStats {
    return {
      // A batch in a write under way is still only in memory: counted, or a retry would hide it.
      queued: this.queued + this.inFlight,
      spooled: this.spool.pending - (this.replay?.pos ?? 0),
      stored: this.counters.stored,
      failures: this.counters.failures,
      rejected: this.counters.rejected,
      dropped: this.counters.dropped,
      journalFailures: this.journal.failures,
    };
  }

  private dropped(key: string): void {
    this.counters.dropped++;
    const now = Date.now();
    if (now - this.droppedLoggedAt < 10_000) return;
    this.droppedLoggedAt = now;
    this.logger.error(
      { code: 'SG_ERR_INCIDENT_DROPPED', key, dropped: this.counters.dropped, maxQueued: this.maxQueued },
      'incident dropped: database and spool unavailable and the in-memory queue is full',
    );
  }

  /**
   * Writes out what is queued (to the database or the spool) and stops; spooled incidents stay for
   * the next start. Bounded in time so a shutdown never hangs on a dead database.
   */
  close(timeoutMs = 15_000): Promise<void> {
    this.closing ??= this.shutdown(timeoutMs);
    return this.closing;
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)));
    await Promise.race([this.flush(), deadline]);
    this.closed = true; // no new pump from here on
    if (this.timer) clearTimeout(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.timer = this.retryTimer = null;
    await Promise.race([this.pumping ?? Promise.resolve(), deadline]);
    clearTimeout(timer);
    if (this.queued > 0) {
      // Recorded while we were closing, or held because nothing could take them: straight to the spool.
      const rest = this.takeBatch(Infinity);
      try {
        this.spool.appendSync(rest.map((r) => JSON.stringify(r)));
        this.durableSeq += rest.length;
      } catch (err) {
        this.logger.fatal({ err, code: 'SG_ERR_SPOOL', incidents: rest.length }, 'incidents lost at shutdown: database down and spool not writable');
      }
    }
    await this.spool.close();
    this.settleWaiters();
    // What neither the database nor the spool took stays in the journal for the next start.
    this.journal.close(this.durableSeq >= this.recordedSeq);
  }

  private get queued(): number {
    return this.queue.length - this.head;
  }

  private takeBatch(max: number): Rec[] {
    const batch = this.queue.slice(this.head, this.head + max);
    this.head += batch.length;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 65_536 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return batch;
  }

  private isDrained(): boolean {
    return this.queued === 0 && !this.degraded && !this.hasSpoolWork();
  }

  private hasSpoolWork(): boolean {
    return this.replay !== null || this.spool.hasData;
  }

  private kick(delayMs: number): void {
    if (this.closed) return;
    if (this.pumping) {
      this.rerun = true;
      return;
    }
    if (delayMs <= 0) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.pumping = this.pump();
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.pumping) this.pumping = this.pump();
      else this.rerun = true;
    }, delayMs);
  }

  private async pump(): Promise<void> {
    // Let the caller's synchronous burst finish queuing before the first batch is cut.
    await new Promise<void>((r) => setImmediate(r));
    try {
      for (;;) {
        this.rerun = false;
        let progressed = false;
        if (this.queued > 0) {
          const batch = this.takeBatch(this.batchSize);
          let ok = false;
          this.inFlight = batch.length;
          try {
            ok = await this.handleBatch(batch);
          } catch (err) {
            this.logger.error({ err }, 'incident batch could not be handled; keeping it in memory');
          } finally {
            this.inFlight = 0;
          }
          if (!ok) {
            // The spool cannot be written either: keep the batch in memory and try again later.
            this.queue = batch.concat(this.queue.slice(this.head));
            this.head = 0;
            this.scheduleRetry();
            break;
          }
          this.durableSeq += batch.length;
          this.settleWaiters();
          progressed = true;
        }
        // Replay interleaves with new batches, so steady traffic can never starve it.
        if (this.hasSpoolWork() && (!this.degraded || Date.now() >= this.retryAt)) {
          if (await this.replayStep()) progressed = true;
        }
        if (progressed) continue;
        if (this.degraded || this.hasSpoolWork()) this.scheduleRetry();
        if (!this.rerun) break;
      }
    } catch (err) {
      this.logger.error({ err }, 'incident writer pump failed');
      this.scheduleRetry();
    } finally {
      this.pumping = null;
      this.settleWaiters();
      if (this.queued > 0 && !this.retryTimer) this.kick(this.flushMs);
    }
  }

  private settleWaiters(): void {
    this.journal.commit(this.durableSeq);
    if (this.waiters.length) {
      const still: typeof this.waiters = [];
      for (const w of this.waiters) (this.durableSeq >= w.seq ? w.resolve : () => still.push(w))();
      this.waiters = still;
    }
    if (this.drainWaiters.length && this.isDrained()) {
      const ws = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of ws) w();
    }
  }

  private scheduleRetry(): void {
    if (this.closed || this.retryTimer) return;
    const wait = Math.max(0, this.retryAt - Date.now()) || this.retryMs;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.kick(0);
    }, wait);
    this.retryTimer.unref();
  }

  private backoff(): void {
    this.retryAt = Date.now() + this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, this.retryMaxMs);
  }

  /** Returns false only when the batch is neither in the database nor in the spool. */
  private async handleBatch(batch: Rec[]): Promise<boolean> {
    // While degraded, the database is tried again once its backoff is over, whether or not the
    // spool works: with a spool that cannot be written there is no spool replay to find out that
    // the database is back, and the incidents would wait in memory for ever.
    if (!this.degraded || Date.now() >= this.retryAt) {
      const wasDegraded = this.degraded;
      const outcome = await this.store(batch);
      if (outcome === 'stored') {
        if (wasDegraded) this.logger.info('incident database reachable again');
        this.degraded = false;
        this.retryMs = 100;
        return true;
      }
      this.degraded = true;
      this.backoff();
    }
    try {
      await this.spool.append(batch.map((r) => JSON.stringify(r)));
      return true;
    } catch (err) {
      this.logLimited('spool', () =>
        this.logger.error({ err: (err as Error)?.message, code: 'SG_ERR_SPOOL', incidents: batch.length, queued: this.queued + batch.length }, 'database down and spool not writable; holding incidents in memory'),
      );
      return false;
    }
  }

  /** One line per kind of failure per LOG_EVERY_MS: a loop retrying every 100 ms must not flood the log. */
  private logLimited(what: string, log: () => void): void {
    const now = Date.now();
    const last = this.loggedAt.get(what);
    if (last !== undefined && now - last < LOG_EVERY_MS) return;
    this.loggedAt.set(what, now);
    log();
  }

  /**
   * Writes to the database. 'stored' means every record is in it (or set aside as rejected);
   * 'unavailable' means none of the remaining ones are, and the caller must spool them.
   */
  private async store(recs: Rec[]): Promise<'stored' | 'unavailable'> {
    if (this.lanes < 2 || recs.length < 2 * MIN_LANE_BATCH) return this.storeLane(recs);
    // Lanes split by repeat key (else idempotency key): a repeat and the row it folds into always
    // meet in one transaction, so parallel lanes never race to create the same incident twice.
    const parts: Rec[][] = Array.from({ length: this.lanes }, () => []);
    for (const r of recs) parts[laneOf(foldKeyOf(r) ?? r.k, this.lanes)].push(r);
    const outcomes = await Promise.all(parts.filter((p) => p.length > 0).map((p) => this.storeLane(p)));
    // A lane that failed sends the whole batch to the spool; replay skips what the other lane stored.
    return outcomes.every((o) => o === 'stored') ? 'stored' : 'unavailable';
  }

  private async storeLane(recs: Rec[]): Promise<'stored' | 'unavailable'> {
    for (let attempt = 0; ; attempt++) {
      try {
        const pending = writeBatch(this.db, recs, this.windowMs, (r) => this.neverSent.has(r));
        // From here on the outcome may be unknown (a lost COMMIT reply): look them up next time.
        for (const r of recs) this.neverSent.delete(r);
        // A write given up on may still commit: the retry of its records (marked below) then finds
        // them stored and announces them, so nothing is announced from here, late, a second time.
        pending.catch(() => {});
        const r = await withTimeout(pending, this.writeTimeoutMs);
        for (const rec of recs) if (rec.u) rec.u = undefined; // announced by this write if it was news
        this.noteStored(recs.length, r);
        this.retryMs = 100;
        return 'stored';
      } catch (err) {
        const kind = classifyError(err);
        if (kind === 'retry' && attempt < 3) continue;
        if (kind === 'unavailable' || kind === 'retry') {
          // The outcome is unknown: the COMMIT may have reached the server and only its reply was lost.
          for (const rec of recs) rec.u = 1;
          this.counters.failures++;
          this.logLimited('db', () =>
            this.logger.warn({ err: (err as Error)?.message, code: 'SG_ERR_DB_UNAVAILABLE', incidents: recs.length, failures: this.counters.failures }, 'incident database write failed; spooling'),
          );
          return 'unavailable';
        }
        // Bad data (or a race lost repeatedly): find the culprits one by one, keep the rest.
        if (recs.length > 1) {
          for (const r of recs) {
            // If the database goes away half-way, the whole batch is spooled: the ones already
            // stored are skipped by their idempotency keys on replay.
            if ((await this.storeLane([r])) === 'unavailable') return 'unavailable';
          }
          return 'stored';
        }
        this.counters.rejected++;
        this.logger.error({ err: (err as Error)?.message, code: 'SG_ERR_INCIDENT_REJECTED', key: recs[0].k }, 'incident refused by the database');
        try {
          this.spool.reject([{ error: (err as Error)?.message ?? String(err), record: recs[0] }]);
        } catch (spoolErr) {
          // Who it concerns stays out of the service log (issue 11, point 8); at debug it is kept whole.
          const { user: _u, ip: _i, device: _d, note: _n, ...what } = recs[0];
          this.logger.error({ err: spoolErr, record: what }, 'rejected incident could not be kept');
          this.logger.debug({ record: recs[0] }, 'rejected incident could not be kept: whole record');
        }
        this.emitSafe('rejected', 1);
        return 'stored';
      }
    }
  }

  /** Replays one chunk from the spool. Returns whether it got anywhere (false: nothing to do, or the database is still down). */
  private async replayStep(): Promise<boolean> {
    if (!this.replay) {
      const seg = await this.spool.next();
      if (!seg) return false;
      const { lines, torn } = await this.spool.read(seg);
      // Parsed once per segment, so a bad line is set aside once however often replay is retried.
      const recs: Rec[] = [];
      const bad: Array<{ error: string; record: unknown }> = [];
      if (torn.length) {
        // A fragment of an append that never completed (crash, full disk): that append was never
        // acknowledged, and its records are in memory, the database or a later line. Kept for a human.
        this.logger.warn({ code: 'SG_ERR_SPOOL', fragments: torn.length, file: path.basename(seg.file) }, 'spool segment holds torn lines (crash or full disk mid-append); set aside, every whole record is replayed');
        try {
          this.spool.reject(torn.map((t) => ({ error: 'torn spool line', record: t })));
        } catch {
          // the fragments are nobody's acknowledged record: losing them costs nothing
        }
      }
      for (const line of lines) {
        let rec: unknown;
        try {
          rec = JSON.parse(line);
        } catch (err) {
          bad.push({ error: `unparseable spool line: ${(err as Error).message}`, record: line });
          continue;
        }
        if (isRec(rec)) recs.push(rec);
        else bad.push({ error: 'spool line is not an incident', record: line });
      }
      if (bad.length) {
        this.logger.error({ code: 'SG_ERR_INCIDENT_REJECTED', lines: bad.length, file: seg.file }, 'unreadable spool lines set aside');
        this.spool.reject(bad);
        this.counters.rejected += bad.length;
      }
      seg.records = recs.length; // what stats() counts as still spooled
      this.replay = { seg, recs, pos: 0 };
    }
    const r = this.replay;
    const chunk = r.recs.slice(r.pos, r.pos + this.batchSize);
    if (chunk.length > 0) {
      if ((await this.store(chunk)) === 'unavailable') {
        this.degraded = true;
        this.backoff();
        return false;
      }
      if (this.degraded) this.logger.info('incident database reachable again; replaying the spool');
      this.degraded = false;
      this.retryMs = 100;
    }
    r.pos += chunk.length;
    if (r.pos >= r.recs.length) {
      await this.spool.done(r.seg);
      this.replay = null;
      if (!this.spool.hasData) this.logger.info('incident spool replayed');
    }
    this.settleWaiters();
    return true;
  }

  private noteStored(n: number, r: { inserted: IncidentRow[]; folded: IncidentRow[]; skipped: number }): void {
    this.counters.stored += n - r.skipped;
    if (r.inserted.length) this.emitSafe('stored', r.inserted);
    if (r.folded.length) this.emitSafe('repeated', r.folded);
  }

  private emitSafe(event: string, payload: unknown): void {
    try {
      this.emit(event, payload);
    } catch (err) {
      this.logger.error({ err, event }, 'incident listener failed');
    }
  }
}
