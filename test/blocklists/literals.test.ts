import { describe, expect, it } from 'vitest';
import { mayContain, requiredLiterals, urlLiterals } from '../../blocklists/literals';
import { ListBuilder, expressionTarget } from '../../blocklists/compiled';
import { normalizeUrl, matchPath } from '../../blocklists/normalize';
import { rng } from '../../bench/lib/corpus';

/** UT1's own expressions (malware, publicite, special, strict_ and strong_redirector) and some harder ones. */
const SOURCES: Array<[source: string, matching: string]> = [
  ['^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+/search\\?q=[0-9]+$', '1.2.3.4/search?q=5'],
  ['(/banner/|/sponsor/|/event.ng/|/Advertisement/|adverts/)', 'x.adverts/y'],
  ['.*/ymsgr*\\.exe', 'a.b/ymsgrrr.exe'],
  ['((google\\..*/search.q=cache)|(images.google.[a-z]+/images.q=tbn)|(alltheweb.com/search.*cat=img)|(re2.mm-.yimg.com/image))', 'images.google.fr/images?q=tbn'],
  ['((google\\..*/search\\?q=cache.*)|(bing\\.com/videos/search\\?q=.*)|(images\\.google\\..*/images\\?.*q=.*)|(altavista.*/(image|video)/results\\?.*q=.*))(anal|xxx|porn|sex|teen)', 'www.bing.com/videos/search?q=teen'],
  ['(^|[-/.])(xxx|porn)s?([-/.?]|$)', 'a.b/xxxs/'],
  ['[[:digit:]]{6}sex', 'd]]]]]]sex'],
  ['ab+cde{2,}f', 'abbbcdeeef'],
  ['x(?:abc|abd)?yz{0}w', 'xabdyw'],
  ['abc(?=def)|ghi(?!jkl)', 'ghijk'],
  ['ba{1}nner', 'banner'],
  ['com/ba[nm]ner', 'x.com/bamner'],
  ['/a{,2}bc}', '/a{,2}bc}'],
  ['\u017fex|kelvin', 'KELVIN'],
];

describe('requiredLiterals', () => {
  it('names what UT1 expressions need, lower-cased', () => {
    expect(requiredLiterals(SOURCES[0][0])).toEqual(['/search?q=']);
    expect(requiredLiterals(SOURCES[1][0])).toEqual(['/banner/', '/sponsor/', '/event', '/advertisement/', 'adverts/']);
    expect(requiredLiterals(SOURCES[2][0])).toEqual(['/ymsg']);
  });

  it('gives up (null) where it cannot be sure, and needs nothing from an invalid pattern', () => {
    for (const s of ['a|b', 'ab+c', '\\x41bcd', '\\u0041bcd', '(a)\\1bcd', '(?<n>abcd)', 'abc|', '.*', 'abc?']) expect(requiredLiterals(s), s).toBeNull();
    expect(requiredLiterals('(unclosed')).toEqual([]);
  });

  // Soundness, the one property that matters: whatever the regex matches holds one of the literals.
  it('every string a pattern matches contains one of its literals (random strings rich in their pieces)', () => {
    const r = rng(3);
    const alphabet = ['/', '.', '?', '=', 'q', 'a', 'b', 'c', 'x', 'S', 'E', 'X', 'ſ', 'K', '0', '7', '}', '{', ']', ':'];
    for (const [source, example] of SOURCES) {
      const lits = requiredLiterals(source);
      if (lits === null) continue;
      const re = new RegExp(source, 'i');
      expect(re.test(example), example).toBe(true);
      const pieces = [example, ...source.replace(/[\\^$()[\]|+*?]/g, ' ').split(/[ ]+/).filter(Boolean), ...lits.map((l) => l.toUpperCase())];
      let matched = 0;
      for (let i = 0; i < 4000; i++) {
        let s = i % 4 === 0 ? example : '';
        const n = i % 4 === 0 ? 0 : 1 + Math.floor(r() * 6);
        for (let k = 0; k < n; k++) s += r() < 0.5 ? pieces[Math.floor(r() * pieces.length)] : alphabet[Math.floor(r() * alphabet.length)];
        // random case: the regexes are case-insensitive
        s = s.replace(/[a-z]/gi, (c) => (r() < 0.3 ? c.toUpperCase() : c));
        if (!re.test(s)) continue;
        matched++;
        const lower = s.replace(/[A-Z]/g, (c) => c.toLowerCase());
        expect(lits.some((l) => lower.includes(l)), `${source} matched ${JSON.stringify(s)}`).toBe(true);
      }
      expect(matched, source).toBeGreaterThan(0);
    }
  });
});

describe('mayContain', () => {
  it('agrees with a substring search of the whole expression target, a literal straddling host and path included', () => {
    const lits = urlLiterals(['adverts/', '/banner/', 'google.', 'com/search']);
    const r = rng(8);
    const hosts = ['adverts', 'x.adverts', 'advert', 'google.com', 'images.google.fr', 'example.org', 'google'];
    const paths = ['/', '/Banner/x', '/ban', '/adverts/', '/search', '/x/com/search', '/ADVERTS/', '/%62anner/', '//banner/'];
    for (let i = 0; i < 3000; i++) {
      const url = normalizeUrl(`http://${hosts[Math.floor(r() * hosts.length)]}${paths[Math.floor(r() * paths.length)]}${paths[Math.floor(r() * paths.length)].slice(1)}`);
      const target = expressionTarget(url).toLowerCase();
      const expected = lits.some((l) => target.includes(l.text));
      expect(mayContain(lits, url.host, matchPath(url.path)), url.href).toBe(expected);
    }
  });
});

describe('classify with the literal prefilter', () => {
  it('blocks by expression wherever the literal sits, ports included, and passes when it is absent', () => {
    const b = new ListBuilder();
    const ads = b.category('publicite');
    b.addExpression(ads, '(/banner/|/sponsor/|adverts/)');
    const set = b.build();
    const v = (u: string) => set.classify(normalizeUrl(u), ['publicite']).action;
    expect(v('http://example.com/BANNER/1.png')).toBe('block');
    expect(v('http://x.adverts/y')).toBe('block');
    expect(v('http://x.ADVERTS:8080/y')).toBe('pass');
    expect(v('http://x.com:8080/Adverts/y')).toBe('block');
    expect(v('http://example.com/%62anner/')).toBe('block');
    expect(v('http://example.com//sponsor/')).toBe('block');
    expect(v('http://example.com/adverts')).toBe('pass');
    expect(v('http://adverts.example.com/')).toBe('pass');
    expect(v('http://example.com:8080/banner')).toBe('pass');
  });
});
