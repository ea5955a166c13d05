import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSchoolgateError } from '../../core/errors';
import { compileMatcher, wantsSupport } from '../../filter/safeguarding/matcher';
import { normalise } from '../../filter/safeguarding/normalise';
import { SAFEGUARDING_LISTS } from '../../filter/safeguarding/phrases';
import type { PhraseList } from '../../filter/safeguarding/types';

const shipped = compileMatcher(SAFEGUARDING_LISTS);

const list = (category: string, phrases: PhraseList['phrases'], extra: Partial<PhraseList> = {}): PhraseList => ({
  category, label: category, severity: 'incident', supportBanner: false, why: 'test', phrases, ...extra,
});

describe('normalise', () => {
  it.each([
    ['SUICIDE', 'suicide'], ['Sùïcídé', 'suicide'], ['ｓｅｌｆ ｈａｒｍ', 'self harm'], ['self-harm', 'self harm'], ['self_harm!!', 'self harm'],
    ['s3lf h4rm', 'self harm'], ['$elf h@rm', 'self harm'], ['k!ll', 'k1ll'], ['k|ll', 'k1ll'], ['help!', 'help'], ['@name', 'name'], ['$100', 's1oo'], ['$ 100', '1oo'],
    ['don\u2019t', 'dont'], ['sui\u200bcide', 'suicide'], ['sui\u00adcide', 'suicide'], ['ѕuicide', 'suicide'], ['straße', 'strasse'], ['ﬁnd', 'find'],
    ['kill my self', 'kill myself'], ['hurt your self', 'hurt yourself'], ['  many   spaces ', 'many spaces'], ['ℌello', 'hello'], ['İstanbul', 'istanbul'],
    ['116 123', '116 12e'], ['год', 'гoд'],
  ])('%j → %j', (input, out) => {
    expect(normalise(input)).toBe(out);
  });

  it('is idempotent on any text (fast-check)', () => {
    const tricky = fc.constantFrom(...'aeiloSs013457@$!|-_. \u0301\u0308\u200bѕаеоі１ｓßæİℌ\'’#'.split(''));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ unit: tricky, maxLength: 30 })), (s) => {
        const once = normalise(s);
        expect(normalise(once)).toBe(once);
      }),
      { numRuns: 3000 },
    );
  });

  it('leaves only lower-case letters, digits and single spaces, never at the ends', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        const n = normalise(s);
        expect(n).toBe(n.trim());
        expect(n).not.toMatch(/ {2}|[A-Z]|[\p{P}\p{S}\p{M}\p{Cf}]/u);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('matcher', () => {
  const m = compileMatcher([
    list('t', [
      { text: 'self harm', reason: 'r' },
      { text: 'weed', reason: 'r' },
      { text: 'heroin', reason: 'r' },
      { text: 'kill myself', reason: 'r', unless: ['laughing'] },
      { text: 'suicide', reason: 'r', variants: ['sucide'], unless: ['squad', 'romeo and juliet'] },
      { text: 'make explosives', reason: 'r' },
    ]),
  ]);
  const fired = (text: string) => m.matchAll(text).map((x) => x.phrase);

  it('matches whole words only', () => {
    expect(fired('heroin')).toEqual(['heroin']);
    expect(fired('heroine')).toEqual([]);
    expect(fired('antiheroin')).toEqual([]);
    expect(fired('heroin.')).toEqual(['heroin']);
  });

  it('forgives a missing space but not a space inside a word, unless the word is spelled out', () => {
    expect(fired('selfharm')).toEqual(['self harm']);
    expect(fired('s e l f h a r m')).toEqual(['self harm']);
    expect(fired('s.u.i.c.i.d.e')).toEqual(['suicide']);
    expect(fired('hero in')).toEqual([]);
    expect(fired('sui cide')).toEqual([]);
    expect(fired('makeexplosives')).toEqual(['make explosives']);
  });

  it('lets a letter repeat but never drop', () => {
    expect(fired('weeeeed')).toEqual(['weed']);
    expect(fired('wed')).toEqual([]);
    expect(fired('suuuiiiciiide')).toEqual(['suicide']);
    expect(fired('kil myself')).toEqual([]);
  });

  it('reads 1, | and ! as i or l, both in one word', () => {
    expect(fired('k1ll myse1f')).toEqual(['kill myself']);
    expect(fired('k!ll mys3|f')).toEqual(['kill myself']);
    expect(fired('5u1c1d3')).toEqual(['suicide']);
    expect(fired('111111111111111111111111111111 suicide')).toEqual(['suicide']);
  });

  it('reports the variant that fired under its phrase, and the words of the search', () => {
    expect(m.match('why sucide')).toMatchObject({ phrase: 'suicide', form: 'sucide', text: 'sucide' });
    expect(m.match('S U I C I D E now')).toMatchObject({ phrase: 'suicide', text: 's u i c i d e' });
  });

  it('cancels a phrase, not the search, when an `unless` word or phrase is present', () => {
    expect(fired('suicide squad')).toEqual([]);
    expect(fired('romeo and juliet suicide')).toEqual([]);
    expect(fired('juliet suicide')).toEqual(['suicide']);
    expect(fired('suicide squad made me want to kill myself')).toEqual(['kill myself']);
    expect(fired('killing myself laughing')).toEqual([]);
  });

  it('puts the most severe list first, then the earlier list; one match per phrase', () => {
    const two = compileMatcher([
      list('low', [{ text: 'pills', reason: 'r' }]),
      list('high', [{ text: 'overdose', reason: 'r' }], { severity: 'alert', supportBanner: true }),
      list('up', [{ text: 'pills overdose', reason: 'r', severity: 'alert' }]),
    ]);
    const all = two.matchAll('pills overdose pills overdose');
    expect(all.map((x) => [x.category, x.severity])).toEqual([['high', 'alert'], ['up', 'alert'], ['low', 'incident']]);
    expect(two.match('pills')?.category).toBe('low');
    expect(wantsSupport(all)).toBe(true);
    expect(wantsSupport(two.matchAll('pills'))).toBe(false);
  });

  it('refuses a phrase it could never match, naming where it is', () => {
    const bad = (text: string) => {
      try {
        compileMatcher([list('mine', [{ text: 'fine', reason: 'r' }, { text, reason: 'r' }])]);
        return null;
      } catch (err) {
        expect(isSchoolgateError(err, 'SG_ERR_VALIDATION')).toBe(true);
        return (err as Error).message;
      }
    };
    expect(bad('!!!')).toMatch(/mine\.phrases\[1\]: empty phrase/);
    expect(bad('自殺')).toMatch(/mine\.phrases\[1\]: .*letters a–z/);
    expect(bad('k1ll')).toBeNull();
  });

  it('matches a phrase typed with 1 in the list on i and on l', () => {
    const one = compileMatcher([list('x', [{ text: 'se1f h4rm', reason: 'r' }])]);
    expect(one.matchAll('self harm')).toHaveLength(1);
    expect(one.matchAll('seif harm')).toHaveLength(1);
  });

  it('never throws and returns within the lists on any text (fast-check)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        for (const x of shipped.matchAll(s)) expect(SAFEGUARDING_LISTS.some((l) => l.category === x.category)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});

/**
 * Every shipped phrase and variant, with the ways people disguise words: case, accents, full-width
 * and look-alike letters, leetspeak, repeated letters, joined or hyphenated or spelled-out words.
 */
describe('a phrase always matches itself, however it is written (fast-check)', () => {
  const forms = SAFEGUARDING_LISTS.flatMap((l) => l.phrases.flatMap((p) => [p.text, ...(p.variants ?? [])].map((form) => ({ list: l.category, phrase: p.text, form }))));
  const LEET: Record<string, string[]> = { a: ['4', '@'], e: ['3'], i: ['1', '!', '|'], l: ['1', '|'], o: ['0'], s: ['5', '$'], t: ['7'], b: ['8'], g: ['9'] };
  const HOMOGLYPH: Record<string, string> = { a: 'а', e: 'е', o: 'о', p: 'р', c: 'с', y: 'у', x: 'х', i: 'і', s: 'ѕ' };
  const MARKS = ['\u0301', '\u0300', '\u0308', '\u0302', '\u0327', '\u0303'];
  const PUNCT_LEET = new Set(['@', '$', '!', '|']);

  type Choice = { style: number; leet: number; mark: number; extra: number };
  const choice = fc.record({ style: fc.integer({ min: 0, max: 7 }), leet: fc.nat(2), mark: fc.nat(5), extra: fc.nat(3) });

  /** Writes the normalised form `n` in a disguise; `spelled` separates every letter. */
  function disguise(n: string, choices: Choice[], seps: number[], spelled: boolean): string {
    const words = n.split(' ');
    const SEPS = [' ', '-', '_', '.', '', '  ', ' - ', '\u200b '];
    let out = '';
    let k = 0;
    // Two neighbouring runs both written as 1 ("k111" for "kill") read as one run of one letter:
    // a known limit (README of the matcher), so the second stays plain.
    let lastWasOne = false;
    // Two symbols in a row ("1d3@$") read as a separator: also a known limit.
    let lastWasPunct = false;
    words.forEach((word, wi) => {
      if (wi > 0) {
        const sep = SEPS[seps[wi % seps.length]! % SEPS.length]!;
        // Joining two words that end and start alike makes one run of letters: "make explosives"
        // joined is spelled "makeexplosives" and the matcher stores that form, so keep the letters.
        out += spelled ? ' ' : sep;
      }
      // Runs of one letter get one disguise, so "ll" is never half leet.
      const runs = word.match(/(.)\1*/g) ?? [];
      runs.forEach((run, ri) => {
        const c = run[0]!;
        const ch = choices[k++ % choices.length]!;
        const first = ri === 0;
        const last = ri === runs.length - 1;
        let glyph = c;
        let allowMark = false;
        switch (ch.style) {
          case 1: glyph = c.toUpperCase(); allowMark = true; break;
          case 2: {
            const options = (LEET[c] ?? []).filter((g) => (!PUNCT_LEET.has(g) || (!spelled && !first && (g === '@' || g === '$' || !last))) && !(lastWasOne && ['1', '!', '|'].includes(g)) && !(lastWasPunct && PUNCT_LEET.has(g)));
            if (options.length) glyph = options[ch.leet % options.length]!;
            break;
          }
          case 3: allowMark = true; break;
          case 4: glyph = HOMOGLYPH[c] ?? c; break;
          case 5: glyph = /[a-z]/.test(c) ? String.fromCharCode(c.charCodeAt(0) + 0xfee0) : c; break;
          default: break;
        }
        lastWasOne = ['1', '!', '|'].includes(glyph);
        lastWasPunct = PUNCT_LEET.has(glyph);
        const unit = allowMark && /[a-z]/i.test(glyph) ? glyph + MARKS[ch.mark]! : glyph;
        out += unit.repeat(run.length + (ch.extra === 3 ? 2 : ch.extra === 2 ? 1 : 0));
        if (spelled && !last) out += ' ';
      });
    });
    return out;
  }

  it('in every list, in any casing, accents, leetspeak, spacing and repetition', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...forms),
        fc.array(choice, { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(7), { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        (f, choices, seps, spelled) => {
          const n = normalise(f.form);
          // Punctuation leet needs plain letters beside it; recompute those neighbours as plain.
          const safe = choices.map((c, i) => (c.style === 2 && i > 0 && choices[i - 1]!.style === 2 ? { ...c, style: 0 } : c));
          const text = disguise(n, safe, seps, spelled);
          const hit = shipped.matchAll(text).some((x) => x.category === f.list && x.phrase === f.phrase);
          expect(hit, `${f.list}: "${f.form}" written ${JSON.stringify(text)} → ${JSON.stringify(normalise(text))}`).toBe(true);
        },
      ),
      { numRuns: 4000 },
    );
  });
});

describe('speed', () => {
  it('compiles once and matches many searches a second (printed, not asserted)', () => {
    const t0 = performance.now();
    const m = compileMatcher(SAFEGUARDING_LISTS);
    const compileMs = performance.now() - t0;
    const searches = [
      'how to kill a process in linux', 'romeo and juliet act 5 summary', 'gcse maths past papers 2023 higher', 'why is the sky blue',
      'k1ll mys3lf', 'suicide squad cast', 'how to make a bath bomb', 'weather in manchester tomorrow', 'photosynthesis equation',
      's u i c i d e', 'world war 2 timeline for kids', 'how do volcanoes erupt', 'best minecraft seeds 1.21', 'self harm',
    ];
    const n = 50_000;
    let hits = 0;
    const t1 = performance.now();
    for (let i = 0; i < n; i++) if (m.match(searches[i % searches.length]!)) hits++;
    const s = (performance.now() - t1) / 1000;
    console.log(`[bench] safeguarding matcher: ${m.forms} forms, ${m.states} states, compiled in ${compileMs.toFixed(0)} ms; ${Math.round(n / s).toLocaleString('en-GB')} searches/s (${(s * 1e6 / n).toFixed(1)} µs each, ${hits} hits)`);
    expect(hits).toBeGreaterThan(0);
  });
});
