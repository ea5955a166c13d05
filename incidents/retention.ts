import { silentLogger, type Logger } from '../core/log';
import type { Db } from '../db/types';
import { writeAudit } from '../repos/audit';
import { deleteBrowsingRowsBefore } from '../repos/browsing';
import { deleteIncidentsLastSeenBefore } from '../repos/incidents';
import { CLOSING } from './queries';

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Deletes incidents that are resolved (closed, or closed as a false positive) and were last seen
 * more than `days` ago, and records what it did in the audit log in the same transaction: the
 * deletion and its record stand or fall together. Open incidents are never deleted, however old.
 */
export async function runRetention(db: Db, opts: { days: number; browsingLogDays?: number; now?: Date }): Promise<{ deleted: number; browsingRowsDeleted: number }> {
  if (!Number.isInteger(opts.days) || opts.days < 1) throw new RangeError(`retention days must be a whole number >= 1, got ${opts.days}`);
  const logDays = opts.browsingLogDays ?? 30;
  if (!Number.isInteger(logDays) || logDays < 1) throw new RangeError(`browsing log retention days must be a whole number >= 1, got ${logDays}`);
  const now = opts.now ?? new Date();
  const cutoff = new Date(now.getTime() - opts.days * DAY_MS);
  const deleted = await db.transaction(async (tx) => {
    const { deleted, oldest, newest } = await deleteIncidentsLastSeenBefore(tx, cutoff, [...CLOSING]);
    await writeAudit(tx, {
      actor: { id: null, email: 'system' },
      action: 'retention.delete',
      target: 'incidents',
      details: { deleted, days: opts.days, cutoff: cutoff.toISOString(), oldest, newest, ranAt: now.toISOString() },
    });
    return deleted;
  });
  // The browsing log in a transaction of its own: a day's log is far larger than a day's
  // incidents, and its deletion must not hold back (or roll back) the incidents'.
  const logCutoff = new Date(now.getTime() - logDays * DAY_MS);
  const browsingRowsDeleted = await db.transaction(async (tx) => {
    const r = await deleteBrowsingRowsBefore(tx, logCutoff);
    await writeAudit(tx, {
      actor: { id: null, email: 'system' },
      action: 'retention.delete',
      target: 'browsing_log',
      details: { deleted: r.deleted, days: logDays, cutoff: logCutoff.toISOString(), oldest: r.oldest, newest: r.newest, ranAt: now.toISOString() },
    });
    return r.deleted;
  });
  return { deleted, browsingRowsDeleted };
}

/** Runs retention shortly after start and then daily; the timers never keep the process alive. */
export function scheduleRetention(db: Db, opts: { days: number; browsingLogDays?: number; logger?: Logger; firstRunMs?: number; everyMs?: number }): () => void {
  const logger = opts.logger ?? silentLogger;
  let stopped = false;
  const run = async () => {
    if (stopped) return;
    try {
      const { deleted, browsingRowsDeleted } = await runRetention(db, { days: opts.days, browsingLogDays: opts.browsingLogDays });
      logger.info({ deleted, days: opts.days, browsingRowsDeleted, browsingLogDays: opts.browsingLogDays }, 'retention job done');
    } catch (err) {
      logger.error({ err }, 'retention job failed; will try again tomorrow');
    }
  };
  const first = setTimeout(run, opts.firstRunMs ?? 60_000);
  first.unref();
  const daily = setInterval(run, opts.everyMs ?? DAY_MS);
  daily.unref();
  return () => {
    stopped = true;
    clearTimeout(first);
    clearInterval(daily);
  };
}
