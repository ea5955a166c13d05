import { randomUUID } from 'node:crypto';
import { silentLogger, type Logger } from '../core/log';
import type { Db } from '../db/types';
import type { PhraseBook, SchoolPhrase } from '../filter/phrase-book';
import { addPhraseHits, listPhraseChanges, phraseFingerprint, type PhraseChangeRow } from '../repos/phrases';

/**
 * Keeps every gateway's safeguarding phrases in step with what the DSL changes in the console, as
 * list-sync.ts does for lists: the API writes the table, recompiles this process's matcher and
 * NOTIFYs; every process LISTENs and recompiles from the table (a few milliseconds, so a process
 * that already applied a change simply applies it again). A periodic check catches a notification
 * missed while a connection was down. It also writes the phrases' hit counts, which the gateway
 * only counts in memory: one statement every few seconds, never a query per search.
 */

export const PHRASES_CHANNEL = 'schoolgate_phrases';

export const toSchoolPhrase = (r: PhraseChangeRow): SchoolPhrase => ({
  id: r.id, category: r.category, phrase: r.phrase, action: r.action, reason: r.reason, severity: r.severity,
});

export interface PhraseSyncOptions {
  db: Db;
  book: PhraseBook;
  logger?: Logger;
  /** How often counted hits are written (default 5 s). */
  flushMs?: number;
}

export class PhraseSync {
  readonly db: Db;
  readonly book: PhraseBook;
  private readonly logger: Logger;
  private readonly flushMs: number;
  private applied = false;
  /** One recompile at a time, in the order asked: an older read never replaces a newer one. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: PhraseSyncOptions) {
    this.db = opts.db;
    this.book = opts.book;
    this.logger = opts.logger ?? silentLogger;
    this.flushMs = opts.flushMs ?? 5000;
  }

  /** Whether the school's changes have been read from the database at least once. */
  get loaded(): boolean {
    return this.applied;
  }

  /** Reads the school's changes and recompiles; the old matcher keeps serving if that fails. */
  apply(): Promise<string> {
    const run = this.queue.then(async () => {
      const fp = await phraseFingerprint(this.db);
      this.book.setChanges((await listPhraseChanges(this.db)).map(toSchoolPhrase));
      this.applied = true;
      return fp;
    });
    this.queue = run.catch(() => {});
    return run;
  }

  async notify(): Promise<void> {
    await this.db.notify(PHRASES_CHANNEL, randomUUID());
  }

  /** Writes what was counted since the last flush, in one statement; on failure the counts wait for the next. */
  async flushHits(): Promise<void> {
    const batch = this.book.takeHits();
    if (!batch.length) return;
    try {
      await addPhraseHits(this.db, batch);
    } catch (err) {
      this.book.returnHits(batch);
      throw err;
    }
  }

  /** Applies the school's changes, then follows them. Returns a function that stops (writing the last counts). */
  async start(resyncMs = 30_000): Promise<() => Promise<void>> {
    let seen = '';
    const safely = () =>
      this.apply().then(
        (fp) => {
          seen = fp;
          this.logger.info({ changes: this.book.changes.length }, 'safeguarding phrases applied');
        },
        (err) => this.logger.error({ err: (err as Error).message, code: (err as { code?: string }).code }, 'safeguarding phrase change not applied; the previous phrases keep matching'),
      );
    const unlisten = await this.db.listen(PHRASES_CHANNEL, () => void safely());
    await safely();
    let checking = false;
    const resync = setInterval(async () => {
      if (checking) return;
      checking = true;
      try {
        if ((await phraseFingerprint(this.db)) !== seen) await safely();
      } catch (err) {
        this.logger.debug({ err: (err as Error).message }, 'periodic phrase check skipped: database unreachable');
      } finally {
        checking = false;
      }
    }, resyncMs);
    resync.unref();
    const flush = setInterval(() => {
      this.flushHits().catch((err) => this.logger.debug({ err: (err as Error).message }, 'phrase hit counts kept for the next flush'));
    }, this.flushMs);
    flush.unref();
    return async () => {
      clearInterval(resync);
      clearInterval(flush);
      await unlisten();
      await this.flushHits().catch(() => {});
    };
  }
}
