import { SchoolgateError } from './errors';
import { TIERS, type Tier } from './vocabulary';

/**
 * A school's severity settings (issue 13, point 2), checked where the config file is: the config
 * loader sits in core and may not reach up into filter/, where the shipped defaults and tierFor
 * live (filter/safeguarding/tiers.ts re-exports all of this).
 */

/**
 * Lists that are illegal to view (IWF, CTIRU): the only ones the console may call "illegal", never
 * link, and suggest reporting. Adult content is not among them, however severe its tier.
 */
export const ILLEGAL_CATEGORIES: readonly string[] = ['iwf', 'ctiru'];

/** A school's choices: per category, and per policy group where a group differs (staff, sixth form). */
export interface SeverityConfig {
  categories: Record<string, Tier>;
  groups: Record<string, Record<string, Tier>>;
}

export const EMPTY_SEVERITY: SeverityConfig = Object.freeze({ categories: Object.freeze({}), groups: Object.freeze({}) }) as SeverityConfig;

const CATEGORY_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

function checkTiers(obj: unknown, keyPath: string, problems: string[]): Record<string, Tier> {
  const out: Record<string, Tier> = {};
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    problems.push(`${keyPath} must be an object of category: tier (${TIERS.join(', ')})`);
    return out;
  }
  for (const [key, value] of Object.entries(obj)) {
    const at = `${keyPath}.${key}`;
    if (!CATEGORY_NAME.test(key)) {
      problems.push(`${at}: "${key}" is not a category name`);
      continue;
    }
    if (typeof value !== 'string' || !(TIERS as readonly string[]).includes(value)) {
      problems.push(`${at}: ${JSON.stringify(value)} is not a tier (${TIERS.join(', ')})`);
      continue;
    }
    out[key] = value as Tier;
  }
  return out;
}

/**
 * Like validateSeverityConfig, adding each problem to `problems` instead of throwing, so the config
 * file's checker lists them with every other problem in the file.
 */
export function severityProblems(input: unknown, keyPath: string, problems: string[]): SeverityConfig {
  const config: SeverityConfig = { categories: {}, groups: {} };
  if (input === undefined || input === null) return config;
  if (typeof input !== 'object' || Array.isArray(input)) {
    problems.push(`${keyPath} must be an object with "categories" and/or "groups"`);
    return config;
  }
  for (const [key, value] of Object.entries(input)) {
    if (key === 'categories') config.categories = checkTiers(value, `${keyPath}.categories`, problems);
    else if (key === 'groups') {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        problems.push(`${keyPath}.groups must be an object of group: { category: tier }`);
        continue;
      }
      for (const [group, tiers] of Object.entries(value)) config.groups[group] = checkTiers(tiers, `${keyPath}.groups.${group}`, problems);
    } else problems.push(`${keyPath}.${key} is not a setting (categories, groups)`);
  }
  return config;
}

/**
 * Checks a school's severity settings, `{ categories: {name: tier}, groups: {group: {name: tier}} }`,
 * reporting every problem at once, each naming its key (`severity.groups.staff.adult`). Unknown
 * category names are allowed — a school may load lists schoolgate has never heard of — but an
 * unknown tier is refused: a typo there would silently change who gets told.
 */
export function validateSeverityConfig(input: unknown, keyPath = 'severity'): SeverityConfig {
  const problems: string[] = [];
  const config = severityProblems(input, keyPath, problems);
  if (problems.length) throw new SchoolgateError('SG_ERR_CONFIG', problems.join('; '), { keys: problems.map((p) => p.split(/[: ]/)[0]) });
  return config;
}
