import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { domainToASCII } from 'node:url';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ListBuilder } from '../../blocklists/compiled';
import { normalizeUrl } from '../../blocklists/normalize';
import { loadSources, parseLine, type FileFormat } from '../../blocklists/parse';
import type { NormalizedUrl } from '../../blocklists/types';
import { isSchoolgateError } from '../../core/errors';

/**
 * Properties of the URL normaliser and the list parsers, on generated input. Run counts are kept
 * moderate so the suite stays quick; fast-check prints the seed and the shrunk counterexample of a
 * failure, and `FC_SEED=<seed>` replays it.
 */
const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
/** `FC_SCALE=20` for a longer hunt by hand. */
const scale = Number(process.env.FC_SCALE ?? 1) || 1;
const runs = (numRuns: number): fc.Parameters<unknown> => ({ numRuns: Math.round(numRuns * scale), ...(seed === undefined ? {} : { seed }) });

// ---------------------------------------------------------------- generators

const lower = 'abcdefghijklmnopqrstuvwxyz';
const ldh = `${lower}0123456789-`;
const chars = (alphabet: string, min: number, max: number) =>
  fc.array(fc.constantFrom(...alphabet), { minLength: min, maxLength: max }).map((a) => a.join(''));
/** A DNS label: letters, digits and inner hyphens; never `xn--` (that is punycode, generated apart). */
const label = fc
  .tuple(chars(`${lower}0123456789`, 1, 1), chars(ldh, 0, 12), chars(`${lower}0123456789`, 1, 1))
  .map(([a, b, c]) => (b === '' && a === c ? a : a + b + c))
  .filter((l) => !/^xn--/.test(l) && !/^..--/.test(l));
/** The last label is letters: a numeric one would make the whole name read as an IPv4 address. */
const tld = chars(lower, 2, 6);
const hostName = fc.tuple(fc.array(label, { minLength: 1, maxLength: 3 }), tld).map(([ls, t]) => [...ls, t].join('.'));
/** Unicode labels: what a person types, which becomes punycode on the wire. */
const unicodeLabel = chars(`${lower}äöüßéèñçøåłžíóú`, 1, 10).filter((l) => /[^a-z]/.test(l) && domainToASCII(`${l}.example`) !== '');
const ipv4 = fc.integer({ min: 0, max: 0xffffffff });
const dotted = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/** Upper-cases some characters. */
const recase = (s: string) => fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length }).map((up) => [...s].map((c, i) => (up[i] ? c.toUpperCase() : c)).join(''));
/** Percent-encodes some characters (ASCII only), in either hex case. */
const percent = (s: string) =>
  fc.array(fc.integer({ min: 0, max: 3 }), { minLength: s.length, maxLength: s.length }).map((how) =>
    [...s].map((c, i) => {
      if (how[i] === 0 || c === '.' || c.charCodeAt(0) > 127) return c;
      const hex = c.charCodeAt(0).toString(16).padStart(2, '0');
      return `%${how[i] === 1 ? hex : hex.toUpperCase()}`;
    }).join(''),
  );
/** IPv4 as browsers and squid accept it: decimal, hex, octal, and the shortened a.b.c forms. */
const ipv4Spelling = (n: number) =>
  fc.constantFrom(
    dotted(n),
    String(n),
    `0x${n.toString(16)}`,
    `0X${n.toString(16).toUpperCase()}`,
    [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].map((o) => `0${o.toString(8)}`).join('.'),
    [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].map((o) => `0x${o.toString(16)}`).join('.'),
    `${n >>> 24}.${(n >>> 16) & 255}.${n & 0xffff}`,
    `${n >>> 24}.${n & 0xffffff}`,
  );
/** What may stand around a host without changing it: scheme case, userinfo, default port, trailing dot. */
const dressed = (host: string) =>
  fc
    .record({
      scheme: fc.constantFrom('http', 'HTTP', 'Http', 'https', 'HTTPS'),
      userinfo: fc.constantFrom('', 'user@', 'user:secret@', ':@', 'a%40b:c@'),
      dot: fc.boolean(),
      port: fc.boolean(),
      path: fc.constantFrom('/', '', '/a/b', '/a/./b/../c?q=1', '/%7Euser'),
    })
    .map(({ scheme, userinfo, dot, port, path: p }) => {
      const https = scheme.toLowerCase() === 'https';
      return `${scheme}://${userinfo}${host}${dot ? '.' : ''}${port ? (https ? ':443' : ':80') : ''}${p}`;
    });

/** What a hostile or broken client may send: arbitrary text, and text shaped like URLs. */
const anyText = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.webUrl({ withFragments: true, withQueryParameters: true }),
  fc.tuple(fc.constantFrom('http://', 'https://', 'HTTP://', '', '//', 'ftp://', 'ws://'), fc.string({ maxLength: 60 })).map(([a, b]) => a + b),
  fc.tuple(fc.constantFrom('http://', 'https://'), fc.stringMatching(/^[a-z0-9.%:@[\]\-_]{0,30}$/), fc.constantFrom('', '/', '/a?b', '/%2e%2E/x', '#f')).map(([a, b, c]) => a + b + c),
  // Paths dense in escapes and stray `%`: where decoding could make a new escape.
  { arbitrary: fc.tuple(fc.constantFrom('http://a.test/', 'https://a.test/x?'), chars('%%%%%3456aAfF/.', 0, 16)).map(([a, b]) => a + b), weight: 4 },
);

function normalizedOrError(text: string): { ok: NormalizedUrl } | { err: unknown } {
  try {
    return { ok: normalizeUrl(text) };
  } catch (err) {
    return { err };
  }
}

// ---------------------------------------------------------------- the URL normaliser

describe('normalizeUrl, on generated input', () => {
  it('never throws anything but SG_ERR_URL_INVALID', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const r = normalizedOrError(text);
        if ('err' in r) expect(isSchoolgateError(r.err, 'SG_ERR_URL_INVALID'), String(r.err)).toBe(true);
      }),
      runs(2000),
    );
  });

  it('is idempotent on the escapes a property found (decoding must not make a new escape)', () => {
    for (const text of ['http://a.test/%%34%31', 'http://a.test/%4%31', 'http://a.test/x?%%36%31', 'http://a.test/%', 'http://a.test/%%']) {
      const once = normalizeUrl(text);
      expect(normalizeUrl(once.href), text).toEqual(once);
    }
    // A stray `%` is the literal character: written as its escape, so `%%34%31` stays the resource `%41`, not `A`.
    expect(normalizeUrl('http://a.test/%%34%31').path).toBe('/%2541');
  });

  it('is idempotent: the normalised href normalises to itself', () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const r = normalizedOrError(text);
        if (!('ok' in r)) return;
        expect(normalizeUrl(r.ok.href)).toEqual(r.ok);
      }),
      runs(2000),
    );
  });

  it('gives a host one form however it is written: case, trailing dot, %-escapes, userinfo, default port', () => {
    fc.assert(
      fc.property(
        hostName.chain((h) => fc.tuple(fc.constant(h), recase(h).chain(percent).chain(dressed))),
        ([host, written]) => {
          expect(normalizeUrl(written).host).toBe(host);
          expect(normalizeUrl(written).port).toBeNull();
        },
      ),
      runs(1000),
    );
  });

  it('gives an IPv4 address one form in decimal, hex, octal and short spellings', () => {
    fc.assert(
      fc.property(ipv4.chain((n) => fc.tuple(fc.constant(n), ipv4Spelling(n).chain(recase).chain(dressed))), ([n, written]) => {
        expect(normalizeUrl(written).host).toBe(dotted(n));
      }),
      runs(1000),
    );
  });

  it('gives an IDN one form, typed in Unicode or sent as punycode', () => {
    fc.assert(
      fc.property(fc.tuple(unicodeLabel, hostName), fc.boolean(), ([u, rest], upper) => {
        const unicode = `${u}.${rest}`;
        const puny = domainToASCII(unicode);
        // Upper case where it maps back (ß upper-cases to SS, another name).
        const typed = upper ? [...unicode].map((c) => (c.toUpperCase().toLowerCase() === c ? c.toUpperCase() : c)).join('') : unicode;
        expect(normalizeUrl(`http://${typed}/`).host).toBe(puny);
        expect(normalizeUrl(`http://${puny.toUpperCase()}./`).host).toBe(puny);
      }),
      runs(500),
    );
  });
});

// ---------------------------------------------------------------- the list parsers

const FORMATS: FileFormat[] = ['domains', 'hosts', 'adguard', 'urls', 'expressions'];
/** A line as each format writes "this host and everything below it". */
const asEntry = (format: FileFormat, host: string, variant: number): string => {
  switch (format) {
    case 'domains': return [host, `.${host}`, `*.${host}`, `${host.toUpperCase()}.`, `  ${host}  # a comment`][variant % 5];
    case 'hosts': return [`0.0.0.0 ${host}`, `127.0.0.1\t${host} # ads`, `0.0.0.0 localhost ${host}`][variant % 3];
    case 'adguard': return [`||${host}^`, `||${host}`][variant % 2];
    case 'urls': return [host, `http://${host}/`, `www.${host}`][variant % 3];
    default: throw new Error(format);
  }
};

/** List lines: arbitrary text, and text close to valid entries of every format. */
const listLine = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  hostName,
  fc.tuple(fc.constantFrom('', '.', '*.', '||', '0.0.0.0 ', '127.0.0.1 ', '# ', '! ', 'http://', '[', '^'), hostName, fc.constantFrom('', '^', '/', '/path?x=1', ' # c', '$third-party', ':8080', '\t')).map((p) => p.join('')),
  fc.stringMatching(/^[a-z0-9.()[\]|*+?^$\\{},:-]{0,30}$/),
);

describe('list parsers, on generated input', () => {
  it('never throw on any line, in any format', () => {
    fc.assert(
      fc.property(fc.constantFrom(...FORMATS), fc.array(listLine, { maxLength: 20 }), (format, lines) => {
        const b = new ListBuilder();
        const cat = b.category('c');
        for (const line of lines) {
          const r = parseLine(b, cat, format, line);
          expect(r === null || r === 'loaded' || r === 'duplicate' || (typeof r === 'object' && typeof r.reason === 'string')).toBe(true);
        }
        b.build();
      }),
      runs(1500),
    );
  });

  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sg-prop-lists-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  let n = 0;

  it('count every line of a file, and report each skipped one by its line number and text', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<FileFormat>('domains', 'urls', 'expressions'),
        fc.array(listLine, { maxLength: 40 }),
        fc.constantFrom('\n', '\r\n'),
        async (format, lines, eol) => {
          const root = path.join(tmp, String(n++));
          mkdirSync(path.join(root, 'cat'), { recursive: true });
          // What the file holds once written as UTF-8 (lone surrogates become U+FFFD), line by line.
          const clean = lines.map((l) => Buffer.from(l.replace(/[\r\n]/g, ' ')).toString('utf8'));
          writeFileSync(path.join(root, 'cat', format), clean.join(eol));
          const [report] = await loadSources(new ListBuilder(), [root]);

          // The same lines through parseLine one by one: what the file's report must add up to.
          const b = new ListBuilder();
          const cat = b.category('cat');
          const want = { loaded: 0, duplicates: 0, skipped: [] as Array<{ line: number; reason: string; text: string }> };
          clean.forEach((line, i) => {
            const r = parseLine(b, cat, format, line);
            if (r === 'loaded') want.loaded++;
            else if (r === 'duplicate') want.duplicates++;
            else if (r !== null) want.skipped.push({ line: i + 1, reason: r.reason, text: line.trim().slice(0, 200) });
          });
          expect(report.loaded).toBe(want.loaded);
          expect(report.duplicates).toBe(want.duplicates);
          expect(report.skippedCount).toBe(want.skipped.length);
          expect(report.skipped).toEqual(want.skipped.slice(0, 20));
          rmSync(root, { recursive: true, force: true });
        },
      ),
      runs(200),
    );
  });

  it('match a listed domain, however the list writes it, on itself and its subdomains, and nothing beside it', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<FileFormat>('domains', 'hosts', 'adguard', 'urls'),
        hostName,
        fc.nat(),
        fc.array(label, { minLength: 1, maxLength: 2 }),
        label,
        (format, host, variant, sub, other) => {
          const b = new ListBuilder();
          const cat = b.category('listed');
          expect(parseLine(b, cat, format, asEntry(format, host, variant))).toBe('loaded');
          const lists = b.build();
          const verdict = (url: string) => lists.classify(normalizeUrl(url), ['listed']).action;
          expect(verdict(`http://${host}/`)).toBe('block');
          expect(verdict(`https://${host.toUpperCase()}.:443/any/path?q=1`)).toBe('block');
          // url entries name one host (squidGuard's urllist), give or take a www/web/ftp prefix.
          if (format === 'urls') expect(verdict(`http://www${variant % 3 || ''}.${host}/x`)).toBe('block');
          else expect(verdict(`http://${sub.join('.')}.${host}/x`)).toBe('block');
          // A label boundary: `other` + host is another name, and the parent is not listed.
          if (!(format === 'urls' && /^(www|web|ftp)\d*$/.test(other))) expect(verdict(`http://${other}${host}/`)).toBe('pass');
          const parent = host.slice(host.indexOf('.') + 1);
          expect(verdict(`http://${parent}/`)).toBe('pass');
        },
      ),
      runs(1000),
    );
  });

  it('match a listed host written one way in the list and another in the request (Unicode/punycode, IPv4 spellings, escapes)', () => {
    const spelledHost = fc.oneof(
      // [as the list writes it, as the request writes it]
      fc.tuple(unicodeLabel, hostName).map(([u, rest]) => `${u}.${rest}`).chain((unicode) =>
        fc.constantFrom<[string, string]>([unicode, domainToASCII(unicode)], [domainToASCII(unicode), unicode], [unicode, unicode])),
      ipv4.filter((n) => n >>> 24 !== 0).chain((n) => fc.tuple(fc.constantFrom(dotted(n), `0x${n.toString(16)}`), ipv4Spelling(n))),
      hostName.chain((h) => fc.tuple(recase(h), recase(h).chain(percent))),
    );
    fc.assert(
      fc.property(fc.constantFrom<FileFormat>('domains', 'hosts', 'adguard', 'urls'), spelledHost, (format, [listed, requested]) => {
        const b = new ListBuilder();
        const cat = b.category('listed');
        const line = format === 'hosts' ? `0.0.0.0 ${listed}` : format === 'adguard' ? `||${listed}^` : listed;
        expect(parseLine(b, cat, format, line), line).toBe('loaded');
        const lists = b.build();
        expect(lists.classify(normalizeUrl(`http://${requested}/page`), ['listed']).action).toBe('block');
      }),
      runs(1000),
    );
  });
});
