import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { posixToJs } from '../blocklists/parse';
import type { Logger } from '../core/log';

/**
 * Keyword lists search terms are checked against: UT1's `expressions` and
 * `very_restrictive_expression` files (squidGuard's own keyword files; the list engine loads the
 * first for URL matching, but upstream ships the adult keywords only in the second).
 */
export class SearchKeywords {
  private constructor(private sets: Array<{ category: string; re: RegExp }>) {}

  /** Takes another set's keywords (after the lists are reloaded) in one swap. */
  replaceWith(other: SearchKeywords): void {
    this.sets = other.sets;
  }

  static empty(): SearchKeywords {
    return new SearchKeywords([]);
  }

  /** Reads keyword files of the wanted categories (null: all) from UT1 folders (a root or one category folder). */
  static load(sources: readonly string[], categories: readonly string[] | null, logger?: Logger): SearchKeywords {
    const wanted = categories ? new Set(categories) : null;
    const sets: Array<{ category: string; re: RegExp }> = [];
    for (const source of sources) {
      for (const dir of categoryFolders(source)) {
        const category = path.basename(dir);
        if (wanted && !wanted.has(category)) continue;
        const patterns: string[] = [];
        for (const f of ['expressions', 'very_restrictive_expression']) {
          const file = path.join(dir, f);
          if (!existsSync(file)) continue;
          for (const line of readFileSync(file, 'utf8').split('\n')) {
            const t = line.trim();
            if (!t || t.startsWith('#')) continue;
            try {
              new RegExp(posixToJs(t), 'i');
              patterns.push(`(?:${posixToJs(t)})`);
            } catch (err) {
              logger?.warn({ file, err: (err as Error).message }, 'keyword expression skipped');
            }
          }
        }
        if (patterns.length) sets.push({ category, re: new RegExp(patterns.join('|'), 'i') });
      }
    }
    return new SearchKeywords(sets);
  }

  get size(): number {
    return this.sets.length;
  }

  /**
   * The first category (of `categories`) whose keywords the terms match, or null. The terms are
   * written as a query string (`q=free+word`) because UT1 expressions expect URL delimiters.
   */
  flag(terms: string, categories: readonly string[]): string | null {
    const q = `q=${terms.toLowerCase().trim().replace(/\s+/g, '+')}`;
    for (const s of this.sets) {
      if (categories.includes(s.category) && s.re.test(q)) return s.category;
    }
    return null;
  }
}

function categoryFolders(source: string): string[] {
  try {
    if (!statSync(source).isDirectory()) return [];
    const isCategory = ['domains', 'urls', 'expressions', 'very_restrictive_expression'].some((f) => existsSync(path.join(source, f)));
    if (isCategory) return [source];
    return readdirSync(source, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => path.join(source, e.name));
  } catch {
    return [];
  }
}
