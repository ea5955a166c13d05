import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { cp, lstat, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { isSchoolgateError, SchoolgateError } from '../core/errors';

const run = promisify(execFile);

/** Where `lists update` puts UT1 and where the gateway looks when no --lists is given. */
export const defaultListsDir = (dataDir: string): string => path.join(dataDir, 'lists', 'ut1');

/** Time allowed for the server to answer at all: offline, the first run must fail fast. */
const CONNECT_TIMEOUT_MS = 15_000;
/** Time allowed between two chunks once the download runs. */
const STALL_TIMEOUT_MS = 30_000;

/**
 * Left in a lists folder that `lists update --accept-shrink` swapped in: a running gateway then
 * accepts its reload of that version although it shrinks a category (see reloadStore).
 */
export const ACCEPT_MARK = '.schoolgate-accepted';

/** Defaults for the size caps (config: listDownloadMaxBytes, listExtractMaxBytes). */
export const DEFAULT_MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024;
export const DEFAULT_MAX_EXTRACT_BYTES = 2 * 1024 * 1024 * 1024;
/** Members an archive may hold: UT1 has a few hundred files; millions of empty ones is an attack. */
const MAX_ARCHIVE_MEMBERS = 200_000;

export interface ListSizeLimits {
  maxDownloadBytes?: number;
  maxExtractBytes?: number;
}

const tooLarge = (msg: string): never => {
  throw new SchoolgateError('SG_ERR_LIST_TOO_LARGE', msg);
};
const unsafe = (archive: string, msg: string): never => {
  throw new SchoolgateError('SG_ERR_LIST_ARCHIVE', `${archive}: ${msg}`);
};

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
  /**
   * Called with the new lists' folder before it replaces the old one (which is still in place);
   * throwing refuses the update and the old lists stay.
   */
  verify?: (newDir: string, oldDir: string | null) => Promise<void>;
} & ListSizeLimits): Promise<{ dir: string }> {
  const limits = { download: opts.maxDownloadBytes ?? DEFAULT_MAX_DOWNLOAD_BYTES, extract: opts.maxExtractBytes ?? DEFAULT_MAX_EXTRACT_BYTES };
  const dest = defaultListsDir(opts.dataDir);
  const parent = path.dirname(dest);
  await mkdir(parent, { recursive: true });
  const work = path.join(parent, `.update-${process.pid}-${Date.now()}`);
  await mkdir(work, { recursive: true });
  try {
    let root: string;
    if (/^https?:\/\//i.test(opts.from)) {
      const tarball = path.join(work, 'lists.tar.gz');
      await download(opts.from, tarball, limits.download, opts.onProgress);
      root = await extract(tarball, work, limits.extract);
    } else {
      const st = await stat(opts.from).catch((err) => fail(`${opts.from}: ${(err as Error).message}`, err));
      if (st.isDirectory()) {
        root = path.join(work, 'tree');
        await cp(opts.from, root, { recursive: true, dereference: true });
      } else {
        root = await extract(opts.from, work, limits.extract);
      }
    }
    if (!(await hasCategories(root))) fail(`${opts.from}: no category folders (domains/urls files) found`);
    const old = `${dest}.old-${process.pid}`;
    const hadOld = await stat(dest).then(() => true, () => false);
    await opts.verify?.(root, hadOld ? dest : null);
    if (hadOld) await rename(dest, old);
    await rename(root, dest);
    if (hadOld) await rm(old, { recursive: true, force: true });
    return { dir: dest };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function download(url: string, file: string, maxBytes: number, onProgress?: (done: number, total: number | null) => void): Promise<void> {
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
    if (total !== null && total > maxBytes) {
      await res.body.cancel().catch(() => {});
      tooLarge(`${url}: ${total} bytes, more than the ${maxBytes} allowed (listDownloadMaxBytes)`);
    }
    let done = 0;
    const progress = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        done += chunk.length;
        // Counted as it arrives: a server may send no length, or lie about it.
        if (done > maxBytes) return cb(new SchoolgateError('SG_ERR_LIST_TOO_LARGE', `${url}: more than the ${maxBytes} bytes allowed (listDownloadMaxBytes)`));
        clearTimeout(timer);
        timer = setTimeout(() => ac.abort(new Error('download stalled')), STALL_TIMEOUT_MS);
        onProgress?.(done, total);
        cb(null, chunk);
      },
    });
    clearTimeout(timer);
    timer = setTimeout(() => ac.abort(new Error('download stalled')), STALL_TIMEOUT_MS);
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), progress, createWriteStream(file)).catch((err) =>
      isSchoolgateError(err) ? Promise.reject(err) : fail(`${url}: ${(err as Error).message}`, err),
    );
  } finally {
    clearTimeout(timer);
  }
}

/**
 * What the archive holds, as the system tar lists it, checked before anything is written: only
 * plain files and folders, relative, with no ".." (a link or such a name could write or point
 * outside the lists folder), and no more than `maxBytes` unpacked.
 */
async function inspect(tarball: string, maxBytes: number): Promise<{ aliases: string[] }> {
  let out: string;
  try {
    ({ stdout: out } = await run('tar', ['-tzvf', tarball, '--quoting-style=escape', '--numeric-owner'], {
      maxBuffer: 256 << 20,
      env: { ...process.env, LC_ALL: 'C' },
    }));
  } catch (err) {
    return fail(`${tarball}: cannot read the archive: ${((err as { stderr?: string }).stderr || (err as Error).message).trim()}`, err);
  }
  let total = 0;
  let members = 0;
  const aliases: string[] = [];
  for (const line of out.split('\n')) {
    if (line === '') continue;
    if (++members > MAX_ARCHIVE_MEMBERS) unsafe(tarball, `more than ${MAX_ARCHIVE_MEMBERS} members`);
    const m = /^([-dlhcbps])\S{9}\S*\s+\S+\s+(\d+)\s+\d{4}-\d\d-\d\d\s+\d\d:\d\d(?::\d\d)?\s(.*)$/.exec(line);
    if (!m) unsafe(tarball, `a member tar cannot describe plainly: ${JSON.stringify(line.slice(0, 200))}`);
    const [, type, size, name] = m!;
    // UT1 has shipped category aliases as links to a sibling folder (`ads -> publicite`): they are
    // left out, not followed; any other link could point or write anywhere.
    const alias = type === 'l' ? /^([^/]+\/)?([A-Za-z0-9_.-]+) -> ([A-Za-z0-9_-][A-Za-z0-9_.-]*)$/.exec(name) : null;
    if (alias && alias[3] !== '..' && alias[3] !== '.') {
      aliases.push(`${alias[1] ?? ''}${alias[2]}`);
      continue;
    }
    if (type === 'l' || type === 'h') unsafe(tarball, `${type === 'l' ? 'symbolic' : 'hard'} link member ${JSON.stringify(name.slice(0, 200))}`);
    if (type !== '-' && type !== 'd') unsafe(tarball, `special file member ${JSON.stringify(name.slice(0, 200))}`);
    if (name.startsWith('/')) unsafe(tarball, `absolute member name ${JSON.stringify(name.slice(0, 200))}`);
    if (name.split('/').includes('..')) unsafe(tarball, `member name with "..": ${JSON.stringify(name.slice(0, 200))}`);
    total += Number(size);
    if (total > maxBytes) tooLarge(`${tarball}: unpacks to more than the ${maxBytes} bytes allowed (listExtractMaxBytes)`);
  }
  return { aliases };
}

/** After extraction, the tree itself: the listing is trusted no further than it can be checked. */
async function verifyTree(dir: string, maxBytes: number): Promise<void> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const st = await lstat(p);
      if (st.isDirectory()) {
        await walk(p);
        continue;
      }
      if (!st.isFile()) unsafe(dir, `${path.relative(dir, p)} is not a plain file`);
      if (st.nlink > 1) unsafe(dir, `${path.relative(dir, p)} is a hard link`);
      total += st.size;
      if (total > maxBytes) tooLarge(`${dir}: unpacked to more than the ${maxBytes} bytes allowed (listExtractMaxBytes)`);
    }
  };
  await walk(dir);
}

/** Extracts with the system tar after checking every member; returns the folder holding the category folders. */
async function extract(tarball: string, work: string, maxBytes: number): Promise<string> {
  const { aliases } = await inspect(tarball, maxBytes);
  const out = path.join(work, 'x');
  await mkdir(out, { recursive: true });
  const skip = aliases.flatMap((a) => ['--exclude', a]);
  try {
    await run('tar', ['-xzf', tarball, '-C', out, '--no-same-owner', '--no-same-permissions', '--anchored', '--no-wildcards', ...skip], { maxBuffer: 16 << 20 });
  } catch (err) {
    fail(`${tarball}: cannot extract: ${((err as { stderr?: string }).stderr || (err as Error).message).trim()}`, err);
  }
  await verifyTree(out, maxBytes);
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
