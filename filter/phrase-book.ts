import { SchoolgateError } from '../core/errors';
import { compileMatcher, normalise, SAFEGUARDING_LISTS, TIERS, type Matcher, type PhraseList, type SignalMatch, type Tier } from './safeguarding';

/**
 * The safeguarding phrase lists this process matches searches against: the shipped lists with
 * the school's changes applied (phrases the DSL added, shipped phrases switched off), compiled
 * into one matcher and swapped whole, so a search never meets a half-applied change. It also
 * counts how often each phrase fired, in memory: the request path never waits on the database,
 * and the counts are written in batches by whoever flushes them (admin-api/phrase-sync.ts).
 */

/** One of the school's changes, as stored (repos/phrases.ts). */
export interface SchoolPhrase {
  id: number;
  category: string;
  phrase: string;
  action: 'add' | 'off';
  reason: string;
  severity: Tier | null;
}

export interface PhraseHitCount {
  category: string;
  phrase: string;
  hits: number;
  at: number;
}

const keyOf = (category: string, phrase: string) => `${category}\u0000${phrase.toLowerCase()}`;

/** The shipped lists with `changes` applied: switched-off phrases dropped, the school's own appended to their list. */
export function applySchoolPhrases(shipped: readonly PhraseList[], changes: readonly SchoolPhrase[]): PhraseList[] {
  const off = new Set(changes.filter((c) => c.action === 'off').map((c) => keyOf(c.category, c.phrase)));
  return shipped.map((list) => {
    const added = changes
      .filter((c) => c.action === 'add' && c.category === list.category)
      .map((c) => ({ text: c.phrase, reason: c.reason, ...(c.severity ? { severity: c.severity } : {}) }));
    if (!added.length && !list.phrases.some((p) => off.has(keyOf(list.category, p.text)))) return list;
    return { ...list, phrases: [...list.phrases.filter((p) => !off.has(keyOf(list.category, p.text))), ...added] };
  });
}

/** Shorter than this once normalised, a phrase would fire inside everyday searches. */
const MIN_LETTERS = 3;
const MAX_LENGTH = 200;

/**
 * Checks a phrase the DSL wants to add before it is stored, naming the field at fault in
 * `details.field`: a phrase that cannot be compiled must never reach the table, where it would
 * stop every gateway from taking the school's next change.
 */
export function checkSchoolPhrase(shipped: readonly PhraseList[], input: { category: string; phrase: string; severity?: string | null }): { category: string; phrase: string; severity: Tier | null } {
  const list = shipped.find((l) => l.category === input.category);
  if (!list) {
    throw new SchoolgateError('SG_ERR_VALIDATION', `category: "${input.category.slice(0, 100)}" is not a phrase list (${shipped.map((l) => l.category).join(', ')})`, { field: 'category' });
  }
  const phrase = input.phrase.replace(/\s+/g, ' ').trim();
  if (!phrase || phrase.length > MAX_LENGTH) throw new SchoolgateError('SG_ERR_VALIDATION', `phrase: between 1 and ${MAX_LENGTH} characters`, { field: 'phrase' });
  const severity = input.severity ?? null;
  if (severity !== null && !(TIERS as readonly string[]).includes(severity)) {
    throw new SchoolgateError('SG_ERR_VALIDATION', `severity: ${JSON.stringify(severity)} is not one of ${TIERS.join(', ')}`, { field: 'severity' });
  }
  if (normalise(phrase).replace(/ /g, '').length < MIN_LETTERS) {
    throw new SchoolgateError('SG_ERR_VALIDATION', `phrase: "${phrase}" is too short to match only what it means (at least ${MIN_LETTERS} letters)`, { field: 'phrase' });
  }
  try {
    compileMatcher([{ ...list, phrases: [{ text: phrase, reason: 'checked before it is stored' }] }]);
  } catch (err) {
    const why = (err as Error).message.replace(/^invalid input: /, '').replace(/^.*?phrases\[0\]: /, '');
    throw new SchoolgateError('SG_ERR_VALIDATION', `phrase: ${why}`, { field: 'phrase' });
  }
  return { category: list.category, phrase, severity: severity as Tier | null };
}

export class PhraseBook {
  readonly shipped: readonly PhraseList[];
  private compiled: Matcher;
  private effective: readonly PhraseList[];
  private schoolChanges: readonly SchoolPhrase[] = [];
  private hits = new Map<string, PhraseHitCount>();

  constructor(shipped: readonly PhraseList[] = SAFEGUARDING_LISTS) {
    this.shipped = shipped;
    this.effective = shipped;
    this.compiled = compileMatcher(shipped);
  }

  get matcher(): Matcher {
    return this.compiled;
  }

  /** The lists as they are matched now. */
  get lists(): readonly PhraseList[] {
    return this.effective;
  }

  get changes(): readonly SchoolPhrase[] {
    return this.schoolChanges;
  }

  /**
   * Compiles the shipped lists with `changes` and swaps the result in. Throws SG_ERR_VALIDATION
   * (the old matcher keeps serving) when a stored phrase cannot be compiled.
   */
  setChanges(changes: readonly SchoolPhrase[]): void {
    const lists = applySchoolPhrases(this.shipped, changes);
    const matcher = compileMatcher(lists);
    this.effective = lists;
    this.schoolChanges = changes;
    this.compiled = matcher;
  }

  /** Counts each phrase that fired; on the request path, so only a map update. */
  hit(matches: readonly SignalMatch[], at = Date.now()): void {
    for (const m of matches) {
      const key = `${m.category}\u0000${m.phrase}`;
      const h = this.hits.get(key);
      if (h) {
        h.hits++;
        h.at = at;
      } else this.hits.set(key, { category: m.category, phrase: m.phrase, hits: 1, at });
    }
  }

  /** The counts since the last take, emptied: the caller writes them, or gives them back. */
  takeHits(): PhraseHitCount[] {
    if (!this.hits.size) return [];
    const out = [...this.hits.values()];
    this.hits = new Map();
    return out;
  }

  /** Counts a failed write took: added to whatever was counted meanwhile, so none are lost or doubled. */
  returnHits(batch: readonly PhraseHitCount[]): void {
    for (const b of batch) {
      const key = `${b.category}\u0000${b.phrase}`;
      const h = this.hits.get(key);
      if (h) {
        h.hits += b.hits;
        h.at = Math.max(h.at, b.at);
      } else this.hits.set(key, { ...b });
    }
  }
}
