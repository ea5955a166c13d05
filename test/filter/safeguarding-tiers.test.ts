import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isSchoolgateError } from '../../core/errors';
import { fileCategory } from '../../blocklists/parse';
import { DEFAULT_TIERS, ILLEGAL_CATEGORIES, tierFor, validateSeverityConfig } from '../../filter/safeguarding/tiers';
import { SAFEGUARDING_LISTS } from '../../filter/safeguarding/phrases';
import { need, sharedLists } from '../helpers/parts';

describe('severity tiers', () => {
  const missing = need('shared lists', existsSync(sharedLists) ? null : `${sharedLists} missing`);

  it.skipIf(missing)('has a tier and a reason for every category of the real lists (UT1 folders, Block List Project files)', () => {
    const ut1 = readdirSync(path.join(sharedLists, 'ut1'), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    const blp = [
      ...readdirSync(path.join(sharedLists, 'blocklistproject')).filter((f) => f.endsWith('.txt')),
      ...readdirSync(path.join(sharedLists, 'blocklistproject', 'adguard')).filter((f) => f.endsWith('.txt')),
    ].map(fileCategory);
    expect(ut1.length).toBeGreaterThan(50);
    const without = [...ut1, ...blp].filter((c) => !Object.hasOwn(DEFAULT_TIERS, c));
    expect(without).toEqual([]);
  });

  it('gives every default a reason, and a phrase list its own severity', () => {
    for (const [c, d] of Object.entries(DEFAULT_TIERS)) expect(d.reason.length, c).toBeGreaterThan(10);
    for (const l of SAFEGUARDING_LISTS) expect(tierFor(l.category)).toBe(l.severity);
  });

  it('ships the tiers of issue 13: nuisance logged, adult content and risk to life alerted', () => {
    for (const c of ['publicite', 'ads', 'tracking', 'malware', 'phishing', 'shopping', 'basic', 'cryptojacking', 'games', 'social_networks']) expect(tierFor(c), c).toBe('log');
    for (const c of ['adult', 'porn', 'suicide', 'self_harm', 'extremism', 'sexual_exploitation', 'agressif']) expect(tierFor(c), c).toBe('alert');
    for (const c of ['drogue', 'drugs', 'gambling', 'dating', 'redirector', 'vpn', 'weapons', 'bullying', 'eating_disorders']) expect(tierFor(c), c).toBe('incident');
  });

  it('calls only IWF/CTIRU-type lists illegal, never adult content', () => {
    expect(ILLEGAL_CATEGORIES).toEqual(['iwf', 'ctiru']);
    for (const c of ['adult', 'mixed_adult', 'porn', 'lingerie', 'dating']) expect(ILLEGAL_CATEGORIES).not.toContain(c);
    expect(DEFAULT_TIERS.adult!.tier).toBe('alert');
  });

  it('applies a group override, then the school\'s, then the default, then incident for an unknown list', () => {
    const config = validateSeverityConfig({ categories: { shopping: 'incident', adult: 'alert' }, groups: { staff: { adult: 'incident' } } });
    expect(tierFor('adult', 'staff', config)).toBe('incident');
    expect(tierFor('adult', 'pupils', config)).toBe('alert');
    expect(tierFor('shopping', 'staff', config)).toBe('incident');
    expect(tierFor('games', null, config)).toBe('log');
    expect(tierFor('a_list_nobody_classified', null, config)).toBe('incident');
    expect(tierFor(null)).toBe('incident');
    expect(tierFor('constructor')).toBe('incident');
    expect(tierFor('toString', 'staff', config)).toBe('incident');
  });

  it('refuses an unknown tier, naming every bad key at once', () => {
    let err: unknown;
    try {
      validateSeverityConfig({ categories: { adult: 'loud', games: 'log', 'bad name!': 'log' }, groups: { staff: { porn: 'ALERT' }, sixth: 'x' }, extra: 1 });
    } catch (e) {
      err = e;
    }
    expect(isSchoolgateError(err, 'SG_ERR_CONFIG')).toBe(true);
    const msg = (err as Error).message;
    expect(msg).toContain('severity.categories.adult: "loud" is not a tier (log, incident, alert)');
    expect(msg).toContain('severity.groups.staff.porn: "ALERT" is not a tier');
    expect(msg).toContain('severity.categories.bad name!: "bad name!" is not a category name');
    expect(msg).toContain('severity.groups.sixth must be an object');
    expect(msg).toContain('severity.extra is not a setting');
    expect(msg).not.toContain('games');
  });

  it('accepts nothing as no overrides, and names the key path it is given', () => {
    expect(validateSeverityConfig(undefined)).toEqual({ categories: {}, groups: {} });
    expect(() => validateSeverityConfig({ categories: { adult: 3 } }, 'schools[0].severity')).toThrow('schools[0].severity.categories.adult: 3 is not a tier');
    expect(() => validateSeverityConfig([])).toThrow('severity must be an object');
  });
});
