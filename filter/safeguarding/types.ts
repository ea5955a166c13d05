/**
 * Shared by the phrase lists, the matcher and the severity map, kept apart so none of them has to
 * import another for a type.
 */

/**
 * What a blocked category or a flagged search costs the DSL:
 * - `log`: in the browsing log only (adverts, trackers, malware, shopping);
 * - `incident`: in the DSL's queue;
 * - `alert`: in the queue and an immediate alert.
 */
export type Tier = 'log' | 'incident' | 'alert';

export const TIERS: readonly Tier[] = ['log', 'incident', 'alert'];

/** Higher is more urgent; for picking the most severe of several matches. */
export const TIER_RANK: Readonly<Record<Tier, number>> = { log: 0, incident: 1, alert: 2 };

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
