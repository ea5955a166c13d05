import { readFileSync } from 'node:fs';
import { SchoolgateError } from '../../core/errors';
import type { CategoryInfo } from '../types';

/**
 * The shipped UK school profile (uk-schools.json) and the school-services allow list
 * (school-services.json): data files, so a school or a reviewer reads the defaults and their
 * reasons without reading code, and a change to a default is a reviewed change to one line.
 * Both are checked when first read; a broken file stops the start naming the entry.
 */

/** The groups the profile defines; `pupils` is the default for every client not identified otherwise. */
export const PROFILE_GROUPS = ['pupils', 'staff', 'guests'] as const;
export type ProfileGroup = (typeof PROFILE_GROUPS)[number];
/** The group whose categories an unknown group name (a `clients` entry, an old config's `default`) gets. */
export const PROFILE_FALLBACK_GROUP: ProfileGroup = 'pupils';

/** The harms the DfE filtering and monitoring standards name, and "none" for what is blocked for other reasons or not at all. */
export const DFE_HARMS = [
  'pornography', 'gambling', 'drugs', 'extremism', 'violence/hate', 'weapons', 'self-harm', 'malware/phishing/hacking', 'piracy', 'proxies/VPN/DoH', 'dating', 'none',
] as const;
export type DfeHarm = (typeof DFE_HARMS)[number];

export interface ProfileCategory {
  /** The loader's name: a UT1 folder, or a single file's base name (blocklists/parse.ts fileCategory). */
  name: string;
  source: 'ut1' | 'blocklistproject';
  /** What the block page and the console say instead of the folder name. */
  friendlyName: string;
  harm: DfeHarm;
  block: Record<ProfileGroup, boolean>;
  reason: string;
}

export interface Profile {
  groups: Record<ProfileGroup, string>;
  /** In check order: the harms first, so a site on several lists is reported under its gravest. */
  categories: ProfileCategory[];
  byName: ReadonlyMap<string, ProfileCategory>;
}

export interface SchoolService {
  domain: string;
  reason: string;
}

/** The allow category the school-services list is classified under (stable: it is in incidents and the browsing log). */
export const SCHOOL_SERVICES = 'school_services';
export const SCHOOL_SERVICES_NAME = 'School services (shipped allow list)';

const NAME = /^[a-z0-9][a-z0-9_.-]{0,99}$/;
// A host name as a domain entry: labels of letters, digits and hyphens, at least two of them.
const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const text = (v: unknown) => typeof v === 'string' && v.trim() !== '';

function fail(file: string, problems: string[]): never {
  throw new SchoolgateError('SG_ERR_CONFIG', `${file}: ${problems.join('; ')}`, { file, problems });
}

/** Checks a profile document, listing every problem at once with the entry it is in. */
export function validateProfile(input: unknown, file = 'uk-schools.json'): Profile {
  const problems: string[] = [];
  if (!isObject(input)) fail(file, ['must be an object with "groups" and "categories"']);
  const groups = {} as Record<ProfileGroup, string>;
  for (const g of PROFILE_GROUPS) {
    const d = isObject(input.groups) ? input.groups[g] : undefined;
    if (!text(d)) problems.push(`groups.${g} must describe the group`);
    else groups[g] = d as string;
  }
  if (!Array.isArray(input.categories)) fail(file, [...problems, 'categories must be a list']);
  const categories: ProfileCategory[] = [];
  const seen = new Set<string>();
  input.categories.forEach((c: unknown, i: number) => {
    const at = `categories[${i}]`;
    if (!isObject(c)) return problems.push(`${at} must be an object`);
    const name = c.name;
    const where = typeof name === 'string' ? `${at} (${name})` : at;
    const before = problems.length;
    if (typeof name !== 'string' || !NAME.test(name)) problems.push(`${where}.name must be a category name (lower case)`);
    else if (seen.has(name)) problems.push(`${where}: listed twice`);
    if (c.source !== 'ut1' && c.source !== 'blocklistproject') problems.push(`${where}.source must be "ut1" or "blocklistproject"`);
    if (!text(c.friendlyName)) problems.push(`${where}.friendlyName is required`);
    else if (c.friendlyName === name) problems.push(`${where}.friendlyName must be English words, not the folder name`);
    if (!(DFE_HARMS as readonly unknown[]).includes(c.harm)) problems.push(`${where}.harm must be one of ${DFE_HARMS.join(', ')}`);
    if (!text(c.reason)) problems.push(`${where}.reason is required`);
    if (!isObject(c.block)) problems.push(`${where}.block must say true or false for ${PROFILE_GROUPS.join(', ')}`);
    else {
      for (const g of PROFILE_GROUPS) if (typeof c.block[g] !== 'boolean') problems.push(`${where}.block.${g} must be true or false`);
      for (const k of Object.keys(c.block)) if (!(PROFILE_GROUPS as readonly string[]).includes(k)) problems.push(`${where}.block.${k} is not a profile group`);
    }
    if (problems.length > before) return;
    seen.add(name as string);
    categories.push({
      name: name as string, source: c.source as ProfileCategory['source'], friendlyName: (c.friendlyName as string).trim(), harm: c.harm as DfeHarm,
      block: { pupils: (c.block as Record<string, boolean>).pupils, staff: (c.block as Record<string, boolean>).staff, guests: (c.block as Record<string, boolean>).guests },
      reason: (c.reason as string).trim(),
    });
  });
  if (problems.length) fail(file, problems);
  return { groups, categories, byName: new Map(categories.map((c) => [c.name, c])) };
}

/** Checks the school-services list: each entry a domain (lower case, no scheme or path) with its reason. */
export function validateSchoolServices(input: unknown, file = 'school-services.json'): SchoolService[] {
  const problems: string[] = [];
  const entries = isObject(input) ? input.entries : undefined;
  if (!Array.isArray(entries)) fail(file, ['must be an object with "entries": [{ "domain", "reason" }]']);
  const out: SchoolService[] = [];
  const seen = new Set<string>();
  entries.forEach((e: unknown, i: number) => {
    const at = `entries[${i}]`;
    if (!isObject(e)) return problems.push(`${at} must be an object`);
    const domain = e.domain;
    if (typeof domain !== 'string' || !DOMAIN.test(domain)) return problems.push(`${at}.domain must be a lower-case domain (no scheme or path), got ${JSON.stringify(domain)}`);
    if (seen.has(domain)) return problems.push(`${at}: ${domain} listed twice`);
    if (!text(e.reason)) return problems.push(`${at} (${domain}).reason is required`);
    seen.add(domain);
    out.push({ domain, reason: (e.reason as string).trim() });
  });
  if (problems.length) fail(file, problems);
  return out;
}

function readJson(name: string): unknown {
  const url = new URL(`./${name}`, import.meta.url);
  try {
    return JSON.parse(readFileSync(url, 'utf8'));
  } catch (err) {
    throw new SchoolgateError('SG_ERR_CONFIG', `${name}: ${(err as Error).message}`);
  }
}

let profile: Profile | null = null;
let services: SchoolService[] | null = null;

/** The shipped profile, read and checked once. */
export function ukSchoolsProfile(): Profile {
  return (profile ??= validateProfile(readJson('uk-schools.json')));
}

/** The shipped school-services allow list, read and checked once. */
export function schoolServices(): SchoolService[] {
  return (services ??= validateSchoolServices(readJson('school-services.json')));
}

export const isProfileGroup = (g: string): g is ProfileGroup => (PROFILE_GROUPS as readonly string[]).includes(g);

/**
 * What each profile group blocks of the categories loaded now, in check order: the profile's
 * categories its group blocks, then loaded categories the profile does not know whose usage says
 * black (for pupils and guests: a list added later is blocked where children are until someone
 * decides otherwise), and the illegal-content lists (IWF, CTIRU) for everyone.
 */
export function profileCategories(
  p: Profile,
  loaded: ReadonlyMap<string, Pick<CategoryInfo, 'name' | 'usage'>>,
  illegal: readonly string[] = [],
): { groups: Record<ProfileGroup, string[]>; unknown: string[] } {
  const groups = { pupils: [], staff: [], guests: [] } as Record<ProfileGroup, string[]>;
  const illegalLoaded = illegal.filter((c) => loaded.has(c));
  for (const g of PROFILE_GROUPS) groups[g].push(...illegalLoaded);
  for (const c of p.categories) {
    if (!loaded.has(c.name) || illegalLoaded.includes(c.name)) continue;
    for (const g of PROFILE_GROUPS) if (c.block[g]) groups[g].push(c.name);
  }
  const unknown = [...loaded.keys()].filter((n) => !p.byName.has(n) && !illegalLoaded.includes(n)).sort();
  for (const n of unknown) {
    if (!loaded.get(n)!.usage.includes('black')) continue;
    groups.pupils.push(n);
    groups.guests.push(n);
  }
  return { groups, unknown };
}

/**
 * A category's name as people read it: the profile's English name, else the list's own (UT1
 * `NAME EN:`), else the folder name. The block page, the console and exports all ask here.
 */
export function friendlyCategoryName(category: string, loaded?: ReadonlyMap<string, Pick<CategoryInfo, 'friendlyName'>>): string {
  if (category === SCHOOL_SERVICES) return SCHOOL_SERVICES_NAME;
  return ukSchoolsProfile().byName.get(category)?.friendlyName ?? loaded?.get(category)?.friendlyName ?? category;
}
