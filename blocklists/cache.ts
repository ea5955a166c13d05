import { createHash } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { LoadReport } from './types';
import type { CompiledParts } from './compiled';
import type { TableData } from './table';
import { sourceFiles } from './parse';

/**
 * Compiled lists written to disk as-is (typed arrays after a JSON header), so `schoolgate check`
 * and a gateway restart skip parsing. The file name is a digest of every source file's path,
 * size and mtime: touching any list makes a new key, and the stale file is simply never read.
 */

const MAGIC = 'SGLIST08';
const ARRAYS = ['recs', 'slots', 'bloom'] as const;

export async function cacheKey(sources: string[]): Promise<string> {
  const h = createHash('sha256').update(MAGIC);
  for (const s of sources) {
    h.update(`\u0000${path.resolve(s)}`);
    for (const f of await sourceFiles(s)) {
      const st = await stat(f);
      h.update(`\u0001${f}\u0002${st.size}\u0002${st.mtimeMs}`);
    }
  }
  return h.digest('hex').slice(0, 32);
}

export function cacheFile(cacheDir: string, key: string): string {
  return path.join(cacheDir, `lists-${key}.bin`);
}

export async function writeCache(file: string, parts: CompiledParts, report: LoadReport): Promise<void> {
  const t = parts.table;
  const header = {
    report,
    categories: parts.categories,
    catsets: parts.catsets,
    urls: parts.urls,
    expressions: parts.expressions,
    count: t.count,
    lengths: ARRAYS.map((k) => t[k].length),
  };
  const json = Buffer.from(JSON.stringify(header));
  const head = Buffer.alloc(16);
  head.write(MAGIC, 0, 'latin1');
  head.writeUInt32LE(json.length, 8);
  const pad = Buffer.alloc((8 - ((16 + json.length) % 8)) % 8);
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.write(head);
    await fh.write(json);
    await fh.write(pad);
    for (const k of ARRAYS) {
      const a = t[k];
      const buf = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
      await fh.write(buf);
      const extra = (8 - (buf.length % 8)) % 8;
      if (extra) await fh.write(Buffer.alloc(extra));
    }
  } finally {
    await fh.close();
  }
  // rename is atomic: a concurrent reader sees the old file or the whole new one
  await rename(tmp, file).catch(async (err) => {
    await unlink(tmp).catch(() => {});
    throw err;
  });
  await prune(path.dirname(file));
}

/** Compiled files kept per cache folder: enough for a few list sets in use side by side. */
const KEEP = 4;

/** Every list change leaves a stale compiled file behind; keep only the newest few. */
async function prune(dir: string): Promise<void> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^lists-[0-9a-f]+\.bin$/.test(n));
  if (names.length <= KEEP) return;
  const withTimes = await Promise.all(names.map(async (n) => ({ n, t: (await stat(path.join(dir, n)).catch(() => null))?.mtimeMs ?? 0 })));
  withTimes.sort((a, b) => b.t - a.t);
  await Promise.all(withTimes.slice(KEEP).map(({ n }) => unlink(path.join(dir, n)).catch(() => {})));
}

/** The cached parts and report, or null when the file is missing or not ours. */
export async function readCache(file: string): Promise<{ parts: CompiledParts; report: LoadReport } | null> {
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch {
    return null;
  }
  try {
    if (buf.length < 16 || buf.toString('latin1', 0, 8) !== MAGIC) return null;
    const jsonLen = buf.readUInt32LE(8);
    const header = JSON.parse(buf.toString('utf8', 16, 16 + jsonLen));
    let pos = 16 + jsonLen;
    pos += (8 - (pos % 8)) % 8;
    // Views need aligned offsets; readFile's buffer is normally its own allocation, else copy.
    const base: Uint8Array = buf.byteOffset % 8 === 0 ? buf : new Uint8Array(buf);
    const arrays: Record<string, Uint32Array | Int32Array> = {};
    ARRAYS.forEach((k, i) => {
      const n = header.lengths[i] as number;
      const bytes = n * 4;
      if (pos + bytes > base.length) throw new Error('truncated');
      arrays[k] = k === 'bloom' ? new Uint32Array(base.buffer, base.byteOffset + pos, n) : new Int32Array(base.buffer, base.byteOffset + pos, n);
      pos += bytes + ((8 - (bytes % 8)) % 8);
    });
    const table = { count: header.count, ...arrays } as TableData;
    return {
      parts: { categories: header.categories, catsets: header.catsets, table, urls: header.urls, expressions: header.expressions },
      report: { ...header.report, fromCache: true },
    };
  } catch {
    return null;
  }
}
