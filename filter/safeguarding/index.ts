/**
 * The safeguarding signal's building blocks (issue 13), for the gateway, the incident writer and the
 * console to wire: which requests are a person's, what they searched, whether it is a concern, how
 * severe each category is, and where a pupil can get help.
 */
export { classifyRequest, explainRequest, type HeaderBag, type KindRule, type RequestKind } from './navigation';
export { normalise } from './normalise';
export { compileMatcher, wantsSupport, type Matcher, type SignalMatch } from './matcher';
export { SAFEGUARDING_LISTS } from './phrases';
export { extractSearch, extractSearchFromUrl, type SearchKind, type SearchQuery } from './search-terms';
export { DEFAULT_TIERS, EMPTY_SEVERITY, ILLEGAL_CATEGORIES, tierFor, validateSeverityConfig, type SeverityConfig, type TierDefault } from './tiers';
export { renderSupportBanner, renderSupportText, SUPPORT_SERVICES, type SupportBannerOptions, type SupportService } from './support';
export { TIER_RANK, TIERS, type Phrase, type PhraseList, type Tier } from './types';
