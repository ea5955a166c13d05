import { EMPTY_SEVERITY, type SeverityConfig } from '../../core/severity';
import { SAFEGUARDING_LISTS } from './phrases';
import type { Tier } from './types';

/**
 * The shipped severity of each blocked category (issue 13, point 2): what a blocked navigation to
 * it costs the DSL. Names are those of the lists schoolgate reads — UT1 folders, and Block List
 * Project files by base name — plus the safeguarding phrase lists' own categories. A school
 * overrides any of them (validateSeverityConfig); a category named nowhere is an `incident`
 * (tierFor), so a list added later is seen by the DSL until someone decides otherwise.
 *
 * `alert` is for risk to a child now; `incident` for what the DSL should see today; `log` for what
 * is blocked to protect the network, the budget or the timetable rather than the child.
 */
export interface TierDefault {
  tier: Tier;
  reason: string;
}

const LOG_SECURITY = 'a security or nuisance block for the network manager, not a safeguarding concern; kept in the browsing log';
const LOG_TIMETABLE = 'blocked to keep lessons on task, not because it harms a child; kept in the browsing log';
const LOG_ALLOW = 'an allow-list category: a school that blocks it does so by choice, not for safeguarding';
const CIRCUMVENTION = 'getting round the filter hides whatever else the pupil does; the DSL should know who tries';

export const DEFAULT_TIERS: Readonly<Record<string, TierDefault>> = {
  // UT1 (Université Toulouse Capitole) categories
  adult: { tier: 'alert', reason: 'pornography: the shipped default assumes pupils; a staff group may be set lower. High severity, never labelled illegal' },
  mixed_adult: { tier: 'incident', reason: 'sites with adult sections among others (image hosts, forums): often reached without seeking porn' },
  lingerie: { tier: 'log', reason: 'clothing retailers; blocked for modesty, not harm' },
  dating: { tier: 'incident', reason: 'a child on an adult dating site is exposed to adults seeking contact' },
  agressif: { tier: 'alert', reason: 'hate, racist and violent sites: a Prevent concern, like the extremism phrases' },
  dangerous_material: { tier: 'incident', reason: 'instructions for bombs and dangerous substances' },
  drogue: { tier: 'incident', reason: 'drug sales and use' },
  gambling: { tier: 'incident', reason: 'gambling harms children and is illegal for them' },
  arjel: { tier: 'incident', reason: 'licensed (French) gambling sites: gambling all the same' },
  sect: { tier: 'incident', reason: 'cults and coercive groups' },
  stalkerware: { tier: 'incident', reason: 'sellers of phone-spying software: a pupil buying it may be controlling someone, or being taught to' },
  hacking: { tier: 'incident', reason: 'hacking tools; a Cyber Choices referral may follow' },
  ddos: { tier: 'incident', reason: 'booter services for knocking sites (and the school) offline: a Cyber Choices matter' },
  redirector: { tier: 'incident', reason: CIRCUMVENTION },
  strict_redirector: { tier: 'incident', reason: CIRCUMVENTION },
  strong_redirector: { tier: 'incident', reason: CIRCUMVENTION },
  vpn: { tier: 'incident', reason: CIRCUMVENTION },
  'residential-proxies': { tier: 'log', reason: 'proxy networks reached by apps in the background, rarely by a person' },
  doh: { tier: 'log', reason: 'DNS-over-HTTPS is fetched by browsers themselves, not chosen by the pupil' },
  'remote-control': { tier: 'log', reason: 'remote-support tools; an IT matter' },
  malware: { tier: 'log', reason: LOG_SECURITY },
  phishing: { tier: 'log', reason: LOG_SECURITY },
  cryptojacking: { tier: 'log', reason: LOG_SECURITY },
  dialer: { tier: 'log', reason: LOG_SECURITY },
  marketingware: { tier: 'log', reason: LOG_SECURITY },
  publicite: { tier: 'log', reason: 'adverts: fetched by pages, never chosen' },
  reaffected: { tier: 'log', reason: 'domains that changed owner; blocked as a precaution' },
  special: { tier: 'log', reason: 'UT1 housekeeping list with no safeguarding meaning' },
  fakenews: { tier: 'log', reason: 'misinformation is a teaching matter, not a risk to the child' },
  warez: { tier: 'log', reason: 'piracy: a copyright and malware matter' },
  filehosting: { tier: 'log', reason: 'file lockers: a copyright and malware matter' },
  download: { tier: 'log', reason: LOG_TIMETABLE },
  tricheur: { tier: 'log', reason: 'exam cheating: an academic matter' },
  tricheur_pix: { tier: 'log', reason: 'exam cheating: an academic matter' },
  shopping: { tier: 'log', reason: LOG_TIMETABLE },
  financial: { tier: 'log', reason: LOG_TIMETABLE },
  bank: { tier: 'log', reason: LOG_ALLOW },
  bitcoin: { tier: 'log', reason: 'cryptocurrency sites: a money matter, not a safeguarding one' },
  jobsearch: { tier: 'log', reason: LOG_ALLOW },
  press: { tier: 'log', reason: LOG_ALLOW },
  radio: { tier: 'log', reason: LOG_TIMETABLE },
  'audio-video': { tier: 'log', reason: LOG_TIMETABLE },
  sports: { tier: 'log', reason: LOG_TIMETABLE },
  cooking: { tier: 'log', reason: LOG_TIMETABLE },
  celebrity: { tier: 'log', reason: LOG_TIMETABLE },
  manga: { tier: 'log', reason: LOG_TIMETABLE },
  games: { tier: 'log', reason: LOG_TIMETABLE },
  educational_games: { tier: 'log', reason: LOG_ALLOW },
  blog: { tier: 'log', reason: LOG_TIMETABLE },
  forums: { tier: 'log', reason: LOG_TIMETABLE },
  chat: { tier: 'log', reason: 'mainstream chat services; what is said there is caught by the phrase lists, not the site' },
  webmail: { tier: 'log', reason: LOG_TIMETABLE },
  social_networks: { tier: 'log', reason: LOG_TIMETABLE },
  'mobile-phone': { tier: 'log', reason: LOG_TIMETABLE },
  astrology: { tier: 'log', reason: LOG_TIMETABLE },
  associations_religieuses: { tier: 'log', reason: 'religious organisations: blocking them is a school\'s choice, and following a faith is no concern' },
  ai: { tier: 'log', reason: LOG_ALLOW },
  translation: { tier: 'log', reason: LOG_ALLOW },
  update: { tier: 'log', reason: LOG_ALLOW },
  cleaning: { tier: 'log', reason: LOG_ALLOW },
  shortener: { tier: 'log', reason: 'link shorteners: where the link leads is judged on arrival' },
  webhosting: { tier: 'log', reason: LOG_SECURITY },
  'dynamic-dns': { tier: 'log', reason: LOG_SECURITY },
  sexual_education: { tier: 'log', reason: LOG_ALLOW },
  child: { tier: 'log', reason: LOG_ALLOW },
  liste_bu: { tier: 'log', reason: LOG_ALLOW },
  liste_blanche: { tier: 'log', reason: LOG_ALLOW },
  exceptions_liste_bu: { tier: 'log', reason: LOG_ALLOW },
  examen_pix: { tier: 'log', reason: LOG_ALLOW },

  // The Block List Project, by file base name (the lists in ../shared/blocklists, then upstream's others)
  basic: { tier: 'log', reason: 'adverts, trackers and malware mixed: fetched by pages, never chosen' },
  crypto: { tier: 'log', reason: LOG_SECURITY },
  drugs: { tier: 'incident', reason: 'drug sales and use (the same name as the drugs phrase list, so one override covers both)' },
  piracy: { tier: 'log', reason: 'piracy: a copyright and malware matter' },
  'piracy-ags': { tier: 'log', reason: 'piracy: a copyright and malware matter' },
  ransomware: { tier: 'log', reason: LOG_SECURITY },
  redirect: { tier: 'log', reason: 'URL shorteners and redirects: where the link leads is judged on arrival' },
  scam: { tier: 'log', reason: LOG_SECURITY },
  'scam-ags': { tier: 'log', reason: LOG_SECURITY },
  tiktok: { tier: 'log', reason: LOG_TIMETABLE },
  torrent: { tier: 'log', reason: 'file sharing: a copyright and malware matter' },
  vaping: { tier: 'log', reason: 'under-age vaping is a behaviour matter for pastoral staff; a school that wants the DSL to see it raises it to incident' },
  porn: { tier: 'alert', reason: 'pornography: the shipped default assumes pupils. High severity, never labelled illegal' },
  abuse: { tier: 'log', reason: 'deceptive and abusive sites in the network sense (spam, fake shops)' },
  fraud: { tier: 'log', reason: LOG_SECURITY },
  ads: { tier: 'log', reason: 'adverts: fetched by pages, never chosen' },
  tracking: { tier: 'log', reason: 'trackers: fetched by pages, never chosen' },
  facebook: { tier: 'log', reason: LOG_TIMETABLE },
  fortnite: { tier: 'log', reason: LOG_TIMETABLE },
  twitch: { tier: 'log', reason: LOG_TIMETABLE },
  whatsapp: { tier: 'log', reason: LOG_TIMETABLE },
  youtube: { tier: 'log', reason: LOG_TIMETABLE },
  'smart-tv': { tier: 'log', reason: 'device telemetry: never a person' },
  everything: { tier: 'log', reason: 'the union of the others: a match says nothing about which; the specific lists carry the severity' },

  // Names other list publishers and schools use for the gravest categories
  self_harm: { tier: 'alert', reason: 'risk to life' },
  'self-harm': { tier: 'alert', reason: 'risk to life' },
  selfharm: { tier: 'alert', reason: 'risk to life' },
  suicide: { tier: 'alert', reason: 'risk to life' },
  extremism: { tier: 'alert', reason: 'a Prevent concern' },
  terrorism: { tier: 'alert', reason: 'a Prevent concern' },
  hate: { tier: 'alert', reason: 'hate sites: a Prevent concern' },
  child_abuse: { tier: 'alert', reason: 'abuse of children' },
  iwf: { tier: 'alert', reason: 'the IWF list: child sexual abuse material, illegal to view' },
  ctiru: { tier: 'alert', reason: 'the police counter-terrorism referral list: illegal terrorist content' },
  weapons: { tier: 'incident', reason: 'weapons and violence' },
  violence: { tier: 'incident', reason: 'violent content' },
};

// The phrase lists are categories too (a flagged search is recorded under its list's name).
for (const list of SAFEGUARDING_LISTS) {
  (DEFAULT_TIERS as Record<string, TierDefault>)[list.category] ??= { tier: list.severity, reason: list.why };
}

// The school's overrides and the illegal lists are checked by the config loader in core, which
// cannot import this file.
export { EMPTY_SEVERITY, ILLEGAL_CATEGORIES, validateSeverityConfig, type SeverityConfig } from '../../core/severity';

/** The tier for a blocked (or flagged) category: group override, school override, shipped default, else incident. */
export function tierFor(category: string | null | undefined, group?: string | null, config: SeverityConfig = EMPTY_SEVERITY): Tier {
  // No category (the host did not match the TLS tunnel, no lists loaded): the DSL sees it.
  if (!category) return 'incident';
  if (group) {
    const g = config.groups[group];
    if (g && Object.hasOwn(g, category)) return g[category]!;
  }
  if (Object.hasOwn(config.categories, category)) return config.categories[category]!;
  return Object.hasOwn(DEFAULT_TIERS, category) ? DEFAULT_TIERS[category]!.tier : 'incident';
}
