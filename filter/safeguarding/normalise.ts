/**
 * One spelling for what a person typed, so a phrase list need not list every way of writing it:
 * case, accents, full-width and ligature forms, look-alike Cyrillic and Greek letters, leetspeak,
 * apostrophes, hyphens and stray punctuation, and invisible characters all fold away.
 *
 * What stays for the matcher (matcher.ts): spacing ("s u i c i d e", "selfharm") and repeated
 * letters ("suiiicide") are judged there, against each phrase, because folding them here would
 * merge real words ("we ed" is not "weed"; "wed" is not "weed").
 *
 * The digit 1 (and | and ! inside a word) stays as `1`: it stands for i as often as for l
 * ("k1ll", "se1f"), so the matcher tries both rather than this function guessing one.
 */

/** Letters NFKD leaves whole, and the look-alikes used to slip past filters. */
const FOLD: Record<string, string> = {
  ß: 'ss', æ: 'ae', œ: 'oe', ø: 'o', đ: 'd', ð: 'd', ł: 'l', ħ: 'h', ı: 'i', þ: 'th', ŧ: 't', ŀ: 'l', ĸ: 'k',
  // Cyrillic letters drawn like Latin ones
  а: 'a', в: 'b', е: 'e', ё: 'e', к: 'k', м: 'm', н: 'h', о: 'o', р: 'p', с: 'c', т: 't', у: 'y', х: 'x',
  і: 'i', ї: 'i', ј: 'j', ѕ: 's', ԁ: 'd', ԛ: 'q', ԝ: 'w', һ: 'h', ӏ: 'l', ɡ: 'g',
  // Greek
  α: 'a', β: 'b', ε: 'e', ι: 'i', κ: 'k', ν: 'v', ο: 'o', ρ: 'p', τ: 't', υ: 'u', χ: 'x', ς: 's',
};

/** Digits read as letters; 1 is left to the matcher (i or l), 2 and 6 are too ambiguous to read. */
const LEET_DIGIT: Record<string, string> = { '0': 'o', '3': 'e', '4': 'a', '5': 's', '7': 't', '8': 'b', '9': 'g' };

const isAsciiLetter = (c: string | undefined) => c !== undefined && c >= 'a' && c <= 'z';
const isWordChar = (c: string | undefined) => c !== undefined && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'));

/** "my self" → "myself": people split these, and phrases are written joined. */
const SPLIT_SELF = /\b(my|your|ur|him|her|them|it|our|one) (self|selves)\b/g;

const MARKS = /\p{M}/gu;
const INVISIBLE = /[\p{Cf}\u00ad]/gu;
const APOSTROPHES = /['’‘ʼ`´]/g;
const NON_ASCII = /[^\x00-\x7f]/g;

/**
 * Lower-case, accent-free, leet-free text of letters, digits and single spaces. Idempotent:
 * normalise(normalise(x)) === normalise(x).
 */
export function normalise(text: string): string {
  // Lower-cased on both sides of NFKD: compatibility forms decompose to capitals (ℌ → H).
  const s = text.toLowerCase().normalize('NFKD').toLowerCase().normalize('NFKD').replace(MARKS, '').replace(INVISIBLE, '').replace(APOSTROPHES, '')
    // Folded before the loop, so a symbol beside a look-alike letter sees a letter.
    .replace(NON_ASCII, (c) => FOLD[c] ?? c);
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (isAsciiLetter(c)) {
      out += c;
      continue;
    }
    const digit = LEET_DIGIT[c];
    if (digit !== undefined) {
      out += digit;
      continue;
    }
    if (c === '1' || c === '2' || c === '6') {
      out += c;
      continue;
    }
    // A run of one symbol ("h@@rm", "k!!ll") is judged by what stands either side of the run.
    let from = i;
    while (from > 0 && s[from - 1] === c) from--;
    let to = i;
    while (to + 1 < s.length && s[to + 1] === c) to++;
    const prev = s[from - 1];
    const next = s[to + 1];
    // Symbols are letters only inside a word: "h@rm", "$uicide" and "cu7$" are words, "@name",
    // "$ 100" and "help!" are not ("$100" reads "s1oo", which no phrase holds).
    if (c === '@' && isWordChar(prev)) {
      out += 'a';
      continue;
    }
    if (c === '$' && (isWordChar(prev) || isWordChar(next))) {
      out += 's';
      continue;
    }
    if ((c === '!' || c === '|') && isWordChar(prev) && isWordChar(next)) {
      out += '1';
      continue;
    }
    // Other scripts' letters and digits stay as they are (a word in Arabic is still a word, not
    // a gap between two English ones); everything else separates words.
    out += /[\p{L}\p{N}]/u.test(c) ? c : ' ';
  }
  return out.replace(/\s+/g, ' ').trim().replace(SPLIT_SELF, '$1$2');
}
