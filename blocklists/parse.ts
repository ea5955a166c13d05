import { open, readFile, readdir, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { SchoolgateError } from '../core/errors';
import type { CategoryInfo, SourceReport } from './types';
import { ListBuilder } from './compiled';
import { matchPath, normalizeHost, stripWww } from './normalize';

/**
 * Readers for the list formats schools meet: UT1 category folders (domains, urls, expressions,
 * usage, global_usage), hosts files, AdGuard `||domain^` lists and plain domain lists.
 * A bad line is counted and reported, never fatal.
 */

export type FileFormat = 'domains' | 'urls' | 'expressions' | 'hosts' | 'adguard';

const MAX_SKIPPED_KEPT = 20;
/** Lines between event-loop yields while compiling, so a reload never stalls the gateway. */
const YIELD_EVERY = 20_000;

const yieldLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export function newReport(source: string, category?: string): SourceReport {
  return { source, category, loaded: 0, duplicates: 0, skipped: [], skippedCount: 0 };
}

function skip(r: SourceReport, line: number, reason: string, text: string): void {
  r.skippedCount++;
  if (r.skipped.length < MAX_SKIPPED_KEPT) r.skipped.push({ line, reason, text: text.slice(0, 200) });
}

const HOSTS_ADDR = /^(?:0\.0\.0\.0|127\.0\.0\.1|::1?|0|255\.255\.255\.255|fe80::1%lo0|ff0[0-9]::[0-9a-f]*)$/i;
const LOCAL_NAMES = new Set(['localhost', 'localhost.localdomain', 'local', 'broadcasthost', 'ip6-localhost', 'ip6-loopback', '0.0.0.0']);

/** Plain-domain and hosts entries may carry a scheme or a path by mistake: only the host counts. */
function entryHost(text: string): string | null {
  if (/[\s*^|$!,;'"<>{}]/.test(text)) return null;
  return normalizeHost(text);
}

type LineResult = 'loaded' | 'duplicate' | { reason: string };

/** Parses one line of `format` into the builder under category `cat`. */
export function parseLine(b: ListBuilder, cat: number, format: FileFormat, line: string): LineResult | null {
  const t = line.trim();
  if (t === '') return null;
  switch (format) {
    case 'domains': {
      const c0 = t.charCodeAt(0);
      if (c0 === 35) return null; // '#'
      if (c0 !== 46 && c0 !== 42 && t.indexOf('#') < 0) {
        const host = entryHost(t);
        if (host === null) return { reason: 'invalid host' };
        return b.addDomain(cat, host) ? 'loaded' : 'duplicate';
      }
      // `.example.com` is a common way of writing "example.com and below": same meaning here
      const host = entryHost(t.split(/\s+#/)[0].trim().replace(/^\*?\.+/, ''));
      if (host === null) return { reason: 'invalid host' };
      return b.addDomain(cat, host) ? 'loaded' : 'duplicate';
    }
    case 'hosts': {
      if (t.startsWith('#')) return null;
      const fields = t.split('#')[0].trim().split(/\s+/);
      if (fields.length < 2 || !HOSTS_ADDR.test(fields[0])) return { reason: 'unsupported syntax' };
      let result: LineResult | null = null;
      for (const f of fields.slice(1)) {
        if (LOCAL_NAMES.has(f.toLowerCase())) continue;
        result ??= 'duplicate';
        const host = entryHost(f);
        if (host === null) return { reason: 'invalid host' };
        if (b.addDomain(cat, host)) result = 'loaded';
      }
      return result;
    }
    case 'adguard': {
      if (t.startsWith('!') || t.startsWith('#') || t.startsWith('[')) return null;
      const m = /^\|\|([^/^$|*]+)\^?$/.exec(t);
      if (!m) return { reason: 'unsupported syntax' };
      const host = entryHost(m[1]);
      if (host === null) return { reason: 'invalid host' };
      return b.addDomain(cat, host) ? 'loaded' : 'duplicate';
    }
    case 'urls': {
      if (t.startsWith('#')) return null;
      const u = parseUrlEntry(t);
      if (u === null) return { reason: 'invalid host' };
      return b.addUrl(cat, u.host, u.prefix, u.entry) ? 'loaded' : 'duplicate';
    }
    case 'expressions': {
      if (t.startsWith('#')) return null;
      const source = posixToJs(t);
      try {
        new RegExp(source, 'i');
      } catch (err) {
        return { reason: `invalid expression: ${(err as Error).message}` };
      }
      return b.addExpression(cat, source) ? 'loaded' : 'duplicate';
    }
  }
}

/** `host/path` (optionally with scheme, userinfo, port) -> www-stripped host and matchable prefix. */
export function parseUrlEntry(text: string): { host: string; prefix: string; entry: string } | null {
  // A fragment never reaches a proxy (browsers keep it), so an entry's `#...` could never match:
  // the page before it is what the entry names.
  const hash = text.indexOf('#');
  let t = (hash < 0 ? text : text.slice(0, hash)).replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const slash = t.search(/[/?]/);
  let hostPart = slash < 0 ? t : t.slice(0, slash);
  const rest = slash < 0 ? '' : t.slice(slash);
  hostPart = hostPart.slice(hostPart.lastIndexOf('@') + 1);
  if (!hostPart.startsWith('[')) hostPart = hostPart.replace(/:\d*$/, '');
  const host = entryHost(hostPart);
  if (host === null) return null;
  t = stripWww(host);
  const prefix = rest === '' ? '' : matchPath(rest.startsWith('?') ? `/${rest}` : rest);
  return { host: t, prefix, entry: text };
}

/** POSIX bracket classes squidGuard's regcomp knows and JavaScript does not. */
const POSIX_CLASSES: Record<string, string> = {
  alpha: 'a-zA-Z', digit: '0-9', alnum: 'a-zA-Z0-9', upper: 'A-Z', lower: 'a-z', space: ' \\t\\r\\n\\v\\f',
  punct: '!-\\/:-@\\[-`{-~', xdigit: '0-9A-Fa-f', blank: ' \\t', word: '\\w',
};

export function posixToJs(source: string): string {
  return source.replace(/\[:([a-z]+):\]/g, (m, name: string) => POSIX_CLASSES[name] ?? m);
}

/** Guesses a file's format from its first meaningful lines. */
export function sniffFormat(text: string): FileFormat {
  let hosts = 0;
  let adguard = 0;
  let plain = 0;
  let seen = 0;
  let pos = 0;
  while (pos < text.length && seen < 50) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    const t = text.slice(pos, end).trim();
    pos = end + 1;
    if (t === '' || t.startsWith('#')) continue;
    if (t.startsWith('!') || t.startsWith('[Adblock')) {
      adguard++;
      continue;
    }
    seen++;
    if (t.startsWith('||')) adguard++;
    else if (/^\S+\s+\S/.test(t) && HOSTS_ADDR.test(t.split(/\s+/)[0])) hosts++;
    else plain++;
  }
  if (adguard > hosts && adguard > plain) return 'adguard';
  if (hosts > plain) return 'hosts';
  return 'domains';
}

/** Feeds text, in as many pieces as it comes, line by line into the builder. */
class LineLoader {
  private rest = '';
  private lineNo = 0;
  constructor(
    private readonly b: ListBuilder,
    private readonly cat: number,
    private readonly format: FileFormat,
    private readonly report: SourceReport,
  ) {}

  private one(line: string): void {
    this.lineNo++;
    let r: LineResult | null;
    try {
      r = parseLine(this.b, this.cat, this.format, line);
    } catch (err) {
      r = { reason: `unreadable line: ${(err as Error).message}` };
    }
    if (r === 'loaded') this.report.loaded++;
    else if (r === 'duplicate') this.report.duplicates++;
    else if (r !== null) skip(this.report, this.lineNo, r.reason, line.trim());
  }

  async feed(chunk: string): Promise<void> {
    const text = this.rest === '' ? chunk : this.rest + chunk;
    let pos = 0;
    let sinceYield = 0;
    for (;;) {
      const end = text.indexOf('\n', pos);
      if (end < 0) break;
      this.one(text.slice(pos, end));
      pos = end + 1;
      if (++sinceYield === YIELD_EVERY) {
        sinceYield = 0;
        await yieldLoop();
      }
    }
    this.rest = text.slice(pos);
  }

  end(): void {
    if (this.rest !== '') this.one(this.rest);
    this.rest = '';
  }
}

const CHUNK = 1 << 22;

/**
 * Streams a file in 4 MB pieces: a 10-million-line list never sits in memory as one string.
 * `format` null: sniffed from the first piece.
 */
async function loadFile(b: ListBuilder, cat: number, format: FileFormat | null, file: string, report: SourceReport): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    throw new SchoolgateError('SG_ERR_LIST_SOURCE', `${file}: ${(err as Error).message}`, { source: file }, { cause: err });
  }
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    const decoder = new TextDecoder('utf-8');
    let loader: LineLoader | null = format === null ? null : new LineLoader(b, cat, format, report);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
      const text = bytesRead === 0 ? decoder.decode() : decoder.decode(buf.subarray(0, bytesRead), { stream: true });
      loader ??= new LineLoader(b, cat, sniffFormat(text), report);
      if (text !== '') await loader.feed(text);
      if (bytesRead === 0) break;
    }
    loader?.end();
  } catch (err) {
    if (err instanceof SchoolgateError) throw err;
    throw new SchoolgateError('SG_ERR_LIST_SOURCE', `${file}: ${(err as Error).message}`, { source: file }, { cause: err });
  } finally {
    await fh.close();
  }
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new SchoolgateError('SG_ERR_LIST_SOURCE', `${file}: ${(err as Error).message}`, { source: file }, { cause: err });
  }
}

const exists = async (p: string) => stat(p).then(() => true, () => false);

interface GlobalUsage {
  name: string;
  defaultType?: string;
  nameEn?: string;
  descEn?: string;
}

export function parseGlobalUsage(text: string): Map<string, GlobalUsage> {
  const out = new Map<string, GlobalUsage>();
  let cur: GlobalUsage | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#')) continue;
    const m = /^([A-Z_]+(?: [A-Z]{2})?)\s*:\s*(.*)$/.exec(line);
    if (!m) continue;
    const [, key, value] = m;
    if (key === 'NAME') {
      cur = { name: value.trim() };
      out.set(cur.name, cur);
    } else if (cur) {
      if (key === 'DEFAULT_TYPE') cur.defaultType = value.trim().toLowerCase();
      else if (key === 'NAME EN') cur.nameEn = value.trim();
      else if (key === 'DESC EN') cur.descEn = value.trim();
    }
  }
  return out;
}

export function parseUsage(text: string): Array<'black' | 'white'> {
  const out: Array<'black' | 'white'> = [];
  for (const raw of text.split('\n')) {
    const w = raw.trim().toLowerCase();
    if ((w === 'black' || w === 'white') && !out.includes(w)) out.push(w);
  }
  return out;
}

const CATEGORY_FILES: Array<[string, FileFormat]> = [['domains', 'domains'], ['urls', 'urls'], ['expressions', 'expressions']];

/** The files a source consists of (for cache invalidation). */
export async function sourceFiles(source: string): Promise<string[]> {
  const st = await stat(source).catch((err) => {
    throw new SchoolgateError('SG_ERR_LIST_SOURCE', `${source}: ${(err as Error).message}`, { source }, { cause: err });
  });
  if (!st.isDirectory()) return [source];
  const files: string[] = [];
  const dirs = (await isCategoryDir(source)) ? [source] : await categoryDirs(source);
  const gu = path.join(source, 'global_usage');
  if (await exists(gu)) files.push(gu);
  for (const d of dirs) {
    for (const f of ['domains', 'urls', 'expressions', 'usage']) {
      const p = path.join(d, f);
      if (await exists(p)) files.push(p);
    }
  }
  return files;
}

async function isCategoryDir(dir: string): Promise<boolean> {
  for (const [f] of CATEGORY_FILES) if (await exists(path.join(dir, f))) return true;
  return false;
}

async function categoryDirs(root: string): Promise<string[]> {
  const entries = await readdir(root, { withFileTypes: true });
  const out: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = path.join(root, e.name);
    if ((e.isDirectory() || (e.isSymbolicLink() && (await stat(p).then((s) => s.isDirectory(), () => false)))) && (await isCategoryDir(p))) out.push(p);
  }
  return out;
}

/** Category name for a single list file: its base name without extension. */
export function fileCategory(file: string): string {
  return path.basename(file).replace(/\.(txt|list|hosts|conf)$/i, '').toLowerCase();
}

/** Newlines in a file (0 if unreadable): an upper bound on the entries it can hold. */
async function countLines(file: string): Promise<number> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch {
    return 0;
  }
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
      if (bytesRead === 0) return n + 1;
      for (let i = buf.indexOf(10); i >= 0 && i < bytesRead; i = buf.indexOf(10, i + 1)) n++;
    }
  } finally {
    await fh.close();
  }
}

/** Loads every source into the builder; returns one report per file read. */
export async function loadSources(b: ListBuilder, sources: string[]): Promise<SourceReport[]> {
  const reports: SourceReport[] = [];
  // Domain text is at most the size of the files it comes from: reserving that up front spares
  // a 10-million-entry load its growth copies (and a peak well above its final size).
  let bytes = 0;
  let lines = 0;
  for (const s of sources) {
    for (const f of await sourceFiles(s).catch(() => [])) {
      if (/(?:^|[/\\])(?:urls|expressions|usage|global_usage)$/.test(f)) continue;
      bytes += (await stat(f).catch(() => null))?.size ?? 0;
      lines += await countLines(f);
    }
  }
  b.reserve(bytes, lines);
  for (const source of sources) {
    const st = await stat(source).catch((err) => {
      throw new SchoolgateError('SG_ERR_LIST_SOURCE', `${source}: ${(err as Error).message}`, { source }, { cause: err });
    });
    if (!st.isDirectory()) {
      const name = fileCategory(source);
      const cat = b.category(name);
      const r = newReport(source, name);
      await loadFile(b, cat, null, source, r);
      reports.push(r);
      continue;
    }
    const single = await isCategoryDir(source);
    const dirs = single ? [source] : await categoryDirs(source);
    if (dirs.length === 0) throw new SchoolgateError('SG_ERR_LIST_SOURCE', `${source}: no category folders (domains/urls/expressions) found`, { source });
    const guFile = path.join(single ? path.dirname(source) : source, 'global_usage');
    const gu = (await exists(guFile)) ? parseGlobalUsage(await readText(guFile)) : new Map<string, GlobalUsage>();
    for (const dir of dirs) {
      const name = path.basename(dir);
      const meta = gu.get(name);
      const usageFile = path.join(dir, 'usage');
      let usage: CategoryInfo['usage'] = (await exists(usageFile)) ? parseUsage(await readText(usageFile)) : [];
      if (usage.length === 0 && meta?.defaultType && (meta.defaultType === 'black' || meta.defaultType === 'white')) usage = [meta.defaultType];
      const cat = b.category(name, { friendlyName: meta?.nameEn ?? name, description: meta?.descEn, usage });
      for (const [f, format] of CATEGORY_FILES) {
        const file = path.join(dir, f);
        if (!(await exists(file))) continue;
        const r = newReport(file, name);
        await loadFile(b, cat, format, file, r);
        reports.push(r);
      }
    }
  }
  return reports;
}
