import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { cp, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { SchoolgateError } from '../core/errors';

const run = promisify(execFile);

/** Where `lists update` puts UT1 and where the gateway looks when no --lists is given. */
export const defaultListsDir = (dataDir: string): string => path.join(dataDir, 'lists', 'ut1');

/** Time allowed for the server to answer at all: offline, the first run must fail fast. */
const CONNECT_TIMEOUT_MS = 15_000;
/** Time allowed between two chunks once the download runs. */
const STALL_TIMEOUT_MS = 30_000;

const fail = (msg: string, cause?: unknown): never => {
  throw new SchoolgateError('SG_ERR_LIST_SOURCE', msg, undefined, cause === undefined ? undefined : { cause });
};

/**
 * A one-line progress bar for `updateLists`' onProgress, redrawn in place on `out` only when the
 * whole percent (or, without a known size, the whole megabyte) changes.
 */
export function progressBar(out: NodeJS.WritableStream, label: string): (done: number, total: number | null) => void {
  let last = -1;
  return (done, total) => {
    if (total) {
      const pct = Math.floor((done / total) * 100);
      if (pct === last) return;
      last = pct;
      const width = 30;
      const filled = Math.round((pct / 100) * width);
      out.write(`\r${label} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${pct}% ${(done / 1e6).toFixed(1)} MB`);
    } else {
      const mb = Math.floor(done / 1e6);
      if (mb === last) return;
      last = mb;
      out.write(`\r${label} ${mb} MB`);
    }
  };
}

/**
 * Fetches UT1 (a .tar.gz URL, a local tarball, or a folder) into `<dataDir>/lists/ut1`.
 * The new lists are prepared beside the old and swapped in by rename, so a failed update leaves
 * the previous lists untouched.
 */
export async function updateLists(opts: {
  from: string;
  dataDir: string;
  onProgress?: (done: number, total: number | null) => void;
}): Promise<{ dir: string }> {
  const dest = defaultListsDir(opts.dataDir);
  const parent = path.dirname(dest);
  await mkdir(parent, { recursive: true });
  const work = path.join(parent, `.update-${process.pid}-${Date.now()}`);
  await mkdir(work, { recursive: true });
  try {
    let root: string;
    if (/^https?:\/\//i.test(opts.from)) {
      const tarball = path.join(work, 'lists.tar.gz');
      await download(opts.from, tarball, opts.onProgress);
      root = await extract(tarball, work);
    } else {
      const st = await stat(opts.from).catch((err) => fail(`${opts.from}: ${(err as Error).message}`, err));
      if (st.isDirectory()) {
        root = path.join(work, 'tree');
        await cp(opts.from, root, { recursive: true, dereference: true });
      } else {
        root = await extract(opts.from, work);
      }
    }
    if (!(await hasCategories(root))) fail(`${opts.from}: no category folders (domains/urls files) found`);
    const old = `${dest}.old-${process.pid}`;
    const hadOld = await stat(dest).then(() => true, () => false);
    if (hadOld) await rename(dest, old);
    await rename(root, dest);
    if (hadOld) await rm(old, { recursive: true, force: true });
    return { dir: dest };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function download(url: string, file: string, onProgress?: (done: number, total: number | null) => void): Promise<void> {
  const ac = new AbortController();
  let timer = setTimeout(() => ac.abort(new Error(`no answer within ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
  try {
    let res: Response;
    try {
      res = await fetch(url, { signal: ac.signal, redirect: 'follow' });
    } catch (err) {
      const e = err as Error & { cause?: Error };
      return fail(`${url}: ${e.cause?.message ?? (ac.signal.reason as Error | undefined)?.message ?? e.message}`, err);
    }
    if (!res.ok || !res.body) return fail(`${url}: HTTP ${res.status}`);
    const len = Number(res.headers.get('content-length'));
    const total = Number.isFinite(len) && len > 0 ? len : null;
    let done = 0;
    const progress = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        done += chunk.length;
        clearTimeout(timer);
        timer = setTimeout(() => ac.abort(new Error('download stalled')), STALL_TIMEOUT_MS);
        onProgress?.(done, total);
        cb(null, chunk);
      },
    });
    clearTimeout(timer);
    timer = setTimeout(() => ac.abort(new Error('download stalled')), STALL_TIMEOUT_MS);
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), progress, createWriteStream(file)).catch((err) =>
      fail(`${url}: ${(err as Error).message}`, err),
    );
  } finally {
    clearTimeout(timer);
  }
}

/** Extracts with the system tar; returns the folder holding the category folders. */
async function extract(tarball: string, work: string): Promise<string> {
  const out = path.join(work, 'x');
  await mkdir(out, { recursive: true });
  try {
    await run('tar', ['-xzf', tarball, '-C', out, '--no-same-owner'], { maxBuffer: 16 << 20 });
  } catch (err) {
    fail(`${tarball}: cannot extract: ${((err as { stderr?: string }).stderr || (err as Error).message).trim()}`, err);
  }
  // UT1 ships everything under one top folder (`blacklists/`); accept either layout.
  if (await hasCategories(out)) return out;
  const entries = (await readdir(out, { withFileTypes: true })).filter((e) => e.isDirectory());
  for (const e of entries) {
    const p = path.join(out, e.name);
    if (await hasCategories(p)) return p;
  }
  return fail(`${tarball}: no category folders found in the archive`);
}

async function hasCategories(dir: string): Promise<boolean> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    for (const f of ['domains', 'urls']) {
      if (await stat(path.join(dir, e.name, f)).then(() => true, () => false)) return true;
    }
  }
  return false;
}
