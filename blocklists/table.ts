/**
 * The compact exact-match structure behind domain lookups: every entry's bytes in one buffer,
 * an open-addressed table of entry indexes, and a blocked bloom filter in front of it.
 *
 * Hashes run right to left over the host, so one pass over `a.b.example.com` yields the hashes of
 * `com`, `example.com`, `b.example.com` and the whole host: the label-suffix walk costs one pass,
 * not one pass per suffix. Everything is typed arrays, so 10 million entries stay well under 1 GB
 * and the whole structure can be written to and read back from a cache file as-is.
 */

/** murmur3's finaliser: spreads the running FNV-style state over all 32 bits. */
// Hashes stay signed 32-bit integers throughout: V8 keeps those unboxed, where uint32 values
// above 2^31 become heap numbers and turn every lookup into garbage.
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

const SEED_A = 0x811c9dc5;
const SEED_B = 0x9747b28c;
const step = (h: number, c: number, p: number) => Math.imul(h ^ c, p);
const PA = 0x01000193;
const PB = 0x5bd1e995;

/** Hash pair of the whole string, computed right to left (the same as the suffix walk). */
export function hashPair(s: string, out: Int32Array): void {
  let a = SEED_A;
  let b = SEED_B;
  for (let i = s.length - 1; i >= 0; i--) {
    const c = s.charCodeAt(i);
    a = step(a, c, PA);
    b = step(b, c, PB);
  }
  out[0] = fmix(a);
  out[1] = fmix(b ^ s.length);
}

const BLOCK_WORDS = 16; // 512-bit blocks: one cache line per bloom query
const BLOOM_K = 6;
const BLOOM_BITS_PER_ENTRY = 12;

export interface TableData {
  count: number;
  bytes: Uint8Array;
  /** Entry i's bytes are bytes[offsets[i] .. offsets[i+1]). */
  offsets: Uint32Array;
  /** Category-set id per entry. */
  values: Uint32Array;
  /** Entry's first hash, for rehashing and cheap rejects. */
  hashA: Int32Array;
  /** Open-addressed slots holding entry index + 1; 0 is empty. */
  slots: Uint32Array;
  bloom: Uint32Array;
}

/** A power-of-two number of blocks, so the block index is a mask, not a division. */
function bloomSize(count: number): number {
  const wanted = Math.max(1, Math.ceil((count * BLOOM_BITS_PER_ENTRY) / 512));
  let blocks = 1;
  while (blocks < wanted) blocks *= 2;
  return blocks * BLOCK_WORDS;
}

function bloomAdd(bloom: Uint32Array, a: number, b: number): void {
  const base = (a & (bloom.length / BLOCK_WORDS - 1)) * BLOCK_WORDS;
  let h = b;
  const inc = (a >>> 17) | 1;
  for (let j = 0; j < BLOOM_K; j++) {
    const bit = h & 511;
    bloom[base + (bit >>> 5)] |= 1 << (bit & 31);
    h = (h + inc) | 0;
    h = (h >>> 9) | (h << 23);
  }
}

function bloomHas(bloom: Uint32Array, a: number, b: number): boolean {
  const base = (a & (bloom.length / BLOCK_WORDS - 1)) * BLOCK_WORDS;
  let h = b;
  const inc = (a >>> 17) | 1;
  for (let j = 0; j < BLOOM_K; j++) {
    const bit = h & 511;
    if ((bloom[base + (bit >>> 5)] & (1 << (bit & 31))) === 0) return false;
    h = (h + inc) | 0;
    h = (h >>> 9) | (h << 23);
  }
  return true;
}

const encoder = new TextEncoder();

/** Second hash of entry i recomputed from its bytes (the builder keeps only the first). */
function hashBBytes(bytes: Uint8Array, start: number, end: number): number {
  let b = SEED_B;
  for (let k = end - 1; k >= start; k--) b = step(b, bytes[k], PB);
  return fmix(b ^ (end - start));
}

/** Growth factor for the builder's arrays: 1.5 rather than 2 keeps the peak of a 10M load low. */
const grown = (n: number) => Math.ceil(n * 1.5);

/** Grows while a list loads; `finish()` freezes it into a CompiledTable. */
export class TableBuilder {
  count = 0;
  private bytes = new Uint8Array(1 << 16);
  private used = 0;
  private offsets = new Uint32Array(1 << 12);
  private values = new Uint32Array(1 << 12);
  private hashA = new Int32Array(1 << 12);
  private slots = new Uint32Array(1 << 13);
  private readonly hp = new Int32Array(2);

  /** Adds `entry` or merges `value` into it; true when the entry is new or its value changed. */
  add(entry: string, value: number, merge: (old: number, value: number) => number): boolean {
    hashPair(entry, this.hp);
    const a = this.hp[0];
    const mask = this.slots.length - 1;
    let s = a & mask;
    for (;;) {
      const v = this.slots[s];
      if (v === 0) break;
      const i = v - 1;
      if (this.hashA[i] === a && this.equals(i, entry)) {
        const merged = merge(this.values[i], value);
        const changed = merged !== this.values[i];
        this.values[i] = merged;
        return changed;
      }
      s = (s + 1) & mask;
    }
    const i = this.count;
    if (i + 2 >= this.offsets.length) this.growEntries();
    const needed = this.used + entry.length * 3;
    if (needed > this.bytes.length) {
      let n = grown(this.bytes.length);
      while (n < needed) n = grown(n);
      const nb = new Uint8Array(n);
      nb.set(this.bytes.subarray(0, this.used));
      this.bytes = nb;
    }
    this.offsets[i] = this.used;
    this.used += encoder.encodeInto(entry, this.bytes.subarray(this.used)).written;
    this.offsets[i + 1] = this.used;
    this.values[i] = value;
    this.hashA[i] = a;
    this.slots[s] = i + 1;
    this.count++;
    // linear probing stays short up to 3/4 full, and the bloom filter keeps most misses away
    if (this.count * 4 > this.slots.length * 3) this.rehash(this.slots.length * 2);
    return true;
  }

  private equals(i: number, s: string): boolean {
    const start = this.offsets[i];
    if (this.offsets[i + 1] - start !== s.length) return false;
    for (let k = 0; k < s.length; k++) if (this.bytes[start + k] !== s.charCodeAt(k)) return false;
    return true;
  }

  private growEntries(): void {
    const n = grown(this.offsets.length);
    const grow = <T extends Uint32Array | Int32Array>(a: T): T => {
      const r = new (a.constructor as new (n: number) => T)(n);
      r.set(a);
      return r;
    };
    this.offsets = grow(this.offsets);
    this.values = grow(this.values);
    this.hashA = grow(this.hashA);
  }

  private rehash(size: number): void {
    this.slots = new Uint32Array(0); // let the old table go before the new one is allocated
    const slots = new Uint32Array(size);
    const mask = size - 1;
    for (let i = 0; i < this.count; i++) {
      let s = this.hashA[i] & mask;
      while (slots[s] !== 0) s = (s + 1) & mask;
      slots[s] = i + 1;
    }
    this.slots = slots;
  }

  finish(): CompiledTable {
    const n = this.count;
    const bloom = new Uint32Array(bloomSize(n));
    for (let i = 0; i < n; i++) bloomAdd(bloom, this.hashA[i], hashBBytes(this.bytes, this.offsets[i], this.offsets[i + 1]));
    // Trim the builder's slack one array at a time, dropping each original as soon as it is
    // copied, so the peak stays near the size of the result.
    const bytes = this.bytes.slice(0, this.used);
    this.bytes = new Uint8Array(0);
    const offsets = this.offsets.slice(0, n + 1);
    this.offsets = new Uint32Array(0);
    const values = this.values.slice(0, n);
    this.values = new Uint32Array(0);
    const hashA = this.hashA.slice(0, n);
    this.hashA = new Int32Array(0);
    return new CompiledTable({ count: n, bytes, offsets, values, hashA, slots: this.slots, bloom });
  }
}

/** Sentinel for "no match" from the lookups (category-set ids are never this large). */
export const NONE = 0xffffffff;

export class CompiledTable {
  readonly data: TableData;
  private readonly mask: number;

  constructor(data: TableData) {
    this.data = data;
    this.mask = data.slots.length - 1;
  }

  get count(): number {
    return this.data.count;
  }

  private text: Buffer | null = null;

  entry(i: number): string {
    const { bytes, offsets } = this.data;
    this.text ??= Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return this.text.toString('latin1', offsets[i], offsets[i + 1]);
  }

  /** Entry index of `s.slice(start)` given its hashes (as `walk` computes them), or -1. */
  find(s: string, start: number, a: number, b: number): number {
    const d = this.data;
    if (!bloomHas(d.bloom, a, b)) return -1;
    let slot = a & this.mask;
    const len = s.length - start;
    for (;;) {
      const v = d.slots[slot];
      if (v === 0) return -1;
      const i = v - 1;
      if (d.hashA[i] === a) {
        const off = d.offsets[i];
        if (d.offsets[i + 1] - off === len) {
          let k = 0;
          while (k < len && d.bytes[off + k] === s.charCodeAt(start + k)) k++;
          if (k === len) return i;
        }
      }
      slot = (slot + 1) & this.mask;
    }
  }

  /** Exact lookup of a whole string: the entry index or -1. */
  lookup(s: string): number {
    let a = SEED_A;
    let b = SEED_B;
    for (let i = s.length - 1; i >= 0; i--) {
      const c = s.charCodeAt(i);
      a = step(a, c, PA);
      b = step(b, c, PB);
    }
    return this.find(s, 0, fmix(a), fmix(b ^ s.length));
  }

  /**
   * Writes into `out` the entry index of every label suffix of `host` that is listed, from the
   * top-level label up to the whole host; returns how many.
   */
  suffixHits(host: string, out: Int32Array): number {
    if (this.data.count === 0) return 0;
    let a = SEED_A;
    let b = SEED_B;
    let n = 0;
    const len = host.length;
    for (let i = len - 1; i >= 0; i--) {
      const c = host.charCodeAt(i);
      a = step(a, c, PA);
      b = step(b, c, PB);
      if (i === 0 || host.charCodeAt(i - 1) === 46) {
        const e = this.find(host, i, fmix(a), fmix(b ^ (len - i)));
        if (e >= 0 && n < out.length) out[n++] = e;
      }
    }
    return n;
  }
}

/**
 * One right-to-left pass over `host` for both tables a lookup needs: every listed label suffix
 * of `domains` goes into `out` (the count is returned), and `urlHit[0]` gets the `urls` entry for
 * `host.slice(urlStart)` (the www-stripped host, itself a suffix), or -1.
 */
export function walkHost(host: string, domains: CompiledTable, out: Int32Array, urls: CompiledTable, urlStart: number, urlHit: Int32Array): number {
  let a = SEED_A;
  let b = SEED_B;
  let n = 0;
  const len = host.length;
  const anyDomains = domains.count !== 0;
  urlHit[0] = -1;
  for (let i = len - 1; i >= 0; i--) {
    const c = host.charCodeAt(i);
    a = step(a, c, PA);
    b = step(b, c, PB);
    if (i === 0 || host.charCodeAt(i - 1) === 46) {
      const fa = fmix(a);
      const fb = fmix(b ^ (len - i));
      if (anyDomains) {
        const e = domains.find(host, i, fa, fb);
        if (e >= 0 && n < out.length) out[n++] = e;
      }
      if (i === urlStart && urls.count !== 0) urlHit[0] = urls.find(host, i, fa, fb);
    }
  }
  return n;
}
