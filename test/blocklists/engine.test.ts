import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListBuilder } from '../../blocklists/compiled';
import { loadSources } from '../../blocklists/parse';
import { normalizeUrl } from '../../blocklists/normalize';
import { ListStore } from '../../blocklists/store';
import { TableBuilder } from '../../blocklists/table';
import { rng, syntheticDomain } from '../../bench/lib/corpus';
import { need, sharedListsMissing, ut1, sharedLists } from '../helpers/parts';
import { existsSync } from 'node:fs';
import { writeUnder } from '../helpers/files';

let dir: string;
const w = (rel: string, text: string) => writeUnder(dir, rel, text);

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sg-engine-'));
  w('ut1/global_usage', [
    '# comment', 'NAME:\tgambling', 'DEFAULT_TYPE: black', 'DESC EN: Casino games.', 'NAME EN: Gambling/Casino games', 'NAME FR: Jeux', '',
    'NAME: porn', 'DEFAULT_TYPE: black', 'NAME EN: Adult (X)', '', 'NAME: liste_blanche', 'DEFAULT_TYPE: white', 'NAME EN: Allowed',
  ].join('\n'));
  w('ut1/gambling/domains', 'casino.com\nCASINO.com\nbad host.com\n\n# note\n*.wild.com\nbet365.com\r\nsub.casino.com\n1.2.3.4\n');
  w('ut1/gambling/urls', 'news.example.org/poker\nwww.blog.example/casino/\nhttp://user@games.example:8080/Slots\n');
  w('ut1/gambling/usage', 'black\n# keywords\ncasino\n');
  w('ut1/porn/domains', 'casino.com\nexample.net\n');
  w('ut1/porn/expressions', '(^|[-/.])(xxx|porn)s?([-/.?]|$)\n[[:digit:]]{6}sex\n(unclosed\n');
  w('ut1/porn/usage', 'black\n');
  w('ut1/liste_blanche/domains', 'good.example.net\n');
  w('ut1/liste_blanche/usage', 'white\n');
  w('ut1/both/domains', 'both.example\n');
  w('ut1/both/usage', 'white\nblack\n');
  w('ut1/nousage/domains', 'nousage.example\n');
  w('hosts.txt', '# hosts\n127.0.0.1 localhost\n0.0.0.0 ads.tracker.com\n0.0.0.0 ads.tracker.com\n0.0.0.0 a.com b.com # two\nnot a hosts line\n0.0.0.0 bad!host\n:: v6.tracker.com\n');
  w('adguard-ags.txt', '! Title: x\n[Adblock Plus]\n||ads.example^\n||ads.example^\n||trk.example^$third-party\n@@||ok.example^\n/banner/*\n||WWW.Shout.Example^\n');
  w('plain.list', '# plain\nplain.example\nPLAIN.example.\nxn--bcher-kva.de\n');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function build(sources: string[]) {
  const b = new ListBuilder();
  const reports = await loadSources(b, sources);
  return { set: b.build(), reports };
}
const cls = (set: { classify: ListStore['classify'] }, url: string, block: string[], allow: string[] = []) => {
  const v = set.classify(normalizeUrl(url), block, allow);
  return v.action === 'block' ? `block ${v.category}` : v.allowed ? `allow ${v.category}` : 'pass';
};

describe('UT1 folders', () => {
  it('reads domains, urls, expressions, usage and global_usage, and reports every line it skips', async () => {
    const { set, reports } = await build([path.join(dir, 'ut1')]);
    const g = set.categories.get('gambling')!;
    expect(g).toMatchObject({ friendlyName: 'Gambling/Casino games', description: 'Casino games.', usage: ['black'], domains: 5, urls: 3 });
    expect(set.categories.get('both')!.usage).toEqual(['white', 'black']);
    expect(set.categories.get('liste_blanche')!.usage).toEqual(['white']);
    expect(set.categories.get('nousage')!.usage).toEqual([]);
    const gd = reports.find((r) => r.source.endsWith('gambling/domains'))!;
    // `*.wild.com` reads as wild.com and below, like a leading-dot entry
    expect(gd).toMatchObject({ category: 'gambling', loaded: 5, duplicates: 1, skippedCount: 1 });
    expect(gd.skipped.map((s) => [s.line, s.reason])).toEqual([[3, 'invalid host']]);
    expect(cls(set, 'http://x.wild.com/', ['gambling'])).toBe('block gambling');
    const pe = reports.find((r) => r.source.endsWith('porn/expressions'))!;
    expect(pe.loaded).toBe(2);
    expect(pe.skipped[0]).toMatchObject({ line: 3, text: '(unclosed' });
    expect(pe.skipped[0].reason).toMatch(/^invalid expression/);
  });

  it('domain entries match the host and every subdomain, on a label boundary only', async () => {
    const { set } = await build([path.join(dir, 'ut1')]);
    const b = ['gambling'];
    expect(cls(set, 'http://casino.com/', b)).toBe('block gambling');
    expect(cls(set, 'http://a.b.CASINO.com:8080/x', b)).toBe('block gambling');
    expect(cls(set, 'http://xcasino.com/', b)).toBe('pass');
    expect(cls(set, 'http://casino.com.evil.net/', b)).toBe('pass');
    expect(cls(set, 'http://com/', b)).toBe('pass');
    expect(cls(set, 'http://1.2.3.4/', b)).toBe('block gambling');
    expect(cls(set, 'http://11.2.3.4/', b)).toBe('pass');
    expect(cls(set, 'http://16909060/', b)).toBe('block gambling');
  });

  it('url entries are host/path prefixes with www/web/ftp stripped from entry and request', async () => {
    const { set } = await build([path.join(dir, 'ut1')]);
    const b = ['gambling'];
    expect(cls(set, 'http://news.example.org/poker', b)).toBe('block gambling');
    expect(cls(set, 'http://www3.news.example.org/POKER/table?x=1', b)).toBe('block gambling');
    expect(cls(set, 'http://news.example.org/pokerface', b)).toBe('block gambling'); // squidGuard: plain prefix
    expect(cls(set, 'http://news.example.org/other', b)).toBe('pass');
    expect(cls(set, 'http://other.news.example.org/poker', b)).toBe('pass');
    expect(cls(set, 'http://blog.example/casino/x', b)).toBe('block gambling');
    expect(cls(set, 'http://web.blog.example/casino/', b)).toBe('block gambling');
    expect(cls(set, 'http://blog.example/casino', b)).toBe('pass');
    expect(cls(set, 'https://games.example/slots/777', b)).toBe('block gambling');
    expect(cls(set, 'http://news.example.org//poker', b)).toBe('block gambling');
    expect(cls(set, 'http://news.example.org/%70oker', b)).toBe('block gambling');
  });

  it('expressions are case-insensitive regexes over host and path, POSIX classes included', async () => {
    const { set } = await build([path.join(dir, 'ut1')]);
    expect(cls(set, 'http://site.example/free-XXX-videos', ['porn'])).toBe('block porn');
    expect(cls(set, 'http://porn.example/', ['porn'])).toBe('block porn');
    expect(cls(set, 'http://site.example/123456SEX', ['porn'])).toBe('block porn');
    expect(cls(set, 'http://site.example/sussex', ['porn'])).toBe('pass');
    expect(set.classify(normalizeUrl('http://x.example/porn'), ['porn']).match).toMatchObject({ kind: 'expression', category: 'porn' });
  });

  it('checks categories in policy order; the first match names the verdict; allow categories win', async () => {
    const { set } = await build([path.join(dir, 'ut1')]);
    expect(cls(set, 'http://casino.com/', ['gambling', 'porn'])).toBe('block gambling');
    expect(cls(set, 'http://casino.com/', ['porn', 'gambling'])).toBe('block porn');
    expect(cls(set, 'http://casino.com/', ['nousage'])).toBe('pass');
    expect(cls(set, 'http://good.example.net/', ['porn'])).toBe('block porn');
    expect(cls(set, 'http://good.example.net/', ['porn'], ['liste_blanche'])).toBe('allow liste_blanche');
    expect(cls(set, 'http://bad.example.net/', ['porn'], ['liste_blanche'])).toBe('block porn');
    // a policy is read afresh when the caller changes it, even by editing the same arrays
    const block = ['porn'];
    const allow = ['liste_blanche'];
    expect(cls(set, 'http://good.example.net/', block, allow)).toBe('allow liste_blanche');
    expect(cls(set, 'http://good.example.net/', block, [])).toBe('block porn');
    expect(cls(set, 'http://good.example.net/', block)).toBe('block porn');
    allow.pop();
    expect(cls(set, 'http://good.example.net/', block, allow)).toBe('block porn');
    block.unshift('gambling');
    expect(cls(set, 'http://casino.com/', block, allow)).toBe('block gambling');
    expect(set.matches(normalizeUrl('http://sub.casino.com/xxx')).map((m) => `${m.category}:${m.kind}:${m.entry}`).sort()).toEqual([
      'gambling:domain:casino.com', 'gambling:domain:sub.casino.com', 'porn:domain:casino.com', 'porn:expression:(^|[-/.])(xxx|porn)s?([-/.?]|$)',
    ]);
  });
});

describe('long url lists (prefix index)', () => {
  it('answers exactly as an in-order scan of the host\'s entries would', () => {
    // 300 entries on one host: past the size where the lookup switches from a scan to the index
    const b = new ListBuilder();
    const cats = ['a', 'b', 'c', 'ok'].map((n) => b.category(n, n === 'ok' ? { usage: ['white'] } : {}));
    const r = rng(7);
    const segs = ['x', 'xy', 'xyz', 'doc', 'd', 'doc/d', 'doc/d/1', 'forms', 'f'];
    const entries: Array<{ cat: number; prefix: string }> = [];
    for (let i = 0; i < 300; i++) {
      const prefix = `/${segs[Math.floor(r() * segs.length)]}${r() < 0.5 ? '' : `/${Math.floor(r() * 5)}`}`;
      const cat = cats[Math.floor(r() * cats.length)];
      if (b.addUrl(cat, 'big.example', prefix, `big.example${prefix}`)) entries.push({ cat, prefix });
    }
    expect(entries.length).toBeGreaterThan(128);
    b.addDomain(cats[2], 'big.example');
    const set = b.build();
    const names = ['a', 'b', 'c', 'ok'];
    const policies: Array<[string[], string[]]> = [[['a', 'b', 'c'], []], [['c', 'b', 'a'], ['ok']], [['b'], []], [['c'], ['ok']]];
    for (const [block, allow] of policies) {
      for (const p of ['/', '/x', '/xy/3', '/xyz/1/q', '/doc/d/1/e', '/doc', '/forms/2', '/f', '/zzz', '/d/4']) {
        // the reference: domain first, then every url entry in list order, as squidGuard reads them
        let best = block.indexOf('c');
        let want: { category: string; entry: string } | null = best >= 0 ? { category: 'c', entry: 'big.example' } : null;
        if (best < 0) best = Infinity;
        let allowed: string | null = null;
        for (const e of entries) {
          if (!p.startsWith(e.prefix)) continue;
          const name = names[e.cat];
          if (allow.includes(name)) allowed ??= `big.example${e.prefix}`;
          else if (block.indexOf(name) >= 0 && block.indexOf(name) < best) {
            best = block.indexOf(name);
            want = { category: name, entry: `big.example${e.prefix}` };
          }
        }
        const v = set.classify(normalizeUrl(`http://big.example${p}`), block, allow);
        if (allowed) expect(v, p).toMatchObject({ action: 'pass', allowed: true, match: { category: 'ok', entry: allowed } });
        else if (want) expect(v, p).toMatchObject({ action: 'block', category: want.category, match: { entry: want.entry } });
        else expect(v.action, p).toBe('pass');
      }
    }
  });
});

describe('expressions across categories (one prefilter regex per policy)', () => {
  it('names the first category in policy order, lets an allow expression win, and keeps back-references right', () => {
    const b = new ListBuilder();
    const [x, y, z, ok] = ['x', 'y', 'z', 'ok'].map((n) => b.category(n, n === 'ok' ? { usage: ['white'] } : {}));
    b.addExpression(x, '/ads/');
    b.addExpression(y, '(banner|ads)');
    b.addExpression(z, '/(ab)\\1/'); // matches /abab/ only: a join that renumbered groups would break it
    b.addExpression(ok, 'school-ads');
    const set = b.build();
    const v = (u: string, block: string[], allow: string[] = []) => set.classify(normalizeUrl(u), block, allow);
    expect(v('http://h.example/ads/1', ['x', 'y'])).toMatchObject({ action: 'block', category: 'x', match: { kind: 'expression', entry: '/ads/' } });
    expect(v('http://h.example/ads/1', ['y', 'x'])).toMatchObject({ action: 'block', category: 'y' });
    expect(v('http://h.example/banner', ['x', 'y'])).toMatchObject({ action: 'block', category: 'y' });
    expect(v('http://h.example/other', ['x', 'y']).action).toBe('pass');
    expect(v('http://school-ads.example/ads/', ['x', 'y'], ['ok'])).toMatchObject({ action: 'pass', allowed: true, category: 'ok' });
    expect(v('http://h.example/abab/', ['x', 'z'])).toMatchObject({ action: 'block', category: 'z' });
    expect(v('http://h.example/abcd/', ['x', 'z']).action).toBe('pass');
    expect(v('http://h.example/abab/', ['y', 'z', 'x'])).toMatchObject({ action: 'block', category: 'z' });
  });

  it('shares one frozen pass verdict rather than allocating one per lookup', () => {
    const b = new ListBuilder();
    b.addDomain(b.category('x'), 'listed.example');
    const set = b.build();
    const a = set.classify(normalizeUrl('http://clean.example/'), ['x'], []);
    expect(a).toEqual({ action: 'pass' });
    expect(Object.isFrozen(a)).toBe(true);
    expect(set.classify(normalizeUrl('http://other.example/'), ['x'], [])).toBe(a);
  });
});

describe('hosts, AdGuard and plain lists', () => {
  it('auto-detects each format, names the category after the file and reports skips', async () => {
    const { set, reports } = await build([path.join(dir, 'hosts.txt'), path.join(dir, 'adguard-ags.txt'), path.join(dir, 'plain.list')]);
    expect([...set.categories.keys()]).toEqual(['hosts', 'adguard-ags', 'plain']);
    const [h, a, p] = reports;
    expect(h).toMatchObject({ loaded: 3, duplicates: 1, skippedCount: 2 });
    expect(h.skipped.map((s) => s.reason)).toEqual(['unsupported syntax', 'invalid host']);
    expect(a).toMatchObject({ loaded: 2, duplicates: 1, skippedCount: 3 });
    expect(a.skipped.every((s) => s.reason === 'unsupported syntax')).toBe(true);
    expect(p).toMatchObject({ loaded: 2, duplicates: 1, skippedCount: 0 });
    const all = ['hosts', 'adguard-ags', 'plain'];
    expect(cls(set, 'http://x.ads.tracker.com/', all)).toBe('block hosts');
    expect(cls(set, 'http://b.com/', all)).toBe('block hosts');
    expect(cls(set, 'http://localhost/', all)).toBe('pass');
    expect(cls(set, 'http://[::1]/', all)).toBe('pass');
    expect(cls(set, 'http://v6.tracker.com/', all)).toBe('block hosts');
    expect(cls(set, 'http://ads.example/', all)).toBe('block adguard-ags');
    expect(cls(set, 'http://trk.example/', all)).toBe('pass');
    expect(cls(set, 'http://www.shout.example/', all)).toBe('block adguard-ags');
    expect(cls(set, 'http://plain.example/', all)).toBe('block plain');
    expect(cls(set, 'http://bücher.de/', all)).toBe('block plain');
  });

  it('reads the shared Block List Project files without a crash', async (ctx) => {
    // These are the Block List Project's files, not UT1's: their absence is what the skip names.
    const bl = path.join(sharedLists, 'blocklistproject');
    const files = ['torrent.txt', 'adguard/piracy-ags.txt'].map((f) => path.join(bl, f));
    const absent = files.filter((f) => !existsSync(f));
    if (need('shared Block List Project lists', absent.length ? `${absent.join(', ')} not found` : null) !== null) ctx.skip();
    const { set, reports } = await build(files);
    for (const r of reports) expect(r.loaded).toBeGreaterThan(100);
    expect(set.categories.has('torrent')).toBe(true);
    expect(cls(set, 'http://1337x.to/', ['piracy-ags'])).toBe('block piracy-ags');
  });

  it('fails a missing source with SG_ERR_LIST_SOURCE', async () => {
    await expect(build([path.join(dir, 'nope')])).rejects.toMatchObject({ code: 'SG_ERR_LIST_SOURCE' });
  });
});

describe('the compact table', () => {
  it('finds every one of 200,000 seeded domains and none of 200,000 others', () => {
    const r = rng(7);
    const t = new TableBuilder();
    const inList: string[] = [];
    for (let i = 0; i < 200_000; i++) {
      const d = syntheticDomain(r, i);
      inList.push(d);
      t.add(d, i, (old) => old);
    }
    const c = t.finish();
    expect(c.count).toBe(200_000);
    for (let i = 0; i < inList.length; i += 7) expect(c.value(c.lookup(inList[i]))).toBe(i);
    let falseHits = 0;
    for (let i = 0; i < 200_000; i++) if (c.lookup(`${syntheticDomain(r, 1e7 + i)}x`) >= 0) falseHits++;
    expect(falseHits).toBe(0);
    const hits = new Int32Array(8);
    expect(c.suffixHits(`a.b.${inList[5]}`, hits)).toBe(1);
    expect(c.entry(hits[0])).toBe(inList[5]);
  });
});

describe('real UT1', () => {
  it('blocks 000-online-casino.com as gambling with the friendly name from global_usage', async (ctx) => {
    if (need('shared UT1 lists', sharedListsMissing()) !== null) ctx.skip();
    const store = await ListStore.open({ sources: [ut1] });
    expect(store.loaded).toBe(true);
    expect(store.classify(normalizeUrl('http://000-online-casino.com/'), store.blackCategories(), ['liste_blanche'])).toMatchObject({ action: 'block', category: 'gambling' });
    expect(store.current.categories.get('gambling')!.friendlyName).toBe('Gambling/Casino games');
    expect(store.blackCategories()).toContain('adult');
    expect(store.blackCategories()).not.toContain('liste_blanche');
    expect(store.report.entries).toBeGreaterThan(400_000);
  });
});

describe('url entries on one host', () => {
  it('match by prefix whatever characters their first few hold (wide, escaped, short or none)', async () => {
    const b = new ListBuilder();
    const cat = b.category('adult');
    const other = b.category('games');
    const entries: Array<[string, number]> = [
      ['/', other], ['/a', cat], ['/ab', cat], ['/abcdefg', cat], ['/€uro/x', cat], ['/x€', cat], ['/%00z', cat], ['/Up', cat], ['/q?x=1', cat],
    ];
    for (const [p, c] of entries) b.addUrl(c, 'wide.example', p.toLowerCase().replace('%00', '\u0000'), `wide.example${p}`);
    const set = b.build();
    const v = (path: string, block = ['adult']) => {
      const r = set.classify({ scheme: 'http', host: 'wide.example', port: null, path, href: `http://wide.example${path}` }, block);
      return r.action === 'block' ? r.match!.entry : 'pass';
    };
    expect(v('/€uro/x/y')).toBe('wide.example/€uro/x');
    expect(v('/€uro/')).toBe('pass');
    expect(v('/x€')).toBe('wide.example/x€');
    expect(v('/x\u20ad')).toBe('pass');
    expect(v('/\u0000z1')).toBe('wide.example/%00z');
    expect(v('/up/1')).toBe('wide.example/Up');
    expect(v('/abcdefgh')).toBe('wide.example/a');
    expect(v('/b')).toBe('pass');
    expect(v('/q?x=1&y')).toBe('wide.example/q?x=1');
    expect(v('/b', ['games', 'adult'])).toBe('wide.example/');
  });
});

describe('IP addresses', () => {
  it('match exactly, IPv6 in every ending form (hex letter, digit, colon) and IPv4-mapped with its dots', async () => {
    const b = new ListBuilder();
    const cat = b.category('bad');
    for (const h of ['2001:db8::beef', '2001:db8::1', 'fe80::', '::ffff:102:304', '2.3.4', '1.2.3.4']) b.addDomain(cat, h);
    const set = b.build();
    const v = (u: string) => set.classify(normalizeUrl(u), ['bad']).action;
    expect(v('http://[2001:db8::beef]/')).toBe('block');
    expect(v('http://[2001:DB8::BEEF]:8080/x')).toBe('block');
    expect(v('http://[2001:db8::1]/')).toBe('block');
    expect(v('http://[fe80::]/')).toBe('block');
    expect(v('http://[::ffff:1.2.3.4]/')).toBe('block');
    expect(v('http://[2001:db8::bee]/')).toBe('pass');
    expect(v('http://1.2.3.4/')).toBe('block');
    expect(v('http://5.2.3.4/')).toBe('pass');
  });
});
