/**
 * Shared by the phrase lists, the matcher and the severity map, kept apart so none of them has to
 * import another for a type.
 */

// Spelled once in core/vocabulary.ts (the migrations' CHECK on incidents.severity must agree);
// re-exported here for the phrase lists, the matcher and the severity map.
export { TIER_RANK, TIERS, type Tier } from '../../core/vocabulary';
import type { Tier } from '../../core/vocabulary';

export interface Phrase {
  /** As a person would type it; normalised (normalise.ts) when the list is compiled. */
  text: string;
  /** Why the phrase is on the list: what it suggests, and why it is specific enough. */
  reason: string;
  /** Misspellings and other wordings reported as this phrase. Spacing, case, accents, leetspeak and repeated letters need no variant. */
  variants?: readonly string[];
  /**
   * Words (or phrases) that, anywhere in the same search, mean the phrase is not the concern:
   * "suicide" with "squad" is a film. Only this phrase is cancelled, never the list.
   */
  unless?: readonly string[];
  /** When this phrase warrants another tier than its list's default, with the reason in `reason`. */
  severity?: Tier;
}

export interface PhraseList {
  /** Stable id, recorded as the incident's category. */
  category: string;
  /** For the console. */
  label: string;
  severity: Tier;
  /** Whether a match shows the support banner (Childline, Samaritans, Shout). */
  supportBanner: boolean;
  /** Why the default severity and banner are what they are. */
  why: string;
  phrases: readonly Phrase[];
}
