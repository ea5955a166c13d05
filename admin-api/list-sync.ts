import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config';
import { SchoolgateError } from '../core/errors';
import { silentLogger, type Logger } from '../core/log';
import type { LoadReport } from '../blocklists/types';
import { ACCEPT_MARK, defaultListsDir } from '../blocklists/update';
import { isConfined, listRoots } from '../blocklists/location';
import type { Db, Queryable } from '../db/types';
import type { ListStoreLike, OverrideEntry } from './deps';

/**
 * Keeps every running gateway's ListStore in step with what the network manager changes in the
 * console: the API writes the database and NOTIFYs; each process LISTENs and applies the change.
 * Overrides and policy groups are cheap (a small separate set); sources mean a full recompile,
 * which the store does off the hot path and swaps in whole.
 */

export const LISTS_CHANNEL = 'schoolgate_lists';
export type ListChange = 'overrides' | 'policy' | 'sources';

interface StoreState {
  policies: Map<string, string[]>;
  /** Acceptance marks (written by `lists update --accept-shrink`) this store has already honoured. */
  marks: Set<string>;
  /** Changes this process already applied to this store itself (the API's own reloads). */
  applied: Set<string>;
  queue: Promise<unknown>;
}

const states = new WeakMap<object, StoreState>();

function stateOf(store: object): StoreState {
  let s = states.get(store);
  if (!s) states.set(store, (s = { policies: new Map(), marks: new Set(), applied: new Set(), queue: Promise.resolve() }));
  return s;
}

/** Runs store work one at a time so a reload never overlaps another on the same store. */
function serial<T>(store: object, fn: () => Promise<T>): Promise<T> {
  const s = stateOf(store);
  const run = s.queue.then(fn, fn);
  s.queue = run.catch(() => {});
  return run;
}

export async function loadOverrides(db: Queryable): Promise<OverrideEntry[]> {
  const r = await db.query<OverrideEntry>('SELECT action, kind, entry, category FROM list_overrides ORDER BY id');
  return r.rows.map((o) => ({ action: o.action, kind: o.kind, entry: o.entry, category: o.category ?? null }));
}

export async function loadPolicyGroups(db: Queryable): Promise<Map<string, string[]>> {
  const r = await db.query<{ name: string; categories: string[] }>('SELECT name, categories FROM policy_groups ORDER BY name');
  return new Map(r.rows.map((g) => [g.name, g.categories]));
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
  const r = await db.query<{ name: string; location: string }>('SELECT name, location FROM list_sources WHERE enabled ORDER BY id');
  // A configured folder that is not there (a first-run download that failed) must not block
  // loading what the console added; one that vanished later still fails the reload via the DB rows.
  // A tarball source is read from the copy the admin API fetched into this data folder; a gateway
  // on another machine without that copy serves without it rather than failing every reload.
  const fromDb = r.rows.map((row) => localPath(config, row)).filter((p, i) => !isUrl(r.rows[i].location) || existsSync(p));
  // A row added before locations were confined (or edited in the table) is never read: it could
  // name any file the server can read.
  const roots = listRoots(config);
  const refused = fromDb.filter((p) => !isConfined(roots, p));
  if (refused.length) logger?.warn({ code: 'SG_ERR_LIST_LOCATION', count: refused.length }, 'list sources outside the lists folders skipped');
  return [...new Set([...config.lists.filter((p) => existsSync(p)), ...fromDb.filter((p) => !refused.includes(p))])];
}

/**
 * The categories a policy group blocks, in check order: the console's setting (policy_groups),
 * else the config file's, else the configured default categories, else every black category.
 * Synchronous and allocation-free: the gateway calls it per request.
 */
export function policyFor(store: ListStoreLike, group: string | null | undefined, config: Config): string[] {
  const name = group || config.defaultGroup;
  return (
    states.get(store)?.policies.get(name) ??
    config.policyGroups[name]?.categories ??
    config.categories ??
    store.blackCategories()
  );
}

export async function applyOverrides(db: Queryable, store: ListStoreLike): Promise<number> {
  const entries = await loadOverrides(db);
  store.setOverrides(entries);
  return entries.length;
}

export async function applyPolicies(db: Queryable, store: ListStoreLike): Promise<void> {
  stateOf(store).policies = await loadPolicyGroups(db);
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
  for (const cats of (await loadPolicyGroups(db)).values()) for (const c of cats) used.add(c);
  return used;
}

/**
 * A mark `lists update --accept-shrink` leaves in the folder it swapped in: a person accepted that
 * version, so this process's reload of it is accepted too, once (a mark is honoured one time only).
 */
function freshMarks(store: ListStoreLike, sources: string[]): string[] {
  const seen = stateOf(store).marks;
  const found: string[] = [];
  for (const s of sources) {
    try {
      const mark = readFileSync(path.join(s, ACCEPT_MARK), 'utf8').trim();
      if (mark && !seen.has(mark)) found.push(mark);
    } catch {
      // no mark: the usual case
    }
  }
  return found;
}

/**
 * Recompiles the store from config + database sources; throws SG_ERR_LIST_REJECTED keeping the old
 * set, when the new lists are empty or a category shrank by more than config.listMaxShrink,
 * vanished, or turned to garbage, unless `accept` (or a fresh acceptance mark) says a person chose it.
 */
export function reloadStore(
  db: Queryable,
  store: ListStoreLike,
  config: Config,
  opts: { accept?: boolean; dropAllowed?: boolean; logger?: Logger } = {},
): Promise<LoadReport> {
  return serial(store, async () => {
    const sources = await sourcesFor(db, config, opts.logger);
    const marks = freshMarks(store, sources);
    const report = await store.reload(sources, {
      maxShrink: config.listMaxShrink,
      accept: opts.accept || marks.length > 0,
      dropAllowedExcept: opts.dropAllowed ? await categoriesInUse(db, config) : undefined,
    });
    for (const m of marks) stateOf(store).marks.add(m);
    return report;
  });
}

/** Records per-source figures from a load report on the list_sources rows they came from. */
export async function recordSourceReport(db: Queryable, report: LoadReport, config: Config): Promise<void> {
  const per = new Map<number, { entries: number; skipped: number }>();
  const r = await db.query<{ id: number; name: string; location: string }>('SELECT id, name, location FROM list_sources');
  for (const s of report.sources) {
    // A UT1 folder reports per category file; fold them back onto the folder that was configured.
    for (const row of r.rows) {
      const local = localPath(config, row);
      if (s.source === local || s.source.startsWith(local.replace(/\/?$/, '/'))) {
        const t = per.get(Number(row.id)) ?? { entries: 0, skipped: 0 };
        t.entries += s.loaded;
        t.skipped += s.skippedCount;
        per.set(Number(row.id), t);
      }
    }
  }
  for (const [id, t] of per) {
    await db.query('UPDATE list_sources SET last_loaded = now(), entries = $2, skipped = $3 WHERE id = $1', [id, t.entries, t.skipped]);
  }
}

/**
 * Tells every process on this database that lists changed. `appliedTo` is a store this process
 * already brought up to date itself, so its own listener does not recompile a second time.
 */
export async function notifyLists(db: Db, what: ListChange, appliedTo?: ListStoreLike): Promise<void> {
  const nonce = randomUUID();
  if (appliedTo) {
    const s = stateOf(appliedTo);
    s.applied.add(nonce);
    setTimeout(() => s.applied.delete(nonce), 60_000).unref();
  }
  await db.notify(LISTS_CHANNEL, JSON.stringify({ what, nonce }));
}

export interface ListSyncOptions {
  db: Db;
  store: ListStoreLike;
  config: Config;
  logger?: Logger;
  /**
   * How often to compare the tables with what was applied (default 30 s). NOTIFY is not queued for
   * a listener whose connection is down, so this catches anything missed during an outage.
   */
  resyncMs?: number;
}

const FINGERPRINTS: Record<ListChange, string> = {
  overrides: "SELECT count(*) || ':' || coalesce(sum(id), 0) AS fp FROM list_overrides",
  policy: "SELECT count(*) || ':' || coalesce(max(updated_at)::text, '') AS fp FROM policy_groups",
  sources: "SELECT count(*) || ':' || coalesce(string_agg(id || (CASE WHEN enabled THEN 'e' ELSE 'd' END), ',' ORDER BY id), '') AS fp FROM list_sources",
};

async function fingerprint(db: Queryable, what: ListChange): Promise<string> {
  const r = await db.query<{ fp: string }>(FINGERPRINTS[what]);
  return String(r.rows[0]?.fp ?? '');
}

/**
 * Loads overrides, policy groups and console-added sources into the store, then follows changes.
 * Returns a function that stops listening.
 */
export async function startListSync(opts: ListSyncOptions): Promise<() => Promise<void>> {
  const { db, store, config } = opts;
  const logger = opts.logger ?? silentLogger;
  /** What each part of the tables looked like when last applied to this store. */
  const seen: Partial<Record<ListChange, string>> = {};

  const apply = async (what: ListChange) => {
    // Taken before applying: a change landing meanwhile shows up as a difference next time.
    const fp = await fingerprint(db, what);
    if (what === 'overrides') {
      const n = await applyOverrides(db, store);
      logger.info({ overrides: n }, 'list overrides applied');
    } else if (what === 'policy') {
      await applyPolicies(db, store);
      logger.info('policy groups applied');
    } else {
      // A source removed in the console takes its categories with it on every gateway; one a
      // policy names, or any category shrinking, is still refused here as anywhere.
      const report = await reloadStore(db, store, config, { logger, dropAllowed: true });
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
    if (msg.nonce && stateOf(store).applied.has(msg.nonce)) {
      // This process already applied it; only note the tables' new state.
      void fingerprint(db, what).then((fp) => (seen[what] = fp), () => {});
      return;
    }
    void safely(what);
  });

  await safely('overrides');
  await safely('policy');
  const extra = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM list_sources WHERE enabled');
  if (Number(extra.rows[0]?.n ?? 0) > 0) await safely('sources');
  else seen.sources = await fingerprint(db, 'sources');

  let checking = false;
  const timer = setInterval(async () => {
    if (checking) return;
    checking = true;
    try {
      for (const what of ['overrides', 'policy', 'sources'] as const) {
        const fp = await fingerprint(db, what);
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
  }, opts.resyncMs ?? 30_000);
  timer.unref();

  return async () => {
    clearInterval(timer);
    await unlisten();
  };
}
