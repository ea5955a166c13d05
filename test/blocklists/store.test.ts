import { mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListStore } from '../../blocklists/store';
import { normalizeUrl } from '../../blocklists/normalize';
import { rng, syntheticDomain } from '../../bench/lib/corpus';
import { writeUnder } from '../helpers/files';
import { cacheFile, cacheKey } from '../../blocklists/cache';

let dir: string;
const w = (rel: string, text: string) => writeUnder(dir, rel, text);
const verdict = (s: ListStore, url: string, block: string[], allow: string[] = []) => {
  const v = s.classify(normalizeUrl(url), block, allow);
  return v.action === 'block' ? `block ${v.category}` : v.allowed ? `allow ${v.category}` : 'pass';
};

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sg-store-'));
  w('a/gambling/domains', 'casino.com\n');
  w('a/gambling/usage', 'black\n');
  w('a/adult/urls', 'pics.example/nsfw\n');
  w('a/adult/usage', 'black\n');
  w('a/liste_blanche/domains', 'school.example\n');
  w('a/liste_blanche/usage', 'white\n');
  w('b/games/domains', 'games.example\n');
  w('empty/gambling/domains', '# nothing\n');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('ListStore', () => {
  it('an empty source list gives an empty store that is not loaded', async () => {
    const s = await ListStore.open({ sources: [] });
    expect(s.loaded).toBe(false);
    expect(s.blackCategories()).toEqual([]);
    expect(verdict(s, 'http://casino.com/', ['gambling'])).toBe('pass');
  });

  it('opens, answers, and lists black categories in name order', async () => {
    const s = await ListStore.open({ sources: [path.join(dir, 'a')] });
    expect(s.loaded).toBe(true);
    expect(s.blackCategories()).toEqual(['adult', 'gambling']);
    expect(verdict(s, 'http://www.casino.com/', s.blackCategories())).toBe('block gambling');
    expect(verdict(s, 'http://pics.example/NSFW/1.jpg', s.blackCategories())).toBe('block adult');
    expect(s.report.sources.map((r) => path.relative(dir, r.source)).sort()).toEqual([
      'a/adult/urls', 'a/gambling/domains', 'a/liste_blanche/domains',
    ]);
  });

  it('reload swaps atomically, emits the report, and keeps serving the old set when the new is bad', async () => {
    const s = await ListStore.open({ sources: [path.join(dir, 'a')] });
    const seen: number[] = [];
    s.on('reload', (r) => seen.push(r.entries));
    const before = s.current;
    // A wholly different set: accepted explicitly, since every old category vanishes (see reload-guard.test.ts).
    const report = await s.reload([path.join(dir, 'b')], { accept: true });
    expect(report.entries).toBe(1);
    expect(seen).toEqual([1]);
    expect(s.current).not.toBe(before);
    expect(verdict(s, 'http://casino.com/', ['gambling', 'games'])).toBe('pass');
    expect(verdict(s, 'http://games.example/', ['gambling', 'games'])).toBe('block games');

    const serving = s.current;
    await expect(s.reload([path.join(dir, 'empty')], { accept: true })).rejects.toMatchObject({ code: 'SG_ERR_LIST_REJECTED' });
    await expect(s.reload([path.join(dir, 'missing')])).rejects.toMatchObject({ code: 'SG_ERR_LIST_REJECTED' });
    expect(s.current).toBe(serving);
    expect(verdict(s, 'http://games.example/', ['games'])).toBe('block games');
    expect(seen).toEqual([1]);
  });

  it('compiles off the hot path: lookups keep answering from the old set while a big reload runs', async () => {
    const r = rng(3);
    const big = Array.from({ length: 150_000 }, (_, i) => syntheticDomain(r, i));
    w('big/games/domains', `${big.join('\n')}\ngames.example\n`);
    const s = await ListStore.open({ sources: [path.join(dir, 'a')] });
    let answered = 0;
    let sawNew = false;
    const reload = s.reload([path.join(dir, 'big')], { accept: true });
    // the event loop keeps turning during the compile; every answer comes from a whole set
    while (!sawNew) {
      await new Promise((res) => setImmediate(res));
      const v = verdict(s, 'http://casino.com/', ['gambling', 'games']);
      const g = verdict(s, `http://${big[149_999]}/`, ['gambling', 'games']);
      if (v === 'block gambling') expect(g).toBe('pass');
      else {
        expect(g).toBe('block games');
        sawNew = true;
      }
      answered++;
    }
    await reload;
    expect(answered).toBeGreaterThan(3);
  });

  it('overrides: allow wins over everything, block adds its own category', async () => {
    const s = await ListStore.open({ sources: [path.join(dir, 'a')] });
    const block = s.blackCategories();
    s.setOverrides([
      { action: 'allow', kind: 'domain', entry: 'casino.com' },
      { action: 'block', kind: 'domain', entry: 'tiktok.com', category: 'social' },
      { action: 'block', kind: 'url', entry: 'www.videos.example/cats' },
      { action: 'block', kind: 'expression', entry: 'forbidden-word' },
      { action: 'block', kind: 'domain', entry: 'not a host' },
      { action: 'allow', kind: 'url', entry: 'school.example/exam' },
    ]);
    expect(verdict(s, 'http://casino.com/', block)).toBe('allow local-allow');
    expect(verdict(s, 'http://tiktok.com/@x', block)).toBe('block social');
    expect(verdict(s, 'http://videos.example/CATS/1', block)).toBe('block local');
    expect(verdict(s, 'http://any.example/a-forbidden-word', block)).toBe('block local');
    expect(verdict(s, 'http://school.example/exam/1', ['liste_blanche'])).toBe('allow local-allow');
    expect(verdict(s, 'http://school.example/', block, ['liste_blanche'])).toBe('allow liste_blanche');
    expect(verdict(s, 'http://pics.example/nsfw', block)).toBe('block adult');
    s.setOverrides([]);
    expect(verdict(s, 'http://casino.com/', block)).toBe('block gambling');
    expect(verdict(s, 'http://tiktok.com/', block)).toBe('pass');
  });

  it('uses the compiled cache, and a changed source invalidates it', async () => {
    const cacheDir = path.join(dir, 'cache');
    const src = path.join(dir, 'cached');
    w('cached/gambling/domains', 'casino.com\nbet.example\n');
    const first = await ListStore.open({ sources: [src], cacheDir });
    expect(first.report.fromCache).toBe(false);
    const second = await ListStore.open({ sources: [src], cacheDir });
    expect(second.report.fromCache).toBe(true);
    expect(second.report.entries).toBe(2);
    expect(verdict(second, 'http://a.bet.example/', ['gambling'])).toBe('block gambling');
    expect(second.report.categories.map((c) => c.name)).toEqual(['gambling']);

    w('cached/gambling/domains', 'casino.com\nbet.example\nnew.example\n');
    utimesSync(path.join(src, 'gambling/domains'), new Date(), new Date(Date.now() + 5000));
    const third = await ListStore.open({ sources: [src], cacheDir });
    expect(third.report.fromCache).toBe(false);
    expect(verdict(third, 'http://new.example/', ['gambling'])).toBe('block gambling');

    // a corrupt cache file is ignored, not trusted
    for (const f of readdirSync(cacheDir)) writeFileSync(path.join(cacheDir, f), 'garbage');
    const fourth = await ListStore.open({ sources: [src], cacheDir });
    expect(fourth.report.fromCache).toBe(false);
    expect(verdict(fourth, 'http://new.example/', ['gambling'])).toBe('block gambling');

    // stale compiled files do not pile up
    for (let i = 0; i < 6; i++) {
      w('cached/gambling/domains', `casino.com\nv${i}.example\n`);
      utimesSync(path.join(src, 'gambling/domains'), new Date(), new Date(Date.now() + 10_000 + i * 1000));
      await ListStore.open({ sources: [src], cacheDir });
    }
    expect(readdirSync(cacheDir).filter((f) => f.endsWith('.bin')).length).toBe(4);
  });

  it('gives the same verdicts from the cache, url entries (whose hosts share the domain table) included', async () => {
    const cacheDir = path.join(dir, 'cache-urls');
    const src = path.join(dir, 'cached-urls');
    w('cached-urls/adult/domains', 'pics.example\nx.example\n');
    w('cached-urls/adult/urls', 'www.pics.example/nsfw\nother.example/a/b\n');
    w('cached-urls/games/urls', 'x.example/play\n');
    const fresh = await ListStore.open({ sources: [src], cacheDir });
    const cached = await ListStore.open({ sources: [src], cacheDir });
    expect(cached.report.fromCache).toBe(true);
    // url hosts are table entries too, but only domain entries count as domain entries
    expect(fresh.report.entries).toBe(5);
    expect(cached.report.entries).toBe(5);
    const urls = ['http://pics.example/nsfw/1', 'http://www2.other.example/a/b/c', 'http://other.example/a', 'http://other.example/', 'http://www.x.example/play', 'http://sub.other.example/a/b'];
    for (const u of urls) {
      expect(cached.classify(normalizeUrl(u), ['games', 'adult'], []), u).toEqual(fresh.classify(normalizeUrl(u), ['games', 'adult'], []));
    }
    expect(verdict(cached, 'http://www2.other.example/a/b/c', ['adult'])).toBe('block adult');
    expect(verdict(cached, 'http://sub.other.example/a/b', ['adult'])).toBe('pass');
    expect(verdict(cached, 'http://www.x.example/play', ['games', 'adult'])).toBe('block games');
  });

  it('never reads a compiled file of an older format, even under the current name', async () => {
    const cacheDir = path.join(dir, 'cache-old');
    const src = path.join(dir, 'cached-old');
    w('cached-old/gambling/domains', 'casino.com\n');
    await ListStore.open({ sources: [src], cacheDir });
    const file = cacheFile(cacheDir, await cacheKey([src]));
    const buf = readFileSync(file);
    buf.write('SGLIST07', 0, 'latin1');
    writeFileSync(file, buf);
    const again = await ListStore.open({ sources: [src], cacheDir });
    expect(again.report.fromCache).toBe(false);
    expect(verdict(again, 'http://casino.com/', ['gambling'])).toBe('block gambling');
  });
});
