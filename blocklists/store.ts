import { EventEmitter } from 'node:events';
import { SchoolgateError, isSchoolgateError } from '../core/errors';
import { silentLogger, type Logger } from '../core/log';
import type { ListSet, LoadReport, NormalizedUrl, SourceReport, Verdict } from './types';
import { CompiledLists, ListBuilder } from './compiled';
import { loadSources, parseLine, type FileFormat } from './parse';
import { cacheFile, cacheKey, readCache, writeCache } from './cache';
import { SCHOOL_SERVICES, SCHOOL_SERVICES_NAME } from './profiles';

export interface OverrideEntry {
  action: 'allow' | 'block';
  kind: 'domain' | 'url' | 'expression';
  entry: string;
  category?: string | null;
  /** Only for people in this policy group; null or absent: everyone. */
  group?: string | null;
}

/** One compiled override set: everyone's, or one policy group's. */
interface OverrideSet {
  lists: CompiledLists;
  /** The block categories its entries are filed under, in name order. */
  block: string[];
}

/** Category that allow overrides are reported under. */
export const LOCAL_ALLOW = 'local-allow';
/** The override set's allow list, made once: classify runs per request. */
const LOCAL_ALLOW_LIST: readonly string[] = [LOCAL_ALLOW];
/** The school-services allow category (blocklists/profiles/school-services.json), made once likewise. */
const SCHOOL_SERVICES_LIST: readonly string[] = [SCHOOL_SERVICES];
const NO_BLOCK: readonly string[] = [];

const emptyReport = (): LoadReport => ({ sources: [], categories: [], entries: 0, millis: 0 });

/** Default for config.listMaxShrink: a category may lose at most half its entries in one reload. */
export const DEFAULT_MAX_SHRINK = 0.5;

export interface ReloadOptions {
  /** Largest share (0..1) a category may lose in one reload (default 0.5). */
  maxShrink?: number;
  /** A person accepted this change: load it whatever the checks say. */
  accept?: boolean;
  /**
   * A source was removed on purpose: its categories may vanish, except those named here (in a
   * policy). Without it every vanished category counts as shrunk by 100%.
   */
  dropAllowedExcept?: ReadonlySet<string>;
}

/** Why a reload was refused: the category and its numbers. */
export interface ListChangeProblem {
  category: string;
  problem: 'shrank' | 'dropped' | 'garbage';
  before?: number;
  after?: number;
  skipped?: number;
  loaded?: number;
}

const size = (c: { domains: number; urls: number; expressions: number }) => c.domains + c.urls + c.expressions;

/** Per category: lines skipped and loaded over all its sources. */
function lineCounts(r: LoadReport): Map<string, { skipped: number; loaded: number }> {
  const m = new Map<string, { skipped: number; loaded: number }>();
  for (const s of r.sources) {
    const name = s.category ?? s.source;
    const t = m.get(name) ?? { skipped: 0, loaded: 0 };
    t.skipped += s.skippedCount;
    t.loaded += s.loaded;
    m.set(name, t);
  }
  return m;
}

/**
 * What is wrong with replacing `before` by `after`: a category that lost more than `maxShrink` of
 * its entries, vanished, or now skips more lines than it loads (and did not before). A broken
 * download or a truncated file looks exactly like this, and taking it would quietly stop blocking.
 */
export function judgeReload(before: LoadReport, after: LoadReport, opts: ReloadOptions = {}): ListChangeProblem[] {
  const maxShrink = opts.maxShrink ?? DEFAULT_MAX_SHRINK;
  const now = new Map(after.categories.map((c) => [c.name, c]));
  const problems: ListChangeProblem[] = [];
  for (const old of before.categories) {
    const was = size(old);
    if (was === 0) continue;
    const next = now.get(old.name);
    if (!next) {
      if (!opts.dropAllowedExcept || opts.dropAllowedExcept.has(old.name)) problems.push({ category: old.name, problem: 'dropped', before: was, after: 0 });
      continue;
    }
    const is = size(next);
    if (is < was * (1 - maxShrink)) problems.push({ category: old.name, problem: 'shrank', before: was, after: is });
  }
  const oldLines = lineCounts(before);
  for (const [category, t] of lineCounts(after)) {
    const prev = oldLines.get(category);
    if (t.skipped > t.loaded && !(prev && prev.skipped > prev.loaded)) problems.push({ category, problem: 'garbage', skipped: t.skipped, loaded: t.loaded });
  }
  return problems;
}

/** One line a person can act on, naming each category and its numbers. */
export function describeProblems(problems: ListChangeProblem[], maxShrink = DEFAULT_MAX_SHRINK): string {
  return problems
    .map((p) =>
      p.problem === 'garbage'
        ? `${p.category}: ${p.skipped} lines skipped, only ${p.loaded} loaded`
        : p.problem === 'dropped'
          ? `${p.category}: gone (had ${p.before} entries)`
          : `${p.category}: shrank from ${p.before} to ${p.after} entries (more than ${Math.round(maxShrink * 100)}%)`,
    )
    .join('; ');
}

/** Compiles sources into a ListSet, from the cache when every source file is unchanged. */
export async function compileSources(
  sources: string[],
  opts: { cacheDir?: string; logger?: Logger } = {},
): Promise<{ set: CompiledLists; report: LoadReport }> {
  const log = opts.logger ?? silentLogger;
  const started = performance.now();
  let file: string | null = null;
  if (opts.cacheDir) {
    file = cacheFile(opts.cacheDir, await cacheKey(sources));
    const cached = await readCache(file);
    if (cached) {
      const set = new CompiledLists(cached.parts);
      return { set, report: { ...cached.report, millis: Math.round(performance.now() - started), fromCache: true } };
    }
  }
  const b = new ListBuilder();
  const reports = await loadSources(b, sources);
  const set = b.build();
  const report: LoadReport = {
    sources: reports,
    categories: [...set.categories.values()],
    entries: set.entries,
    millis: Math.round(performance.now() - started),
    fromCache: false,
  };
  if (file && report.entries > 0) {
    await writeCache(file, set.parts, report).catch((err) => log.warn({ err: (err as Error).message, file }, 'list cache not written'));
  }
  return { set, report };
}

/**
 * The lists the gateway and CLI ask. A reload compiles a whole new set (yielding to the event
 * loop as it goes) and swaps one reference: a lookup sees the old set or the new, never half.
 */
export class ListStore extends EventEmitter {
  private set: CompiledLists;
  private overrides: OverrideSet | null = null;
  /** Overrides scoped to a policy group, by group: checked before everyone's (the narrower rule wins). */
  private groupOverrides: ReadonlyMap<string, OverrideSet> = new Map();
  private overrideBlock: readonly string[] = [];
  private services: CompiledLists | null = null;
  private lastReport: LoadReport;
  private sources: string[];
  private readonly cacheDir?: string;
  private readonly log: Logger;
  private pending: Promise<unknown> = Promise.resolve();
  private black: { set: CompiledLists; names: string[] } | null = null;

  private constructor(sources: string[], opts: { cacheDir?: string; logger?: Logger }) {
    super();
    this.sources = sources;
    this.cacheDir = opts.cacheDir;
    this.log = opts.logger ?? silentLogger;
    this.set = new ListBuilder().build();
    this.lastReport = emptyReport();
  }

  /** Throws SG_ERR_LIST_SOURCE for an unreadable source; empty `sources` gives an empty store. */
  static async open(opts: { sources: string[]; cacheDir?: string; logger?: Logger }): Promise<ListStore> {
    const store = new ListStore(opts.sources, opts);
    if (opts.sources.length > 0) {
      const { set, report } = await compileSources(opts.sources, opts);
      store.set = set;
      store.lastReport = report;
      store.logSkips(report);
    }
    return store;
  }

  get current(): ListSet {
    return this.set;
  }

  get loaded(): boolean {
    return this.lastReport.entries > 0;
  }

  get report(): LoadReport {
    return this.lastReport;
  }

  /**
   * Compiles `sources` and swaps them in, unless they hold no entries or `judgeReload` finds a
   * category shrunk, vanished or turned to garbage (and `opts.accept` is not set): then it throws
   * SG_ERR_LIST_REJECTED with the problems, and the old lists keep serving.
   */
  async reload(sources?: string[], opts: ReloadOptions = {}): Promise<LoadReport> {
    const run = this.pending.then(() => this.doReload(sources ?? this.sources, opts));
    this.pending = run.catch(() => {});
    return run;
  }

  private async doReload(sources: string[], opts: ReloadOptions): Promise<LoadReport> {
    let result: { set: CompiledLists; report: LoadReport };
    try {
      result = await compileSources(sources, { cacheDir: this.cacheDir, logger: this.log });
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'list reload failed; previous lists keep serving');
      throw new SchoolgateError('SG_ERR_LIST_REJECTED', (err as Error).message, {
        cause: isSchoolgateError(err) ? err.code : 'error',
      }, { cause: err });
    }
    if (result.report.entries === 0) {
      this.log.error('list reload produced no entries; previous lists keep serving');
      throw new SchoolgateError('SG_ERR_LIST_REJECTED', 'the new lists hold no entries', { report: result.report });
    }
    const problems = judgeReload(this.lastReport, result.report, opts);
    if (problems.length > 0) {
      const why = describeProblems(problems, opts.maxShrink);
      if (!opts.accept) {
        // Named at error level with the numbers, never the lines: the service log is read by people
        // who must see that filtering is at risk, not what the lists hold.
        this.log.error({ code: 'SG_ERR_LIST_REJECTED', problems }, `list reload refused; previous lists keep serving: ${why}`);
        throw new SchoolgateError('SG_ERR_LIST_REJECTED', `${why}. Fix the lists, or accept the change explicitly`, { problems });
      }
      this.log.warn({ problems }, `list reload accepted despite: ${why}`);
    }
    this.set = result.set;
    this.sources = sources;
    this.lastReport = result.report;
    this.logSkips(result.report);
    this.emit('reload', result.report);
    return result.report;
  }

  private logSkips(report: LoadReport): void {
    for (const s of report.sources as SourceReport[]) {
      // Where and why, never the line itself: a source pointed at a file that is not a list would
      // put that file's contents (a control token) in the log.
      if (s.skippedCount > 0) {
        const first = s.skipped[0];
        this.log.warn({ source: s.source, skipped: s.skippedCount, firstLine: first?.line, reason: first?.reason }, 'blocklist lines skipped');
        this.log.debug({ source: s.source, first }, 'blocklist lines skipped: first');
      }
    }
    this.log.info({ entries: report.entries, categories: report.categories.length, millis: report.millis, fromCache: report.fromCache }, 'blocklists loaded');
  }

  /**
   * The school's own entries (already without expired ones: list sync drops those and re-applies
   * at the next expiry); an entry that cannot be parsed is logged and left out.
   */
  setOverrides(entries: OverrideEntry[]): void {
    const byGroup = new Map<string, OverrideEntry[]>();
    for (const e of entries) {
      const g = e.group ?? '';
      const list = byGroup.get(g);
      if (list) list.push(e);
      else byGroup.set(g, [e]);
    }
    const everyone = byGroup.get('');
    byGroup.delete('');
    this.overrides = everyone ? this.compileOverrides(everyone) : null;
    this.groupOverrides = new Map([...byGroup].map(([g, list]) => [g, this.compileOverrides(list)]));
    const names = new Set<string>(this.overrides?.block ?? []);
    for (const o of this.groupOverrides.values()) for (const c of o.block) names.add(c);
    this.overrideBlock = [...names].sort();
  }

  private compileOverrides(entries: OverrideEntry[]): OverrideSet {
    const b = new ListBuilder();
    const allowCat = b.category(LOCAL_ALLOW, { usage: ['white'] });
    const blockNames = new Set<string>();
    for (const e of entries) {
      const category = e.action === 'allow' ? LOCAL_ALLOW : (e.category ?? 'local') || 'local';
      const cat = e.action === 'allow' ? allowCat : b.category(category);
      if (e.action === 'block') blockNames.add(category);
      const format: FileFormat = e.kind === 'domain' ? 'domains' : e.kind === 'url' ? 'urls' : 'expressions';
      const r = parseLine(b, cat, format, String(e.entry ?? ''));
      if (r !== null && typeof r === 'object') this.log.warn({ entry: e.entry, kind: e.kind, reason: r.reason }, 'override skipped');
    }
    return { lists: b.build(), block: [...blockNames].sort() };
  }

  /**
   * The shipped school-services allow list (null: the school turned it off): domains that pass for
   * every group whatever the lists say, checked after the school's own overrides (so a school's
   * block entry still wins) and before every list.
   */
  setSchoolServices(domains: readonly string[] | null): void {
    if (!domains || domains.length === 0) {
      this.services = null;
      return;
    }
    const b = new ListBuilder();
    const cat = b.category(SCHOOL_SERVICES, { friendlyName: SCHOOL_SERVICES_NAME, usage: ['white'] });
    for (const d of domains) {
      const r = parseLine(b, cat, 'domains', d);
      if (r !== null && typeof r === 'object') this.log.warn({ entry: d, reason: r.reason }, 'school service skipped');
    }
    this.services = b.build();
  }

  /** Categories the school's own block overrides file entries under (every group's). */
  overrideCategories(): readonly string[] {
    return this.overrideBlock;
  }

  /**
   * The school's overrides first (a group's own, then everyone's: within a set a block entry wins
   * over an allow), then the lists.
   */
  classify(url: NormalizedUrl, blockCategories: readonly string[], allowCategories: readonly string[], group?: string): Verdict {
    if (group !== undefined && this.groupOverrides.size > 0) {
      const scoped = this.groupOverrides.get(group);
      if (scoped !== undefined) {
        const v = scoped.lists.classify(url, scoped.block, LOCAL_ALLOW_LIST);
        if (v.action === 'block' || v.allowed) return v;
      }
    }
    const ov = this.overrides;
    if (ov !== null) {
      const v = ov.lists.classify(url, ov.block, LOCAL_ALLOW_LIST);
      if (v.action === 'block' || v.allowed) return v;
    }
    const ss = this.services;
    if (ss !== null) {
      const v = ss.classify(url, NO_BLOCK, SCHOOL_SERVICES_LIST);
      if (v.allowed) return v;
    }
    return this.set.classify(url, blockCategories, allowCategories);
  }

  /**
   * Every loaded category whose usage says black, in name order: the default policy. The gateway
   * asks on every request, so it is worked out once per compiled set (callers must not mutate it).
   */
  blackCategories(): string[] {
    if (this.black?.set !== this.set) {
      this.black = { set: this.set, names: [...this.set.categories.values()].filter((c) => c.usage.includes('black')).map((c) => c.name).sort() };
    }
    return this.black.names;
  }
}
