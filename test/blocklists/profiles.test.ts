import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalizeUrl } from '../../blocklists/normalize';
import { fileCategory } from '../../blocklists/parse';
import { PolicyGroups } from '../../blocklists/policy-groups';
import {
  DFE_HARMS, friendlyCategoryName, PROFILE_GROUPS, profileCategories, schoolServices, ukSchoolsProfile, validateProfile, validateSchoolServices,
} from '../../blocklists/profiles';
import { ListStore } from '../../blocklists/store';
import type { ListSet } from '../../blocklists/types';
import { loadConfig, type Config } from '../../core/config';
import type { Logger } from '../../core/log';
import { silentLogger } from '../../core/log';
import { decideRequest, type Policy } from '../../filter/decide';
import { makeLists } from '../../harness/lists';
import { need, sharedLists, sharedListsMissing, ut1 } from '../helpers/parts';
import { UK_SCHOOL_SITES } from './fixtures/uk-school-sites';

const skip = need('shared UT1 lists', sharedListsMissing()) !== null;
const blp = path.join(sharedLists, 'blocklistproject');
/** What a school loads: the UT1 folder, and the Block List Project's files beside it. */
const realSources = () => [
  ut1,
  ...readdirSync(blp).filter((f) => f.endsWith('.txt')).map((f) => path.join(blp, f)),
  ...readdirSync(path.join(blp, 'adguard')).map((f) => path.join(blp, 'adguard', f)),
];

const profile = ukSchoolsProfile();

describe('the shipped profile and school-services files', () => {
  it('are valid, and every category has an English name, a DfE harm, a decision per group and a reason', () => {
    expect(profile.categories.length).toBeGreaterThan(80);
    for (const c of profile.categories) {
      expect(c.friendlyName, c.name).not.toBe(c.name);
      expect(c.friendlyName, c.name).toMatch(/^[A-Z]/);
      expect(DFE_HARMS, c.name).toContain(c.harm);
      expect(Object.keys(c.block).sort(), c.name).toEqual([...PROFILE_GROUPS].sort());
      expect(c.reason.length, c.name).toBeGreaterThan(10);
    }
    // No raw French folder names on screen.
    expect(friendlyCategoryName('arjel')).toBe('Licensed gambling (France)');
    expect(friendlyCategoryName('tricheur_pix')).toBe('French PIX exam answers');
    expect(friendlyCategoryName('agressif', new Map([['agressif', { friendlyName: 'Aggressive (english)' }]]))).toBe('Hate and violence');
    // Not in the profile: the list's own name, else the folder's.
    expect(friendlyCategoryName('weapons', new Map([['weapons', { friendlyName: 'Weapons list' }]]))).toBe('Weapons list');
    expect(friendlyCategoryName('nosuch')).toBe('nosuch');
    const services = schoolServices();
    expect(services.length).toBeGreaterThan(60);
    for (const s of services) expect(s.reason.length, s.domain).toBeGreaterThan(5);
  });

  it.skipIf(skip)('maps every UT1 category and every Block List Project list in ../shared/blocklists', () => {
    const ut1Names = readdirSync(ut1, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    const blpNames = realSources().slice(1).map(fileCategory);
    expect(ut1Names.length).toBeGreaterThan(60);
    const missing = [...ut1Names, ...blpNames].filter((n) => !profile.byName.has(n));
    expect(missing).toEqual([]);
  });

  it('refuses a broken profile or allow list, naming each problem', () => {
    const good = { name: 'gambling', source: 'ut1', friendlyName: 'Gambling', harm: 'gambling', block: { pupils: true, staff: true, guests: true }, reason: 'betting' };
    const groups = { pupils: 'p', staff: 's', guests: 'g' };
    expect(() => validateProfile({ groups, categories: [good] })).not.toThrow();
    const bad = () =>
      validateProfile({
        groups: { pupils: 'p', staff: 's' },
        categories: [
          good,
          good,
          { ...good, name: 'arjel', friendlyName: 'arjel' },
          { ...good, name: 'x', harm: 'rude' },
          { ...good, name: 'y', block: { pupils: true, staff: 'yes', guests: true } },
          { ...good, name: 'z', reason: '' },
        ],
      });
    expect(bad).toThrow(/groups\.guests must describe the group/);
    expect(bad).toThrow(/categories\[1\] \(gambling\): listed twice/);
    expect(bad).toThrow(/categories\[2\] \(arjel\)\.friendlyName must be English words/);
    expect(bad).toThrow(/categories\[3\] \(x\)\.harm must be one of/);
    expect(bad).toThrow(/categories\[4\] \(y\)\.block\.staff must be true or false/);
    expect(bad).toThrow(/categories\[5\] \(z\)\.reason is required/);
    expect(() => validateSchoolServices({ entries: [{ domain: 'https://bbc.co.uk/', reason: 'x' }] })).toThrow(/entries\[0\]\.domain must be a lower-case domain/);
    expect(() => validateSchoolServices({ entries: [{ domain: 'bbc.co.uk' }] })).toThrow(/entries\[0\] \(bbc\.co\.uk\)\.reason is required/);
  });

  it('takes schoolServices from the config file as true or false only', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sg-profiles-conf-'));
    try {
      const file = path.join(dir, 'schoolgate.json');
      writeFileSync(file, JSON.stringify({ schoolServices: false }));
      expect(loadConfig({ 'data-dir': dir }, {}, dir).schoolServices).toBe(false);
      writeFileSync(file, JSON.stringify({ schoolServices: 'no' }));
      expect(() => loadConfig({ 'data-dir': dir }, {}, dir)).toThrow(/schoolServices/);
      writeFileSync(file, JSON.stringify({ schoolservices: false }));
      expect(() => loadConfig({ 'data-dir': dir }, {}, dir)).toThrow(/did you mean schoolServices/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('puts loaded categories it does not know in pupils\' and guests\' lists when black, and illegal lists in everyone\'s', () => {
    const loaded = new Map([
      ['gambling', { name: 'gambling', usage: ['black' as const] }],
      ['games', { name: 'games', usage: ['black' as const] }],
      ['weapons', { name: 'weapons', usage: ['black' as const] }],
      ['ourlist', { name: 'ourlist', usage: [] }],
      ['iwf', { name: 'iwf', usage: [] }],
    ]);
    const { groups, unknown } = profileCategories(profile, loaded, ['iwf', 'ctiru']);
    expect(unknown).toEqual(['ourlist', 'weapons']);
    expect(groups.pupils).toEqual(['iwf', 'gambling', 'games', 'weapons']);
    expect(groups.guests).toEqual(['iwf', 'gambling', 'weapons']);
    expect(groups.staff).toEqual(['iwf', 'gambling']);
  });
});

describe.skipIf(skip)('the UK school profile against the real lists', () => {
  let store: ListStore;
  let policies: PolicyGroups;
  let policy: Policy;
  let config: Config;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sg-profiles-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  const policyOver = (groups: PolicyGroups, s: ListStore): Policy => {
    const live: ListSet = { categories: s.current.categories, classify: (u, b, a) => s.classify(u, b, a ?? []), matches: (u) => s.current.matches(u) };
    return { lists: () => live, categoriesFor: (g) => groups.categoriesFor(g), allowCategories: config.allowCategories, bypassHosts: [] };
  };
  const verdict = (p: Policy, url: string, group: string) => {
    const d = decideRequest({ url: normalizeUrl(url), group }, p);
    return d.action === 'block' ? `block ${d.category}` : 'pass';
  };

  beforeAll(async () => {
    // The default install: no --categories, no policy groups, the school-services list on.
    config = loadConfig({ 'data-dir': tmp }, {}, tmp);
    expect(config.categories).toBeNull();
    expect(config.defaultGroup).toBe('pupils');
    expect(config.schoolServices).toBe(true);
    store = await ListStore.open({ sources: realSources(), cacheDir: path.join(tmp, 'cache') });
    store.setSchoolServices(schoolServices().map((s) => s.domain));
    policies = new PolicyGroups(config, store);
    policy = policyOver(policies, store);
  });

  it(`lets ${UK_SCHOOL_SITES.length} everyday UK school sites through for pupils, staff and guests`, () => {
    expect(UK_SCHOOL_SITES.length).toBeGreaterThanOrEqual(60);
    for (const group of ['pupils', 'staff', 'guests']) {
      const blocked = UK_SCHOOL_SITES.map((u) => [u, verdict(policy, u, group)]).filter(([, v]) => v !== 'pass');
      expect(blocked, group).toEqual([]);
    }
    // An unidentified client is a pupil.
    expect(policies.categoriesFor(null)).toBe(policies.categoriesFor('pupils'));
  });

  it('blocks for pupils samples of every harm category, taken from the list files themselves', () => {
    const harmful = profile.categories.filter((c) => c.harm !== 'none' && c.block.pupils && store.current.categories.has(c.name));
    expect(harmful.map((c) => c.name)).toEqual(expect.arrayContaining(['adult', 'agressif', 'dangerous_material', 'drogue', 'gambling', 'dating', 'hacking', 'malware', 'phishing', 'vpn', 'redirector', 'doh', 'warez', 'piracy', 'torrent', 'drugs', 'scam']));
    const seenHarms = new Set<string>();
    for (const c of harmful) {
      const samples = sampleEntries(c.name).filter((u) => store.current.matches(normalizeUrl(u)).some((m) => m.category === c.name)).slice(0, 5);
      expect(samples.length, `${c.name}: samples from its files`).toBeGreaterThanOrEqual(1);
      for (const u of samples) {
        expect(verdict(policy, u, 'pupils'), `${c.name}: ${u}`).toMatch(/^block /);
        if (c.block.guests) expect(verdict(policy, u, 'guests'), `${c.name}: ${u} (guests)`).toMatch(/^block /);
        if (c.block.staff) expect(verdict(policy, u, 'staff'), `${c.name}: ${u} (staff)`).toMatch(/^block /);
      }
      seenHarms.add(c.harm);
    }
    // Every DfE harm these lists carry is covered (self-harm is left to the phrase lists: no list here carries it).
    expect([...seenHarms].sort()).toEqual(DFE_HARMS.filter((h) => h !== 'none' && h !== 'self-harm').sort());
  });

  it('differs between pupils and staff where schools differ, and keeps guests to the harms', () => {
    const table: Array<[string, string, 'block' | 'pass', 'block' | 'pass']> = [
      // url, category expected for pupils, staff, guests
      ['https://www.facebook.com/', 'social_networks', 'pass', 'pass'],
      ['https://www.instagram.com/', 'social_networks', 'pass', 'pass'],
      ['https://www.tiktok.com/', 'social_networks', 'pass', 'pass'],
      ['https://discord.com/', 'social_networks', 'pass', 'pass'], // also UT1 chat: the first blocked category names it
      ['https://www.12buzz.com/', 'chat', 'pass', 'pass'],
      ['https://www.hotmail.com/', 'webmail', 'pass', 'pass'],
      ['https://www.roblox.com/', 'games', 'pass', 'pass'],
      ['https://www.coolmathgames.com/', 'games', 'pass', 'pass'],
      ['https://chatgpt.com/', 'ai', 'pass', 'pass'],
      ['https://www.bershka.com/', 'lingerie', 'pass', 'pass'],
      ['https://www.dropbox.com/', 'filehosting', 'pass', 'pass'],
      ['https://www.rustdesk.com/', 'remote-control', 'pass', 'block'],
      ['https://www.bet365.com/', 'gambling', 'block', 'block'],
    ];
    for (const [url, category, staff, guests] of table) {
      expect(verdict(policy, url, 'pupils'), url).toBe(`block ${category}`);
      expect(verdict(policy, url, 'staff'), url).toBe(staff === 'pass' ? 'pass' : `block ${category}`);
      expect(verdict(policy, url, 'guests'), url).toBe(guests === 'pass' ? 'pass' : `block ${category}`);
    }
    // A group name the profile does not know (a clients entry, an old config's "default") is treated as pupils.
    expect(verdict(policy, 'https://www.facebook.com/', 'sixth-form')).toBe('block social_networks');
  });

  it('the school-services list wins over the lists\' false positives, unless the school turns it off', async () => {
    const bare = await ListStore.open({ sources: realSources(), cacheDir: path.join(tmp, 'cache') });
    const off = policyOver(new PolicyGroups(config, bare), bare);
    // What day one looked like without it (issue 14): Teams, Gmail, Sparx and National Geographic blocked.
    expect(verdict(off, 'https://teams.microsoft.com/', 'pupils')).toBe('block chat');
    expect(verdict(off, 'https://mail.google.com/mail/', 'pupils')).toBe('block webmail');
    expect(verdict(off, 'https://app.sparxmaths.uk/', 'pupils')).toBe('block games');
    expect(verdict(off, 'https://kids.nationalgeographic.com/', 'pupils')).toBe('block games');
    expect(verdict(off, 'https://www.nasa.gov/', 'staff')).toBe('block torrent');
    expect(verdict(off, 'https://www.linkedin.com/', 'pupils')).toBe('block social_networks');
    // With it, they pass, under its own allow category.
    expect(store.classify(normalizeUrl('https://teams.microsoft.com/'), policies.categoriesFor('pupils'), config.allowCategories)).toMatchObject({ action: 'pass', allowed: true, category: 'school_services' });
    // The school's own block override still wins over it.
    store.setOverrides([{ action: 'block', kind: 'domain', entry: 'kahoot.it', category: 'local' }]);
    try {
      expect(store.classify(normalizeUrl('https://kahoot.it/'), policies.categoriesFor('pupils'), config.allowCategories).action).toBe('block');
    } finally {
      store.setOverrides([]);
    }
  });

  it('--categories overrides the profile for every group (squidGuard\'s way); a group the console or config sets keeps its own', () => {
    const flat = new PolicyGroups({ ...config, categories: ['gambling'] }, store);
    for (const g of ['pupils', 'staff', 'guests', 'other']) expect(flat.categoriesFor(g)).toEqual(['gambling']);
    const mixed = new PolicyGroups({ ...config, policyGroups: { staff: { categories: ['adult'] } } }, store);
    expect(mixed.categoriesFor('staff')).toEqual(['adult']);
    expect(mixed.categoriesFor('pupils')).toContain('social_networks');
    mixed.setFromConsole(new Map([['pupils', ['games']]]));
    expect(mixed.categoriesFor('pupils')).toEqual(['games']);
    expect(mixed.categoriesFor('guests')).toContain('adult');
    expect(mixed.sourceOf('pupils')).toBe('console');
    expect(mixed.sourceOf('staff')).toBe('config');
    expect(mixed.sourceOf('guests')).toBe('profile');
  });

  it('logs loaded categories the profile does not know once, and blocks them where children are when black', async () => {
    const extra = makeLists({ weapons: { domains: ['guns.example'] }, gambling: { domains: ['casino.example'] } }, path.join(tmp, 'extra'));
    const s = await ListStore.open({ sources: [extra] });
    const warnings: Array<{ obj: unknown; msg: string }> = [];
    const logger = { ...silentLogger, warn: (obj: unknown, msg: string) => warnings.push({ obj, msg }) } as unknown as Logger;
    const groups = new PolicyGroups(config, s, logger);
    const p = policyOver(groups, s);
    expect(verdict(p, 'http://guns.example/', 'pupils')).toBe('block weapons');
    expect(verdict(p, 'http://guns.example/', 'guests')).toBe('block weapons');
    expect(verdict(p, 'http://guns.example/', 'staff')).toBe('pass');
    expect(verdict(p, 'http://casino.example/', 'staff')).toBe('block gambling');
    groups.categoriesFor('staff');
    expect(warnings).toHaveLength(1);
    expect(warnings[0].obj).toEqual({ categories: ['weapons'] });
    expect(warnings[0].msg).toMatch(/not in the UK school profile/);
  });
});

/** Up to 40 entries of a category's own files, as URLs: domains first, then url entries. */
function sampleEntries(name: string): string[] {
  const out: string[] = [];
  const dir = path.join(ut1, name);
  const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')) : []);
  if (existsSync(dir)) {
    for (const d of lines(path.join(dir, 'domains')).slice(0, 40)) out.push(`https://${d}/`);
    for (const u of lines(path.join(dir, 'urls')).slice(0, 40)) out.push(`https://${u}`);
    return out;
  }
  for (const f of [path.join(blp, `${name}.txt`), path.join(blp, 'adguard', `${name}.txt`)]) {
    for (const l of lines(f).slice(0, 60)) {
      const host = /^(?:0\.0\.0\.0|127\.0\.0\.1)\s+(\S+)/.exec(l)?.[1] ?? /^\|\|([^\^/$]+)\^/.exec(l)?.[1];
      if (host && host !== '0.0.0.0') out.push(`https://${host}/`);
    }
  }
  return out;
}
