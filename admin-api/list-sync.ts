import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config';
import { SchoolgateError } from '../core/errors';
import { silentLogger, type Logger } from '../core/log';
import type { PolicyGroups } from '../blocklists/policy-groups';
import type { OverrideEntry, ReloadOptions } from '../blocklists/store';
import type { CategoryInfo, LoadReport } from '../blocklists/types';
import { ACCEPT_MARK, defaultListsDir } from '../blocklists/update';
import { isConfined, listRoots } from '../blocklists/location';
import type { Db, Queryable } from '../db/types';
import {
  activeOverrides, countEnabledSources, listFingerprint, listPolicyGroups, recordSourceLoad, sourceLocations, type ListTable,
} from '../repos/lists';

/**
 * Keeps every running gateway's ListStore and PolicyGroups in step with what the network manager
 * changes in the console: the API writes the database and NOTIFYs; each process LISTENs and
 * applies the change. Overrides and policy groups are cheap (a small separate set); sources mean a
 * full recompile, which the store does off the hot path and swaps in whole.
 */

export const LISTS_CHANNEL = 'schoolgate_lists';
export type ListChange = ListTable;
export type { OverrideEntry };

/** What list sync and the admin API need of the list store (blocklists/store.ts ListStore fits as it is). */
export interface ListStoreLike {
  readonly loaded: boolean;
  readonly current: { readonly categories: ReadonlyMap<string, CategoryInfo> };
  readonly report: LoadReport;
  reload(sources?: string[], opts?: ReloadOptions): Promise<LoadReport>;
  setOverrides(entries: OverrideEntry[]): void;
  blackCategories(): string[];
}

export const isUrl = (location: string) => /^https?:\/\//i.test(location);

/** Where a tarball source named `name` is unpacked: `<dataDir>/lists/sources/<name>/lists/ut1`. */
export function downloadBase(config: Config, name: string): string {
  return path.join(config.dataDir, 'lists', 'sources', name);
}
export const downloadedDir = (config: Config, name: string) => defaultListsDir(downloadBase(config, name));

/** The local path a source row is read from (a tarball URL reads its unpacked copy). */
export function localPath(config: Config, row: { name: string; location: string }): string {
  return isUrl(row.location) ? downloadedDir(config, row.name) : row.location;
}

/** Sources to compile: the configured lists, then the enabled sources added in the console. */
export async function sourcesFor(db: Queryable, config: Config, logger?: Logger): Promise<string[]> {
  const rows = await sourceLocations(db, 'enabled');
  // A configured folder that is not there (a first-run download that failed) must not block
  // loading what the console added; one that vanished later still fails the reload via the DB rows.
  // A tarball source is read from the copy the admin API fetched into this data folder; a gateway
  // on another machine without that copy serves without it rather than failing every reload.
  const fromDb = rows.map((row) => localPath(config, row)).filter((p, i) => !isUrl(rows[i].location) || existsSync(p));
  // A row added before locations were confined (or edited in the table) is never read: it could
  // name any file the server can read.
  const roots = listRoots(config);
  const refused = fromDb.filter((p) => !isConfined(roots, p));
  if (refused.length) logger?.warn({ code: 'SG_ERR_LIST_LOCATION', count: refused.length }, 'list sources outside the lists folders skipped');
  return [...new Set([...config.lists.filter((p) => existsSync(p)), ...fromDb.filter((p) => !refused.includes(p))])];
}

/**
 * `start --categories` / config `categories` and `policyGroups` naming a category the lists do not
 * hold is a typo that would silently block nothing: an error at start, as in `check`. Nothing can
 * be said while no lists are loaded (fail-closed start); 'local' and the console's block override
 * categories are known too.
 */
export function checkConfiguredCategories(config: Config, store: ListStoreLike & { overrideCategories?(): readonly string[] }): void {
  if (!store.loaded) return;
  const known = new Set<string>([...store.current.categories.keys(), 'local', ...(store.overrideCategories?.() ?? [])]);
  const named: Array<[string, string]> = [
    ...(config.categories ?? []).map((c): [string, string] => ['categories', c]),
    ...Object.entries(config.policyGroups).flatMap(([g, p]) => (p.categories ?? []).map((c): [string, string] => [`policyGroups.${g}`, c])),
  ];
  const unknown = named.filter(([, c]) => !known.has(c));
  if (unknown.length) {
    throw new SchoolgateError(
      'SG_ERR_CONFIG',
      `unknown categories: ${unknown.map(([where, c]) => `${c} (${where})`).join(', ')} (loaded: ${[...store.current.categories.keys()].sort().join(', ')})`,
      { unknown: unknown.map(([, c]) => c) },
    );
  }
}

/** Categories a policy names explicitly (config or console): a reload may not drop them silently. */
export async function categoriesInUse(db: Queryable, config: Config): Promise<Set<string>> {
  const used = new Set<string>(config.categories ?? []);
  for (const g of Object.values(config.policyGroups)) for (const c of g.categories) used.add(c);
  for (const g of await listPolicyGroups(db)) for (const c of g.categories) used.add(c);
  return used;
}

/** Records per-source figures from a load report on the list_sources rows they came from. */
export async function recordSourceReport(db: Queryable, report: LoadReport, config: Config): Promise<void> {
  const per = new Map<number, { entries: number; skipped: number }>();
  const rows = await sourceLocations(db, 'all');
  for (const s of report.sources) {
    // A UT1 folder reports per category file; fold them back onto the folder that was configured.
    for (const row of rows) {
      const local = localPath(config, row);
      if (s.source === local || s.source.startsWith(local.replace(/\/?$/, '/'))) {
        const t = per.get(row.id) ?? { entries: 0, skipped: 0 };
        t.entries += s.loaded;
        t.skipped += s.skippedCount;
        per.set(row.id, t);
      }
    }
  }
  for (const [id, t] of per) await recordSourceLoad(db, id, t);
}

export interface ListSyncOptions {
  db: Db;
  store: ListStoreLike;
  policies: PolicyGroups;
  config: Config;
  logger?: Logger;
}

export interface ReloadRequest {
  /** A person accepted this change: load it whatever the shrink and garbage checks say. */
  accept?: boolean;
  /** A source was removed on purpose: its categories may vanish, except those a policy names. */
  dropAllowed?: boolean;
}

/**
 * One process's list state as the database says it should be: the store's sources and overrides,
 * the policy groups, and what this process already did about them. Made once per store by the
 * composition root (server/start.ts) and shared by the admin API's routes and the sync that
 * follows other processes' changes, so that each knows what the other applied.
 */
export class ListSync {
  readonly db: Db;
  readonly store: ListStoreLike;
  readonly policies: PolicyGroups;
  readonly config: Config;
  private readonly logger: Logger;
  /** Acceptance marks (written by `lists update --accept-shrink`) this store has already honoured. */
  private readonly marks = new Set<string>();
  /** Changes this process already applied to the store itself (the API's own reloads), by nonce. */
  private readonly applied = new Set<string>();
  /** Store work, one at a time: a reload never overlaps another on the same store. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: ListSyncOptions) {
    this.db = opts.db;
    this.store = opts.store;
    this.policies = opts.policies;
    this.config = opts.config;
    this.logger = opts.logger ?? silentLogger;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * Recompiles the store from config + database sources; throws SG_ERR_LIST_REJECTED keeping the
   * old set, when the new lists are empty or a category shrank by more than config.listMaxShrink,
   * vanished, or turned to garbage, unless `accept` (or a fresh acceptance mark) says a person chose it.
   */
  reload(opts: ReloadRequest = {}): Promise<LoadReport> {
    return this.serial(() => this.reloadFrom(this.db, opts));
  }

  /** Reads the sources (and the policies' categories) through `q`: a transaction sees its own change. */
  private async reloadFrom(q: Queryable, opts: ReloadRequest): Promise<LoadReport> {
    const sources = await sourcesFor(q, this.config, this.logger);
    const marks = this.freshMarks(sources);
    const report = await this.store.reload(sources, {
      maxShrink: this.config.listMaxShrink,
      accept: opts.accept || marks.length > 0,
      dropAllowedExcept: opts.dropAllowed ? await categoriesInUse(q, this.config) : undefined,
    });
    for (const m of marks) this.marks.add(m);
    return report;
  }

  /**
   * Changes the sources and recompiles in one transaction: the change is committed only if the new
   * lists load (else SG_ERR_LIST_REJECTED, nothing is written and the old lists keep serving), so
   * no other process ever sees a source that is then taken back. Then tells the other processes.
   *
   * The store's slot is taken before the transaction opens, and everything inside reads through
   * the transaction: on the embedded database a query outside it would wait for it, and a reload
   * queued meanwhile holding such a query would wait for ours. Console calls on the embedded
   * database wait for the compile meanwhile; adding or removing a source is rare.
   */
  async changeSources(change: (tx: Queryable) => Promise<void>, opts: ReloadRequest = {}): Promise<LoadReport> {
    const report = await this.serial(async () => {
      const before = this.store.report;
      try {
        return await this.db.transaction(async (tx) => {
          await change(tx);
          const r = await this.reloadFrom(tx, opts);
          await recordSourceReport(tx, r, this.config);
          return r;
        });
      } catch (err) {
        // Swapped in, then not committed (the connection went at COMMIT): the store follows the
        // database back. Accepted whatever it shrinks, since those are the lists it served before.
        if (this.store.report !== before) {
          await this.reloadFrom(this.db, { accept: true, dropAllowed: true }).catch((e) =>
            this.logger.error({ err: (e as Error).message }, 'lists not restored after a source change failed; the periodic check retries'),
          );
        }
        throw err;
      }
    });
    await this.notify('sources', true);
    return report;
  }

  /** Recompiles from the sources as they are (SIGHUP, the console's reload), records the figures and tells the other processes. */
  async reloadEverywhere(opts: ReloadRequest = {}): Promise<LoadReport> {
    const report = await this.reload(opts);
    await recordSourceReport(this.db, report, this.config);
    await this.notify('sources', true);
    return report;
  }

  /**
   * Loads the overrides not yet expired into the store, and sets a timer for the next expiry: an
   * expired entry stops applying on every gateway at its time, each process re-reading the table
   * itself (no NOTIFY is sent when a clock passes a time). The periodic check catches a timer that
   * did not run.
   */
  async applyOverrides(): Promise<number> {
    const { entries, nextExpiryMs } = await activeOverrides(this.db);
    this.store.setOverrides(entries);
    this.scheduleExpiry(nextExpiryMs);
    return entries.length;
  }

  private expiryTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  private scheduleExpiry(ms: number | null): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    if (ms === null || this.stopped) return;
    // A little after the database says it expires (its clock decides), and never a busy loop.
    const delay = Math.min(Math.max(ms + 20, 50), 2 ** 31 - 1);
    this.expiryTimer = setTimeout(() => {
      this.expiryTimer = null;
      this.applyOverrides().then(
        (n) => this.logger.info({ overrides: n }, 'list overrides applied after an expiry'),
        (err) => this.logger.error({ err: (err as Error).message }, 'expired overrides not removed yet; the periodic check retries'),
      );
    }, delay);
    this.expiryTimer.unref();
  }

  /** Stops the expiry timer (the process is stopping). */
  stopExpiry(): void {
    this.stopped = true;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
  }

  async applyPolicies(): Promise<void> {
    this.policies.setFromConsole(new Map((await listPolicyGroups(this.db)).map((g) => [g.name, g.categories])));
  }

  /**
   * Tells every process on this database that lists changed. `appliedHere`: this process already
   * brought its store up to date itself, so its own listener does not recompile a second time.
   */
  async notify(what: ListChange, appliedHere = false): Promise<void> {
    const nonce = randomUUID();
    if (appliedHere) {
      this.applied.add(nonce);
      setTimeout(() => this.applied.delete(nonce), 60_000).unref();
    }
    await this.db.notify(LISTS_CHANNEL, JSON.stringify({ what, nonce }));
  }

  /**
   * A mark `lists update --accept-shrink` leaves in the folder it swapped in: a person accepted that
   * version, so this process's reload of it is accepted too, once (a mark is honoured one time only).
   */
  private freshMarks(sources: string[]): string[] {
    const found: string[] = [];
    for (const s of sources) {
      try {
        const mark = readFileSync(path.join(s, ACCEPT_MARK), 'utf8').trim();
        if (mark && !this.marks.has(mark)) found.push(mark);
      } catch {
        // no mark: the usual case
      }
    }
    return found;
  }

  /**
   * Loads overrides, policy groups and console-added sources into the store, then follows changes.
   * `resyncMs`: how often to compare the tables with what was applied (default 30 s). NOTIFY is not
   * queued for a listener whose connection is down, so this catches anything missed during an outage.
   * Returns a function that stops listening.
   */
  async start(resyncMs = 30_000): Promise<() => Promise<void>> {
    const { db, logger } = this;
    /** What each part of the tables looked like when last applied to this store. */
    const seen: Partial<Record<ListChange, string>> = {};

    const apply = async (what: ListChange) => {
      // Taken before applying: a change landing meanwhile shows up as a difference next time.
      const fp = await listFingerprint(db, what);
      if (what === 'overrides') {
        const n = await this.applyOverrides();
        logger.info({ overrides: n }, 'list overrides applied');
      } else if (what === 'policy') {
        await this.applyPolicies();
        logger.info('policy groups applied');
      } else {
        // A source removed in the console takes its categories with it on every gateway; one a
        // policy names, or any category shrinking, is still refused here as anywhere.
        const report = await this.reload({ dropAllowed: true });
        logger.info({ entries: report.entries, millis: report.millis }, 'lists reloaded');
      }
      seen[what] = fp;
    };
    const safely = (what: ListChange) =>
      apply(what).catch((err) => logger.error({ err, what }, 'list change not applied; the previous lists keep serving'));

    // Subscribe first so nothing changed while loading is missed.
    const unlisten = await db.listen(LISTS_CHANNEL, (payload) => {
      let msg: { what?: string; nonce?: string };
      try {
        msg = JSON.parse(payload);
      } catch {
        msg = { what: payload };
      }
      const what: ListChange = msg.what === 'overrides' || msg.what === 'policy' ? msg.what : 'sources';
      if (msg.nonce && this.applied.has(msg.nonce)) {
        // This process already applied it; only note the tables' new state.
        void listFingerprint(db, what).then((fp) => (seen[what] = fp), () => {});
        return;
      }
      void safely(what);
    });

    await safely('overrides');
    await safely('policy');
    if ((await countEnabledSources(db)) > 0) await safely('sources');
    else seen.sources = await listFingerprint(db, 'sources');

    let checking = false;
    const timer = setInterval(async () => {
      if (checking) return;
      checking = true;
      try {
        for (const what of ['overrides', 'policy', 'sources'] as const) {
          const fp = await listFingerprint(db, what);
          if (fp !== seen[what]) {
            logger.warn({ what }, 'list change found by periodic check (a notification was missed)');
            await safely(what);
          }
        }
      } catch (err) {
        logger.debug({ err: (err as Error).message }, 'periodic list check skipped: database unreachable');
      } finally {
        checking = false;
      }
    }, resyncMs);
    timer.unref();

    return async () => {
      clearInterval(timer);
      this.stopExpiry();
      await unlisten();
    };
  }
}

/** A ListSync for `opts.store`, started: for a process (or a test) that only follows the console. */
export function startListSync(opts: ListSyncOptions & { resyncMs?: number }): Promise<() => Promise<void>> {
  return new ListSync(opts).start(opts.resyncMs);
}
