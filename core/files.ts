import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { SchoolgateError } from './errors';

/**
 * Writes `file` whole or not at all: under a fresh temporary name beside it, then renamed over it
 * (atomic on one filesystem), so a reader or a crash never sees half of it. The temporary file is
 * removed when anything fails.
 */
export function writeFileAtomicSync(file: string, data: string | Buffer, mode: number): void {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, data, { mode, flag: 'wx' });
    chmodSync(tmp, mode); // exactly `mode`, whatever the umask took away
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * What the data folder may show other local users: nothing, except the school CA certificate,
 * which is public by design (devices download it). The embedded database's files hold password
 * hashes and incidents, the spool holds incidents, and `control.json` a token.
 */
const PUBLIC_FILES = new Set([path.join('ca', 'ca.crt')]);

/**
 * Makes every file created from now on in this process owner-only, and tightens what is already
 * in `dataDir` (an older release made folders 0755 and PGlite made files 0666). The umask must be
 * set on the main thread before anything is created: PGlite runs on a worker thread, and Node
 * refuses process.umask() there, so files it makes take whatever mask the process has.
 * Throws SG_ERR_DATA_DIR naming the path when something cannot be tightened (another user's
 * file, say), because starting with a readable database is the failure this exists to prevent.
 */
export function secureDataDir(dataDir: string, opts: { create?: boolean } = {}): { tightened: string[] } {
  if (isMainThread) process.umask(0o077);
  if (opts.create ?? true) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  else if (!existsSync(dataDir)) return { tightened: [] };
  // A mistyped --data-dir must not strip group and other access from a whole home folder.
  const abs = path.resolve(dataDir);
  if (abs === path.parse(abs).root || abs === path.resolve(os.homedir())) {
    throw new SchoolgateError('SG_ERR_DATA_DIR', `${abs} cannot be the data folder: give schoolgate a folder of its own`);
  }
  return tightenTree(dataDir);
}

/** Removes group and other bits throughout `root` (symlinks are left alone and not followed). */
export function tightenTree(root: string): { tightened: string[] } {
  const tightened: string[] = [];
  const visit = (abs: string, rel: string) => {
    let st;
    try {
      st = lstatSync(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // removed while we walked (a rotated spool segment)
      throw dataDirError(abs, err);
    }
    if (st.isSymbolicLink()) return;
    const isPublic = PUBLIC_FILES.has(rel);
    const want = isPublic ? st.mode & 0o744 : st.mode & 0o700;
    if ((st.mode & 0o777) !== (want & 0o777)) {
      try {
        chmodSync(abs, want & 0o7777);
      } catch (err) {
        throw dataDirError(abs, err);
      }
      tightened.push(rel || '.');
    }
    if (st.isDirectory()) {
      let names: string[];
      try {
        names = readdirSync(abs);
      } catch (err) {
        throw dataDirError(abs, err);
      }
      for (const n of names) visit(path.join(abs, n), rel ? path.join(rel, n) : n);
    }
  };
  visit(root, '');
  return { tightened };
}

function dataDirError(file: string, err: unknown): SchoolgateError {
  return new SchoolgateError('SG_ERR_DATA_DIR', `${file}: ${(err as Error).message} (the data folder must belong to the user schoolgate runs as)`, undefined, { cause: err });
}
