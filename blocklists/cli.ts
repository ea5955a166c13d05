import { randomUUID } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, type CliValues, type Config } from '../core/config';
import { SchoolgateError } from '../core/errors';
import { createLogger } from '../core/log';
import type { ListSet } from './types';
import { normalizeUrl } from './normalize';
import { PolicyGroups } from './policy-groups';
import { schoolServices } from './profiles';
import { compileSources, describeProblems, judgeReload, ListStore } from './store';
import { ACCEPT_MARK, defaultListsDir, progressBar, updateLists } from './update';

/** --lists as given, else the data folder's lists (from `lists update`). */
function listSources(values: CliValues): { sources: string[]; dataDir: string } {
  const config = loadConfig(values);
  const sources = config.lists.length ? config.lists : existsSync(defaultListsDir(config.dataDir)) ? [defaultListsDir(config.dataDir)] : [];
  if (sources.length === 0) throw new SchoolgateError('SG_ERR_USAGE', 'no lists: pass --lists DIR (or run `schoolgate lists update` first)');
  return { sources, dataDir: config.dataDir };
}

/**
 * `schoolgate check`: URLs (or squidGuard redirector lines) on stdin, one verdict line out per
 * line in, in order. Output is buffered per input chunk: one write per chunk, not per line.
 */
export async function checkCommand(_args: string[], values: CliValues): Promise<number> {
  const config = loadConfig(values);
  const { sources, dataDir } = listSources(values);
  const logger = createLogger({ level: config.logLevel === 'info' ? 'error' : config.logLevel });
  const store = await ListStore.open({ sources, cacheDir: path.join(dataDir, 'cache'), logger });
  // As the gateway answers an unidentified client: the default group's categories, the school-services list first.
  store.setSchoolServices(config.schoolServices ? schoolServices().map((s) => s.domain) : null);
  const known = store.current.categories;
  const block = new PolicyGroups(config, store).categoriesFor(config.defaultGroup);
  const unknown = block.filter((c) => !known.has(c));
  if (unknown.length) {
    throw new SchoolgateError('SG_ERR_USAGE', `unknown categories: ${unknown.join(', ')} (loaded: ${[...known.keys()].sort().join(', ')})`);
  }
  const allow = config.allowCategories.filter((c) => known.has(c) && !block.includes(c));
  const invalid = await classifyStream({ categories: known, classify: (u, b, a) => store.classify(u, b, a ?? []), matches: (u) => store.current.matches(u) }, block, allow);
  if (invalid > 0) process.stderr.write(`schoolgate: ${invalid} line(s) held no parsable URL (SG_ERR_URL_INVALID); answered pass\n`);
  return 0;
}

async function classifyStream(set: ListSet, block: readonly string[], allow: readonly string[]): Promise<number> {
  let rest = '';
  let invalid = 0;
  const verdict = (line: string): string => {
    const end = line.search(/[ \t]/);
    const token = (end < 0 ? line : line.slice(0, end)).trim();
    if (token === '') {
      invalid++;
      return 'pass\n';
    }
    try {
      const v = set.classify(normalizeUrl(token), block, allow);
      return v.action === 'block' ? `block\t${v.category}\n` : 'pass\n';
    } catch {
      invalid++;
      return 'pass\n';
    }
  };
  const flush = (out: string) => new Promise<void>((resolve, reject) => {
    if (out === '') return resolve();
    process.stdout.write(out, (err) => (err ? reject(err) : resolve()));
  });
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin as AsyncIterable<string>) {
    const text = rest + chunk;
    let pos = 0;
    let out = '';
    for (;;) {
      const nl = text.indexOf('\n', pos);
      if (nl < 0) break;
      let line = text.slice(pos, nl);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      out += verdict(line.trimStart());
      pos = nl + 1;
    }
    rest = text.slice(pos);
    await flush(out);
  }
  if (rest !== '') await flush(verdict(rest.trimStart()));
  return invalid;
}

/**
 * The check `lists update` (and the console's re-fetch of a tarball source) makes before a new
 * folder replaces the old: judged as a running gateway judges its reload, so a refused version
 * never reaches the disk. `accept` takes it anyway and marks the folder, so that the running
 * gateway, which would refuse the same change, knows a person chose it.
 */
export function updateGuard(config: Config, accept: boolean): { verify: (next: string, current: string | null) => Promise<void>; accepted: string } {
  const guard = {
    accepted: '',
    verify: async (next: string, current: string | null) => {
      if (!current) return;
      const before = (await compileSources([current], { cacheDir: path.join(config.dataDir, 'cache') })).report;
      const after = (await compileSources([next])).report;
      const problems = judgeReload(before, after, { maxShrink: config.listMaxShrink });
      if (problems.length === 0) return;
      const why = describeProblems(problems, config.listMaxShrink);
      if (!accept) {
        throw new SchoolgateError('SG_ERR_LIST_REJECTED', `${why}. The old lists were kept; accept this version explicitly (--accept-shrink) to take it`, { problems });
      }
      writeFileSync(path.join(next, ACCEPT_MARK), `${randomUUID()}\n`);
      guard.accepted = why;
    },
  };
  return guard;
}

/** `schoolgate lists update --from DIR|URL` and `schoolgate lists show`. */
export async function listsCommand(args: string[], values: CliValues): Promise<number> {
  const config = loadConfig(values);
  const sub = args[0];
  if (sub === 'update') {
    const from = values.from ?? config.listsUpdateUrl;
    const guard = updateGuard(config, values['accept-shrink'] === true);
    const { dir } = await updateLists({
      from,
      dataDir: config.dataDir,
      onProgress: progressBar(process.stderr, 'downloading'),
      maxDownloadBytes: config.listDownloadMaxBytes,
      maxExtractBytes: config.listExtractMaxBytes,
      verify: async (next, current) => {
        process.stderr.write('\n');
        await guard.verify(next, current);
      },
    });
    const store = await ListStore.open({ sources: [dir], cacheDir: path.join(config.dataDir, 'cache') });
    if (guard.accepted) process.stderr.write(`schoolgate: accepted (--accept-shrink): ${guard.accepted}\n`);
    process.stdout.write(`lists updated in ${dir}: ${store.report.entries} entries in ${store.report.categories.length} categories\n`);
    return 0;
  }
  if (sub === 'show') {
    const { sources, dataDir } = listSources(values);
    const store = await ListStore.open({ sources, cacheDir: path.join(dataDir, 'cache') });
    const r = store.report;
    const lines = [`${r.entries} entries, ${r.categories.length} categories, ${r.millis} ms${r.fromCache ? ' (compiled cache)' : ''}`, ''];
    lines.push(['category', 'usage', 'domains', 'urls', 'expressions', 'name'].join('\t'));
    for (const c of [...r.categories].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      lines.push([c.name, c.usage.join('+') || '-', c.domains, c.urls, c.expressions, c.friendlyName].join('\t'));
    }
    const skipped = r.sources.filter((s) => s.skippedCount > 0 || s.duplicates > 0);
    if (skipped.length) {
      lines.push('', 'source\tloaded\tduplicates\tskipped\tfirst skipped');
      for (const s of skipped) {
        const first = s.skipped[0];
        lines.push([s.source, s.loaded, s.duplicates, s.skippedCount, first ? `line ${first.line}: ${first.reason}: ${first.text}` : ''].join('\t'));
      }
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  }
  throw new SchoolgateError('SG_ERR_USAGE', 'usage: schoolgate lists update [--from DIR|URL] | schoolgate lists show [--lists DIR]');
}
