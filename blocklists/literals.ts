/**
 * Required literals of a list expression: a few lower-case ASCII strings, one of which every match
 * of the regex (flag `i`, no `u`) contains. Most URLs contain none of them, and a few substring
 * searches are much cheaper than building the expression target and running the regex on it.
 *
 * The analysis is deliberately partial: anything it does not understand (escapes that spell a
 * character by number, back-references, non-ASCII) makes it give up and answer null, which
 * means "always run the regex". It only ever has to be sound, never complete: a literal it names
 * must be in every match, but it may miss literals that are.
 */

/** Literals shorter than this pass nearly every URL: not worth searching for. */
const MIN_LITERAL = 3;

type Req = string[] | null;

/** Higher is more selective: the shortest literal's length first, then fewer literals. */
function better(a: Req, b: Req): Req {
  if (a === null) return b;
  if (b === null) return a;
  const la = Math.min(...a.map((s) => s.length));
  const lb = Math.min(...b.map((s) => s.length));
  if (la !== lb) return la > lb ? a : b;
  return a.length <= b.length ? a : b;
}

class GiveUp extends Error {}

const ALNUM = /[0-9A-Za-z]/;
/** Escapes that stand for a class or an assertion, never a single literal character. */
const CLASS_ESCAPES = 'dDwWsSbBfnrtv';

class Parser {
  i = 0;
  constructor(private readonly src: string) {}

  alternation(): Req {
    const alts: Req[] = [this.sequence()];
    while (this.src[this.i] === '|') {
      this.i++;
      alts.push(this.sequence());
    }
    if (alts.some((a) => a === null)) return null;
    return [...new Set((alts as string[][]).flat())];
  }

  private sequence(): Req {
    const src = this.src;
    let best: Req = null;
    let run = '';
    const flush = () => {
      if (run.length > 0) best = better(best, [run]);
      run = '';
    };
    while (this.i < src.length && src[this.i] !== '|' && src[this.i] !== ')') {
      // one atom: a literal character (ch) or something else (req: what it requires, if anything)
      let ch: string | null = null;
      let req: Req = null;
      const c = src[this.i];
      if (c === '\\') {
        const d = src[this.i + 1];
        if (d === undefined) throw new GiveUp();
        if (ALNUM.test(d)) {
          // \x41, \u0041, \cA, \0, \1, \k<n>, \p{..}: characters by number and back-references
          if (!CLASS_ESCAPES.includes(d)) throw new GiveUp();
        } else if (d.charCodeAt(0) < 128) ch = d;
        this.i += 2;
      } else if (c === '[') {
        this.i++;
        if (src[this.i] === '^') this.i++;
        while (this.i < src.length && src[this.i] !== ']') this.i += src[this.i] === '\\' ? 2 : 1;
        if (this.i >= src.length) throw new GiveUp();
        this.i++;
      } else if (c === '(') {
        this.i++;
        let lookaround = false;
        if (src[this.i] === '?') {
          const n = src[this.i + 1];
          if (n === ':') this.i += 2;
          else if (n === '=' || n === '!') {
            lookaround = true;
            this.i += 2;
          } else if (n === '<' && (src[this.i + 2] === '=' || src[this.i + 2] === '!')) {
            lookaround = true;
            this.i += 3;
          } else throw new GiveUp();
        }
        const inner = this.alternation();
        if (src[this.i] !== ')') throw new GiveUp();
        this.i++;
        req = lookaround ? null : inner;
      } else if (c === '.' || c === '^' || c === '$') {
        this.i++;
      } else if (c === '*' || c === '+' || c === '?') {
        throw new GiveUp();
      } else {
        // '{', '}' and ']' are literal here (a quantifier at an atom's place is a syntax error)
        if (c.charCodeAt(0) < 128) ch = c.toLowerCase();
        this.i++;
      }
      const min = this.quantifier();
      if (ch !== null && min === 1 && this.lastQuantified === false) {
        run += ch;
      } else if (ch !== null && min >= 1) {
        // `ab+c`: every match holds "ab" and then "bc"
        run += ch;
        flush();
        run = ch;
      } else {
        flush();
        if (min >= 1) best = better(best, req);
      }
    }
    flush();
    return best;
  }

  private lastQuantified = false;

  /** Consumes a quantifier if there is one; its minimum count (1 when there is none). */
  private quantifier(): number {
    const src = this.src;
    const c = src[this.i];
    let min = 1;
    this.lastQuantified = true;
    if (c === '*' || c === '?') {
      min = 0;
      this.i++;
    } else if (c === '+') {
      this.i++;
    } else if (c === '{') {
      const m = /^\{(\d+)(?:,(\d*))?\}/.exec(src.slice(this.i));
      if (!m) {
        this.lastQuantified = false;
        return 1;
      }
      min = Number(m[1]);
      this.i += m[0].length;
    } else {
      this.lastQuantified = false;
      return 1;
    }
    if (src[this.i] === '?') this.i++;
    return min;
  }
}

/**
 * Literals (lower-case ASCII, each at least MIN_LITERAL long), one of which is in every string
 * `new RegExp(source, 'i')` matches; null when no such set can be named. An invalid source
 * matches nothing, so it needs no literal: [].
 */
export function requiredLiterals(source: string): string[] | null {
  try {
    new RegExp(source, 'i');
  } catch {
    return [];
  }
  try {
    const p = new Parser(source);
    const req = p.alternation();
    if (p.i !== source.length) return null;
    if (req === null || req.some((s) => s.length < MIN_LITERAL)) return null;
    return req;
  } catch (err) {
    if (err instanceof GiveUp) return null;
    throw err;
  }
}

/** A literal ready for the check against a URL: where its first '/' is decides where it can be. */
export interface UrlLiteral {
  text: string;
  /** Index of the first '/' in text, or -1. */
  slash: number;
  /** text before the first '/', which must end the host when text starts in the host. */
  head: string;
  /** text from the first '/', which must then start the path. */
  tail: string;
}

export function urlLiterals(literals: readonly string[]): UrlLiteral[] {
  return [...new Set(literals)].map((text) => {
    const slash = text.indexOf('/');
    return { text, slash, head: slash > 0 ? text.slice(0, slash) : '', tail: slash > 0 ? text.slice(slash) : '' };
  });
}

/**
 * Whether `host + mpath` (the expression target when there is no port, ASCII-lower-cased: mpath
 * is matchPath's form of the path) may contain one of `lits`. The host holds no '/' and the path
 * starts with one, so a literal without '/' lies in one of them, one starting with '/' lies in the
 * path, and any other straddles the two with its first '/' on the path's first character.
 */
export function mayContain(lits: readonly UrlLiteral[], host: string, mpath: string): boolean {
  for (let k = 0; k < lits.length; k++) {
    const l = lits[k];
    if (mpath.includes(l.text)) return true;
    if (l.slash < 0) {
      if (host.includes(l.text)) return true;
    } else if (l.slash > 0 && host.endsWith(l.head) && mpath.startsWith(l.tail)) return true;
  }
  return false;
}
