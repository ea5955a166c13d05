import { SchoolgateError } from '../../core/errors';
import { normalise } from './normalise';
import { TIER_RANK, type Phrase, type PhraseList, type Tier } from './types';

/**
 * Matches search terms against the safeguarding phrase lists in one pass over the text, however
 * many phrases there are: every phrase form goes into one Aho–Corasick automaton over the letters
 * of the normalised text (spaces removed), compiled once per list change.
 *
 * Word boundaries are kept beside the letters and checked when a phrase is found:
 * - a phrase starts and ends on word boundaries ("heroin" is not in "heroine");
 * - where the phrase has a space the text may have one or not ("selfharm" is "self harm");
 * - where the text has a space the phrase lacks, only a spelled-out word is forgiven
 *   ("s u i c i d e"), never two real words ("hero in" is not "heroin");
 * - a letter may be repeated, never dropped ("suiiicide" matches; "wed" is not "weed"), so
 *   letters are stored collapsed with their run lengths.
 * The digit 1 (and | and ! inside words) reads as i or l: the automaton follows both.
 */

export interface SignalMatch {
  /** The list's category: recorded on the incident. */
  category: string;
  label: string;
  /** The phrase as written in the list (its `text`), whichever variant fired. */
  phrase: string;
  /** The normalised form that fired: the phrase or one of its variants. */
  form: string;
  /** The words of the normalised search that fired. */
  text: string;
  severity: Tier;
  /** The phrase's own tier when it has one: it wins over the school's tier for the list (tierFor). */
  phraseSeverity: Tier | null;
  supportBanner: boolean;
  reason: string;
}

export interface Matcher {
  /** The most severe match (then the earlier list, then the earlier position), or null. */
  match(text: string): SignalMatch | null;
  /** One match per phrase that fired, most severe first. */
  matchAll(text: string): SignalMatch[];
  /** Phrase forms compiled (phrases and variants). */
  readonly forms: number;
  /** Automaton states, for the curious. */
  readonly states: number;
}

/** a–z, then the digits normalise() leaves as digits and that read as themselves ("under 16"). */
const ALPHA = 28;
const SYM_ONE = 28;
const SYM_OTHER = 29;
const I = 8;
const L = 11;
/** Followed branches for runs of 1s; more than this and the text is noise, not a word. */
const MAX_BRANCHES = 64;

interface Pattern {
  entry: number;
  form: string;
  len: number;
  syms: Uint8Array;
  runs: Uint8Array;
  /** 1 where the phrase has a word boundary before that letter. */
  bnd: Uint8Array;
}

interface Entry {
  list: PhraseList;
  listIndex: number;
  phrase: Phrase;
  severity: Tier;
  unless: string[];
}

function symbol(c: number): number {
  if (c >= 97 && c <= 122) return c - 97;
  if (c === 50) return 26;
  if (c === 54) return 27;
  if (c === 49) return SYM_ONE;
  return SYM_OTHER;
}

/** Letters, collapsed runs and boundaries of one normalised phrase form, or an error message. */
function skeleton(form: string, joinAt: ReadonlySet<number> = new Set()): { syms: number[]; runs: number[]; bnd: number[] } | string {
  let joined = false;
  const syms: number[] = [];
  const runs: number[] = [];
  const bnd: number[] = [];
  let boundary = false;
  for (let i = 0; i < form.length; i++) {
    const c = form.charCodeAt(i);
    if (c === 32) {
      boundary = true;
      joined = joinAt.has(i);
      continue;
    }
    const s = symbol(c);
    if (s === SYM_OTHER) return `"${form}" holds "${form[i]}": phrases are written in letters a–z and digits`;
    if ((!boundary || joined) && syms.length && syms[syms.length - 1] === s) {
      runs[runs.length - 1]!++;
      boundary = false;
      continue;
    }
    syms.push(s);
    runs.push(1);
    bnd.push(boundary ? 1 : 0);
    boundary = false;
  }
  if (!syms.length) return 'empty phrase';
  return { syms, runs, bnd };
}

/** A phrase typed with 1 for i or l ("k1ll") stands for both; expand it so the trie holds letters only. */
function expandOnes(syms: number[]): number[][] {
  let out: number[][] = [[]];
  for (const s of syms) {
    if (s !== SYM_ONE) {
      for (const o of out) o.push(s);
      continue;
    }
    out = out.flatMap((o) => [[...o, I], [...o, L]]);
    if (out.length > MAX_BRANCHES) throw new SchoolgateError('SG_ERR_VALIDATION', 'phrase has too many 1s');
  }
  return out;
}

export function compileMatcher(lists: readonly PhraseList[]): Matcher {
  const entries: Entry[] = [];
  const patterns: Pattern[] = [];
  // Trie: goto[state * ALPHA + sym], -1 for none until the automaton is completed.
  let goto: number[] = new Array<number>(ALPHA).fill(-1);
  const own: number[][] = [[]];
  let stateCount = 1;

  const addForm = (entryIndex: number, raw: string, where: string) => {
    const form = normalise(raw);
    // "want to" typed joined is "wantto", whose letters collapse across the join: such a phrase
    // is also stored with those words joined.
    // Each such join may be typed or not, so every combination is stored (a phrase has few).
    const alike: number[] = [];
    for (let i = 1; i + 1 < form.length; i++) if (form[i] === ' ' && form[i - 1] === form[i + 1]) alike.push(i);
    const combos = 1 << Math.min(alike.length, 4);
    for (let mask = 0; mask < combos; mask++) addSkeleton(entryIndex, form, new Set(alike.filter((_, b) => mask & (1 << b))), where);
  };

  const addSkeleton = (entryIndex: number, form: string, joinAt: ReadonlySet<number>, where: string) => {
    const sk = skeleton(form, joinAt);
    if (typeof sk === 'string') throw new SchoolgateError('SG_ERR_VALIDATION', `${where}: ${sk}`, { key: where });
    for (const syms of expandOnes(sk.syms)) {
      let state = 0;
      for (const s of syms) {
        const k = state * ALPHA + s;
        if (goto[k] === -1) {
          goto[k] = stateCount++;
          for (let a = 0; a < ALPHA; a++) goto.push(-1);
          own.push([]);
        }
        state = goto[k]!;
      }
      const id = patterns.length;
      patterns.push({ entry: entryIndex, form, len: syms.length, syms: Uint8Array.from(syms), runs: Uint8Array.from(sk.runs, (r) => Math.min(r, 255)), bnd: Uint8Array.from(sk.bnd) });
      own[state]!.push(id);
    }
  };

  lists.forEach((list, li) => {
    if (!list.category) throw new SchoolgateError('SG_ERR_VALIDATION', `list ${li} has no category`);
    list.phrases.forEach((phrase, pi) => {
      const where = `${list.category}.phrases[${pi}]`;
      const index = entries.length;
      const unless = (phrase.unless ?? []).map((u) => normalise(u)).filter(Boolean);
      entries.push({ list, listIndex: li, phrase, severity: phrase.severity ?? list.severity, unless });
      addForm(index, phrase.text, where);
      phrase.variants?.forEach((v, vi) => addForm(index, v, `${where}.variants[${vi}]`));
    });
  });

  // Complete the automaton: failure links by breadth-first search, missing edges filled in from
  // the failure state so matching is one table lookup per letter.
  const fail = new Int32Array(stateCount);
  // Nearest state down the failure chain that ends a pattern, so outputs are found without
  // walking states that end none.
  const outLink = new Int32Array(stateCount).fill(-1);
  const queue: number[] = [];
  for (let a = 0; a < ALPHA; a++) {
    const t = goto[a]!;
    if (t === -1) goto[a] = 0;
    else {
      fail[t] = 0;
      queue.push(t);
    }
  }
  for (let qi = 0; qi < queue.length; qi++) {
    const s = queue[qi]!;
    const f = fail[s]!;
    outLink[s] = own[f]!.length ? f : outLink[f]!;
    for (let a = 0; a < ALPHA; a++) {
      const k = s * ALPHA + a;
      const t = goto[k]!;
      if (t === -1) goto[k] = goto[f * ALPHA + a]!;
      else {
        fail[t] = goto[f * ALPHA + a]!;
        queue.push(t);
      }
    }
  }
  const delta = Int32Array.from(goto);
  goto = [];
  const outputs = own.map((o) => Int32Array.from(o));

  // Scratch space for the text, grown as needed: matching allocates nothing per letter.
  let cap = 0;
  let tSym = new Uint8Array(0);
  let tRun = new Uint8Array(0);
  let tBnd = new Uint8Array(0);
  let tTokLen = new Uint16Array(0);
  let tOff = new Uint32Array(0);
  let tEnd = new Uint32Array(0);

  function load(n: string): number {
    if (n.length + 1 > cap) {
      cap = Math.max(64, n.length + 1);
      tSym = new Uint8Array(cap);
      tRun = new Uint8Array(cap);
      tBnd = new Uint8Array(cap);
      tTokLen = new Uint16Array(cap);
      tOff = new Uint32Array(cap);
      tEnd = new Uint32Array(cap);
    }
    let len = 0;
    let tokStart = 0;
    let boundary = true;
    for (let i = 0; i < n.length; i++) {
      const c = n.charCodeAt(i);
      if (c === 32) {
        boundary = true;
        continue;
      }
      const s = symbol(c);
      if (!boundary && len && tSym[len - 1] === s && s !== SYM_OTHER) {
        if (tRun[len - 1]! < 255) tRun[len - 1]!++;
        tEnd[len - 1] = i + 1;
        continue;
      }
      if (boundary) {
        for (let k = tokStart; k < len; k++) tTokLen[k] = Math.min(len - tokStart, 65535);
        tokStart = len;
      }
      tSym[len] = s;
      tRun[len] = 1;
      tBnd[len] = boundary ? 1 : 0;
      tOff[len] = i;
      tEnd[len] = i + 1;
      len++;
      boundary = false;
    }
    for (let k = tokStart; k < len; k++) tTokLen[k] = Math.min(len - tokStart, 65535);
    tBnd[len] = 1;
    return len;
  }

  function verify(p: Pattern, end: number, len: number): number {
    const start = end - p.len + 1;
    if (start < 0 || !tBnd[start] || (end + 1 < len && !tBnd[end + 1])) return -1;
    for (let j = 0; j < p.len; j++) {
      const at = start + j;
      if (tRun[at]! < p.runs[j]!) return -1;
      if (j > 0 && tBnd[at] && !p.bnd[j] && !(tTokLen[at - 1] === 1 && tTokLen[at] === 1)) return -1;
    }
    return start;
  }

  function scan(text: string): SignalMatch[] {
    const n = normalise(text);
    const len = load(n);
    const found = new Map<number, SignalMatch>();
    let padded: string | null = null;
    let states = [0];
    let next: number[] = [];
    for (let i = 0; i < len; i++) {
      const s = tSym[i]!;
      next.length = 0;
      for (const st of states) {
        if (s < ALPHA) add(next, delta[st * ALPHA + s]!);
        else if (s === SYM_ONE) {
          add(next, delta[st * ALPHA + I]!);
          add(next, delta[st * ALPHA + L]!);
        } else add(next, 0);
      }
      [states, next] = [next, states];
      if (states.length > MAX_BRANCHES) states.length = MAX_BRANCHES;
      for (const st of states) {
        for (let o = own[st]!.length ? st : outLink[st]!; o > 0; o = outLink[o]!) {
          const out = outputs[o]!;
          for (let k = 0; k < out.length; k++) {
            const p = patterns[out[k]!]!;
            if (found.has(p.entry)) continue;
            const start = verify(p, i, len);
            if (start < 0) continue;
            const e = entries[p.entry]!;
            if (e.unless.length) {
              padded ??= ` ${n} `;
              if (e.unless.some((u) => padded!.includes(` ${u} `))) continue;
            }
            found.set(p.entry, {
              category: e.list.category, label: e.list.label, phrase: e.phrase.text, form: p.form, text: n.slice(tOff[start], tEnd[i]),
              severity: e.severity, phraseSeverity: e.phrase.severity ?? null, supportBanner: e.list.supportBanner, reason: e.phrase.reason,
            });
          }
        }
      }
    }
    return [...found.entries()]
      .sort(([a, x], [b, y]) => TIER_RANK[y.severity] - TIER_RANK[x.severity] || entries[a]!.listIndex - entries[b]!.listIndex || a - b)
      .map(([, m]) => m);
  }

  return {
    match: (text) => scan(text)[0] ?? null,
    matchAll: scan,
    forms: patterns.length,
    states: stateCount,
  };
}

function add(set: number[], s: number): void {
  for (let i = 0; i < set.length; i++) if (set[i] === s) return;
  set.push(s);
}

/** Whether any match asks for the support banner. */
export function wantsSupport(matches: readonly SignalMatch[]): boolean {
  return matches.some((m) => m.supportBanner);
}
