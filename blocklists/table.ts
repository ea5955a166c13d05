/**
 * The compact exact-match structure behind domain lookups: every entry a record (its values, its
 * length and its bytes) in one buffer, an open-addressed table of record positions, and a blocked
 * bloom filter in front of it.
 *
 * Hashes run right to left over the host, so one pass over `a.b.example.com` yields the hashes of
 * `com`, `example.com`, `b.example.com` and the whole host: the label-suffix walk costs one pass,
 * not one pass per suffix. Everything is typed arrays, so 10 million entries stay well under 1 GB
 * and the whole structure can be written to and read back from a cache file as-is.
 */

// murmur3's finaliser spreads the running FNV-style state over all 32 bits. Hashes stay signed 32-bit integers throughout: V8 keeps those unboxed, where uint32 values
// above 2^31 become heap numbers and turn every lookup into garbage.
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

const SEED_A = 0x811c9dc5;
const step = (h: number, c: number, p: number) => Math.imul(h ^ c, p);
const PA = 0x01000193;

/**
 * Hash of the whole string, computed right to left (the same as the suffix walk). One 32-bit
 * FNV-style chain, finalised: the slot hash, and (re-mixed, see bloomBits) the bloom filter's bits.
 * A second independent chain would halve the false-positive rate only for strings that collide
 * in all 32 bits, and the exact comparison catches those anyway. (Packing four characters per
 * multiply was tried: reading the characters costs more than the multiplies; it was no faster
 * in the walk and slower alone.)
 */
export function hashString(s: string): number {
  let a = SEED_A;
  for (let i = s.length - 1; i >= 0; i--) a = step(a, s.charCodeAt(i), PA);
  return fmix(a);
}

/** Bit-position hash for the bloom filter: a bijective re-mix, so it is independent of the block index bits. */
const bloomBits = (a: number) => fmix(a ^ 0x5bd1e995);

const BLOCK_WORDS = 16; // 512-bit blocks: one cache line per bloom query
const BLOOM_K = 6;
const BLOOM_BITS_PER_ENTRY = 12;

export interface TableData {
  count: number;
  /**
   * Entry records, one after another, each starting on a word: recs[e] is entry e's value
   * (category-set id), recs[e+1] its second value (0 unless set: the url list of a host, plus
   * one), recs[e+2] its length, and its bytes follow from byte 4*(e+3), padded to a word. An
   * entry is known by the position of its record. A slot points straight at the record, so a
   * hit reads the slot's cache line and then one more, where values, length and bytes sit together.
   */
  recs: Int32Array;
  /** Open-addressed slots, interleaved as (hash, record position + 1); 0 marks an empty slot. */
  slots: Int32Array;
  bloom: Uint32Array;
}

/** Words of a record before its bytes. */
const HEAD = 3;

/** A power-of-two number of blocks, so the block index is a mask, not a division. */
function bloomSize(count: number): number {
  const wanted = Math.max(1, Math.ceil((count * BLOOM_BITS_PER_ENTRY) / 512));
  let blocks = 1;
  while (blocks < wanted) blocks *= 2;
  return blocks * BLOCK_WORDS;
}

function bloomAdd(bloom: Uint32Array, a: number): void {
  const base = (a & (bloom.length / BLOCK_WORDS - 1)) * BLOCK_WORDS;
  let h = bloomBits(a);
  const inc = (a >>> 17) | 1;
  for (let j = 0; j < BLOOM_K; j++) {
    const bit = h & 511;
    bloom[base + (bit >>> 5)] |= 1 << (bit & 31);
    h = (h + inc) | 0;
    h = (h >>> 9) | (h << 23);
  }
}

/** Growth factor for the builder's arrays: 1.5 rather than 2 keeps the peak of a 10M load low. */
const grown = (n: number) => Math.ceil(n * 1.5);

/** Grows while a list loads; `finish()` freezes it into a CompiledTable. */
export class TableBuilder {
  count = 0;
  private recs = new Int32Array(1 << 14);
  private bytes = new Uint8Array(this.recs.buffer);
  /** Words of `recs` in use. */
  private used = 0;
  /** Number of slots (the array holds two words per slot). */
  private size = 1 << 12;
  private slots = new Int32Array(2 << 12);
  /** Record position of the entry the last `insert` added. */
  lastAdded = -1;

  /**
   * Makes room for about `bytes` of entry text and `entries` entries up front (the list files'
   * size and line count bound both): no growth copies, and little slack left to trim.
   */
  reserve(bytes: number, entries = 0): void {
    // Sized once for the expected entries: growing by copies leaves freed blocks the allocator
    // keeps, and at 10 million entries those would push the peak towards 1 GB.
    const words = Math.ceil(bytes / 4) + (HEAD + 1) * entries + 4;
    if (words > this.recs.length) this.growTo(words);
    let size = this.size;
    while (entries * 4 > size * 3) size *= 2;
    if (size > this.size) this.rehash(size);
  }

  private growTo(words: number): void {
    const r = new Int32Array(words);
    r.set(this.recs.subarray(0, this.used));
    this.recs = r;
    this.bytes = new Uint8Array(r.buffer);
  }

  /** Adds `entry` or merges `value` into it; true when the entry is new or its value changed. */
  add(entry: string, value: number, merge: (old: number, value: number) => number): boolean {
    const i = this.insert(entry, value);
    if (i < 0) return true;
    const old = this.recs[i];
    const merged = merge(old, value);
    this.recs[i] = merged;
    return merged !== old;
  }

  /** Value of entry i while building. */
  valueAt(i: number): number {
    return this.recs[i];
  }

  setValueAt(i: number, value: number): void {
    this.recs[i] = value;
  }

  /** Sets entry i's second value (0 means none). */
  setExtraAt(i: number, extra: number): void {
    this.recs[i + 1] = extra;
  }

  /**
   * Inserts `entry` (ASCII: hosts are punycode by now) with `value`; returns -1 when it is new
   * (its position is then `lastAdded`), else the position of the existing entry, left unchanged.
   */
  insert(entry: string, value: number): number {
    const a = hashString(entry);
    const mask = this.size - 1;
    let s = a & mask;
    for (;;) {
      const v = this.slots[2 * s + 1];
      if (v === 0) break;
      if (this.slots[2 * s] === a && this.equals(v - 1, entry)) return v - 1;
      s = (s + 1) & mask;
    }
    const len = entry.length;
    const words = HEAD + ((len + 3) >> 2);
    if (this.used + words > this.recs.length) {
      let n = grown(this.recs.length);
      while (n < this.used + words) n = grown(n);
      this.growTo(n);
    }
    const e = this.used;
    this.recs[e] = value;
    this.recs[e + 1] = 0;
    this.recs[e + 2] = len;
    const b = 4 * (e + HEAD);
    for (let k = 0; k < len; k++) this.bytes[b + k] = entry.charCodeAt(k);
    this.used = e + words;
    this.slots[2 * s] = a;
    this.slots[2 * s + 1] = e + 1;
    this.count++;
    this.lastAdded = e;
    // linear probing stays short up to 3/4 full, and the bloom filter keeps most misses away
    if (this.count * 4 > this.size * 3) this.rehash(this.size * 2);
    return -1;
  }

  private equals(e: number, s: string): boolean {
    if (this.recs[e + 2] !== s.length) return false;
    const b = 4 * (e + HEAD);
    for (let k = 0; k < s.length; k++) if (this.bytes[b + k] !== s.charCodeAt(k)) return false;
    return true;
  }

  private rehash(size: number): void {
    const old = this.slots;
    const slots = new Int32Array(2 * size);
    const mask = size - 1;
    for (let o = 0; o < old.length; o += 2) {
      if (old[o + 1] === 0) continue;
      let s = old[o] & mask;
      while (slots[2 * s + 1] !== 0) s = (s + 1) & mask;
      slots[2 * s] = old[o];
      slots[2 * s + 1] = old[o + 1];
    }
    this.slots = slots;
    this.size = size;
  }

  finish(): CompiledTable {
    const n = this.count;
    const bloom = new Uint32Array(bloomSize(n));
    for (let o = 0; o < this.slots.length; o += 2) {
      const v = this.slots[o + 1];
      if (v === 0) continue;
      bloomAdd(bloom, this.slots[o]);
    }
    // Trim the builder's slack, keeping a little rather than copying (a copy would briefly need both).
    const len = this.used;
    const recs = len >= this.recs.length * 0.85 ? this.recs.subarray(0, len) : this.recs.slice(0, len);
    this.recs = new Int32Array(0);
    this.bytes = new Uint8Array(0);
    return new CompiledTable({ count: n, recs, slots: this.slots, bloom });
  }
}

export class CompiledTable {
  readonly data: TableData;
  private readonly mask: number;
  private readonly bloomMask: number;
  /** The records' bytes. */
  private readonly bytes: Uint8Array;
  private text: Buffer | null = null;

  constructor(data: TableData) {
    this.data = data;
    this.mask = data.slots.length / 2 - 1;
    this.bloomMask = data.bloom.length / BLOCK_WORDS - 1;
    const r = data.recs;
    this.bytes = new Uint8Array(r.buffer, r.byteOffset, r.byteLength);
  }

  get count(): number {
    return this.data.count;
  }

  /** The value (category-set id) of entry e. */
  value(e: number): number {
    return this.data.recs[e];
  }

  /** Entry e's second value, 0 when none was set. */
  extra(e: number): number {
    return this.data.recs[e + 1];
  }

  /** Length of entry e. */
  length(e: number): number {
    return this.data.recs[e + 2];
  }

  entry(e: number): string {
    this.text ??= Buffer.from(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    const b = 4 * (e + HEAD);
    return this.text.toString('latin1', b, b + this.data.recs[e + 2]);
  }

  /** Entry (record position) of `s.slice(start)` given its hash (as `walkHost` computes it), or -1. */
  find(s: string, start: number, a: number): number {
    const d = this.data;
    // the bloom filter first: one cache line answers "certainly not listed" for most suffixes
    const bloom = d.bloom;
    const base = (a & this.bloomMask) * BLOCK_WORDS;
    let h = bloomBits(a);
    const inc = (a >>> 17) | 1;
    for (let j = 0; j < BLOOM_K; j++) {
      const bit = h & 511;
      if ((bloom[base + (bit >>> 5)] & (1 << (bit & 31))) === 0) return -1;
      h = (h + inc) | 0;
      h = (h >>> 9) | (h << 23);
    }
    const slots = d.slots;
    const mask = this.mask;
    const len = s.length - start;
    let slot = a & mask;
    for (;;) {
      const v = slots[2 * slot + 1];
      if (v === 0) return -1;
      if (slots[2 * slot] === a) {
        const e = v - 1;
        if (d.recs[e + 2] === len) {
          const bytes = this.bytes;
          const b = 4 * (e + HEAD);
          let k = 0;
          while (k < len && bytes[b + k] === s.charCodeAt(start + k)) k++;
          if (k === len) return e;
        }
      }
      slot = (slot + 1) & mask;
    }
  }

  /** Exact lookup of a whole string: the entry or -1. */
  lookup(s: string): number {
    if (this.data.count === 0) return -1;
    return this.find(s, 0, hashString(s));
  }

  /**
   * Writes into `out` the entry index of every label suffix of `host` that is listed, from the
   * top-level label up to the whole host; returns how many.
   */
  suffixHits(host: string, out: Int32Array): number {
    return walkHost(host, this, out, -1, SCRATCH);
  }
}

const SCRATCH = new Int32Array(1);

/**
 * One right-to-left pass over `host`: every listed label suffix goes into `out` (the count is
 * returned), and `extraHit[0]` gets the second value of the entry for `host.slice(extraStart)`
 * (the www-stripped host, itself a suffix), or 0. Url-entry hosts live in the same table as
 * domains (with an empty category set), so that look-up costs no probe of its own.
 */
export function walkHost(host: string, table: CompiledTable, out: Int32Array, extraStart: number, extraHit: Int32Array): number {
  extraHit[0] = 0;
  if (table.count === 0) return 0;
  const recs = table.data.recs;
  let a = SEED_A;
  let n = 0;
  // At each dot, `a` holds the hash of the suffix right of it; the whole host comes last.
  for (let i = host.length - 1; i >= 0; i--) {
    const c = host.charCodeAt(i);
    if (c === 46) {
      const e = table.find(host, i + 1, fmix(a));
      if (e >= 0) {
        if (n < out.length) out[n++] = e;
        if (i + 1 === extraStart) extraHit[0] = recs[e + 1];
      }
    }
    a = step(a, c, PA);
  }
  const e = table.find(host, 0, fmix(a));
  if (e >= 0) {
    if (n < out.length) out[n++] = e;
    if (extraStart === 0) extraHit[0] = recs[e + 1];
  }
  return n;
}
